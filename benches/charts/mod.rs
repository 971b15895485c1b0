//! Small line charts as self-contained SVG, drawn from a bench's own figures (no plotting crate:
//! a handful of points and axes).

use std::fmt::Write;

/// One series: (x, y) points, x on a log scale (Operation counts grow by decades).
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub points: &'a [(f64, f64)],
}

const W: f64 = 560.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn svg(c: &Chart<'_>) -> String {
    let pts: Vec<(f64, f64)> = c.points.iter().copied().filter(|(x, y)| *x > 0.0 && y.is_finite()).collect();
    let (x0, x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(x.log10()), b.max(x.log10())));
    let (x0, x1) = if pts.is_empty() {
        (0.0, 1.0)
    } else if x1 - x0 < 1e-9 {
        (x0 - 0.5, x1 + 0.5)
    } else {
        (x0, x1)
    };
    let top = pts.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let y1 = if top > 0.0 { top * 1.2 } else { 1.0 };
    let px = |x: f64| LEFT + (x.log10() - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y1 * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r##"<rect width="{W}" height="{H}" fill="#fff"/>"##);
    let _ = write!(s, r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#, W / 2.0, esc(c.title));
    // Axes, y ticks at fifths, x ticks at each point.
    let _ = write!(s, r##"<path d="M{LEFT} {TOP}V{}H{}" fill="none" stroke="#333"/>"##, H - BOTTOM, W - RIGHT);
    for i in 0..=5 {
        let y = y1 * i as f64 / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{0}" y1="{1:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            W - RIGHT,
            py(y),
            LEFT - 6.0,
            py(y) + 4.0,
            fmt(y)
        );
    }
    for (x, _) in &pts {
        let _ =
            write!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, px(*x), H - BOTTOM + 16.0, fmt(*x));
    }
    let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, W / 2.0, H - 12.0, esc(c.x_label));
    let _ = write!(
        s,
        r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">{1}</text>"#,
        H / 2.0,
        esc(c.y_label)
    );
    let line: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
    let _ = write!(s, r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##, line.join(" "));
    for (x, y) in &pts {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#1f77b4"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#1f77b4">{}</text>"##,
            px(*x),
            py(*y),
            px(*x),
            py(*y) - 9.0,
            fmt(*y)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Short numbers for labels: 1k, 10k, 2.5, 0.31.
fn fmt(v: f64) -> String {
    if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
