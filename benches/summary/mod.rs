//! Repeated runs of a bench, summarised: each figure's median, min and max over the runs, as a
//! Markdown table for docs/benchmarks.md (`VW_RUNS=3`). The machine is noisy, so one run of a
//! figure says little; the spread says how much.

/// How many times to repeat the measured runs: `VW_RUNS`, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("VW_RUNS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

/// Figures in the order first recorded, each with its value from every run.
#[derive(Default)]
pub struct Summary {
    rows: Vec<Row>,
}

struct Row {
    figure: String,
    unit: &'static str,
    target: &'static str,
    values: Vec<f64>,
}

impl Summary {
    /// One run's value of `figure` (NaN values, such as a latency of no samples, are skipped).
    pub fn add(&mut self, figure: &str, unit: &'static str, target: &'static str, value: f64) {
        let row = match self.rows.iter_mut().position(|r| r.figure == figure) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row { figure: figure.to_string(), unit, target, values: Vec::new() });
                self.rows.last_mut().unwrap()
            }
        };
        if !value.is_nan() {
            row.values.push(value);
        }
    }

    /// The Markdown table: figure, runs, median, min, max, target.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| figure | runs | median | min | max | target |\n|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let Some((median, min, max)) = spread(&r.values) else { continue };
            let f = |v: f64| format!("{} {}", round(v), r.unit).trim_end().to_string();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.figure,
                r.values.len(),
                f(median),
                f(min),
                f(max),
                r.target
            ));
        }
        out
    }
}

/// Median, min and max; the median of an even count is the mean of the middle two.
pub fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let (first, last) = (*v.first()?, *v.last()?);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 };
    Some((median, first, last))
}

/// Three significant figures, at least, without a trail of digits.
fn round(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
