//! `vworkspace-operator replay PATH` and `replay diff A B`: the views of `replay/` on the command
//! line. Errors are messages with a non-zero exit; a divergence under `--check` exits 1.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use vworkspace_operator::replay::{self, diff, html, pass, source, view};

use crate::cli::{Format, ReplayArgs};

fn progress(done: u64, total: u64) {
    let pct = done * 100 / total.max(1);
    let bar: String = (0..40).map(|i| if i * 100 / 40 < pct { '#' } else { '.' }).collect();
    eprint!("\rreplay [{bar}] {pct:>3}% {done}/{total}");
    if done + total / 100 >= total {
        eprintln!();
    }
}

fn write_out(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => std::io::stdout().write_all(text.as_bytes()).context("writing to standard output"),
    }
}

/// Streams the text view to the file or standard output.
fn write_text_out(out: Option<&Path>, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    match out {
        Some(p) => {
            let file = std::fs::File::create(p).with_context(|| format!("writing {}", p.display()))?;
            let mut w = std::io::BufWriter::new(file);
            f(&mut w).and_then(|()| w.flush()).with_context(|| format!("writing {}", p.display()))
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            f(&mut w).and_then(|()| w.flush()).context("writing to standard output")
        }
    }
}

pub fn replay(args: ReplayArgs) -> Result<()> {
    let Some(path) = args.path else { bail!("replay needs a journal: a directory or an export file (see --help)") };
    let op = args.op.as_deref().map(replay::parse_op).transpose()?;
    let at = args
        .at
        .as_deref()
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).map(|t| t.to_utc()).map_err(|_| replay::Error::Time(t.into())))
        .transpose()?;
    let src = source::load(&path)?;
    let opts = pass::Options {
        op: op.clone(),
        until: args.until,
        at,
        check: args.check,
        timeline: true,
        diffs: args.format == Format::Html,
        details: args.format != Format::Text,
        lines: args.format == Format::Text,
        progress: Some(progress),
        signals: args.otlp.is_some(),
        pipeline: None,
    };
    let p = pass::run(&src, &opts)?;
    if let Some(k) = &op
        && !p.state.ops.contains_key(k)
    {
        bail!(replay::Error::NoSuchOp(k.to_string()));
    }
    let text = match args.format {
        Format::Text => {
            write_text_out(args.out.as_deref(), |w| view::write_text(&src.name, &p, &opts, w))?;
            String::new()
        }
        Format::Json => serde_json::to_string_pretty(&view::build(&src.name, &p, &opts))? + "\n",
        Format::Html => html::page(&view::build(&src.name, &p, &opts)),
    };
    if args.format != Format::Text {
        write_out(args.out.as_deref(), &text)?;
    }
    if let Some(endpoint) = &args.otlp {
        export_traces(endpoint, &p.signals)?;
    }
    if p.divergence.is_some() {
        std::process::exit(1);
    }
    // The process ends here: freeing a million records' folded state and timelines one
    // allocation at a time took 2% of a replay, for memory the exit returns anyway.
    std::mem::forget((p, src));
    Ok(())
}

/// Sends the replay's signals as spans over OTLP and waits until they are delivered.
#[cfg(feature = "otlp")]
fn export_traces(endpoint: &str, signals: &[vworkspace_operator::signals::Signal]) -> Result<()> {
    use opentelemetry_sdk::trace::SpanProcessor;
    use vworkspace_operator::signals::spans;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let p = vworkspace_operator::telemetry::processor(Some(endpoint))
            .map_err(|e| anyhow::anyhow!("OTLP exporter for {endpoint}: {e}"))?;
        let mut traces = std::collections::BTreeSet::new();
        let mut n = 0;
        for s in signals {
            if let Some(span) = spans::render(s, None) {
                traces.insert(span.span_context.trace_id().to_string());
                p.on_end(span);
                n += 1;
            }
        }
        // The exporter reports what it could not deliver: that is the command's failure.
        p.force_flush().map_err(|e| anyhow::anyhow!("exporting spans to {endpoint}: {e}"))?;
        let _ = p.shutdown();
        eprintln!("exported {n} spans in {} traces to {endpoint}", traces.len());
        Ok(())
    })
}

#[cfg(not(feature = "otlp"))]
fn export_traces(_: &str, _: &[vworkspace_operator::signals::Signal]) -> Result<()> {
    bail!("this build has no OTLP support (feature `otlp`)")
}

/// `PATH` or `PATH@SEQ`.
fn moment(spec: &str) -> Result<(std::path::PathBuf, Option<u64>)> {
    match spec.rsplit_once('@') {
        Some((p, seq)) if seq.chars().all(|c| c.is_ascii_digit()) && !seq.is_empty() => {
            Ok((p.into(), Some(seq.parse().context("seq after @")?)))
        }
        _ => Ok((spec.into(), None)),
    }
}

pub fn diff(a: &str, b: &str, op: Option<&str>, format: Format) -> Result<()> {
    let only = op.map(replay::parse_op).transpose()?;
    let fold = |spec: &str| -> Result<pass::Pass> {
        let (path, until) = moment(spec)?;
        let src = source::load(&path)?;
        Ok(pass::run(&src, &pass::Options { until, timeline: true, ..Default::default() })?)
    };
    let (pa, pb) = (fold(a)?, fold(b)?);
    let d = diff::diff(&pa, &pb, only.as_ref());
    let text = match format {
        Format::Json => {
            serde_json::to_string_pretty(
                &serde_json::json!({ "schema": "vworkspace.replay.diff/v1", "a": a, "b": b, "operations": d }),
            )? + "\n"
        }
        Format::Text | Format::Html => {
            let mut out = format!("a: {a}\nb: {b}\n");
            if d.is_empty() {
                out.push_str("no difference\n");
            }
            for o in &d {
                out.push_str(&format!(
                    "\n== {}{}\n",
                    o.operation,
                    o.only_in.map(|s| format!(" (only in {s})")).unwrap_or_default()
                ));
                for (what, v) in [("transitions", &o.transitions), ("outcomes", &o.outcomes)] {
                    if let Some(v) = v {
                        out.push_str(&format!("  {what} differ:\n    a: {}\n    b: {}\n", v["a"], v["b"]));
                    }
                }
                for obj in &o.objects {
                    out.push_str(&format!("  {}:\n", obj["object"].as_str().unwrap_or("")));
                    for c in obj["changes"].as_array().into_iter().flatten() {
                        out.push_str(&format!("    {}: {} -> {}\n", c["path"].as_str().unwrap_or(""), c["a"], c["b"]));
                    }
                }
            }
            out
        }
    };
    write_out(None, &text)
}
