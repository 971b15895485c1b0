//! `vworkspace-operator journal inspect|verify|export|import`. PATH is a journal directory
//! (sled) or an export file; every failure is a clear message and a non-zero exit.

use std::path::Path;

use anyhow::{Context, Result, bail};
use vworkspace_journal::export::{self, Item};
use vworkspace_journal::{Entry, Header, Journal, SledJournal};

fn line(h: &Header) -> String {
    let at = chrono::DateTime::from_timestamp_micros(h.recorded_at_micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| h.recorded_at_micros.to_string());
    let event = ["Init", "InitApply", "InitDone", "Apply", "Delete"].get(h.event as usize).copied().unwrap_or("-");
    let r = &h.resource;
    let obj = if r.kind.is_empty() {
        String::new()
    } else {
        format!("{} {}/{} rv={}", r.kind, r.namespace, r.name, r.resource_version)
    };
    format!("{:>8}  {at}  {:<9} {:<9} {:<28} {obj}", h.seq, format!("{:?}", h.kind), event, h.op_key)
}

/// A journal's newest snapshot (seq, size) and its records, from a directory or an export.
struct Loaded {
    snapshot: Option<(u64, usize)>,
    entries: Vec<Entry>,
}

fn load(path: &Path) -> Result<Loaded> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    if path.is_dir() {
        let j = SledJournal::open_existing(path)?;
        let snap = j.latest_snapshot()?.map(|(s, b)| (s, b.len()));
        let entries = j.read_from(0).collect::<Result<Vec<_>, _>>()?;
        Ok(Loaded { snapshot: snap, entries })
    } else {
        let mut snap = None;
        let mut entries = Vec::new();
        for item in export::read(path)? {
            match item {
                Item::Snapshot { seq, state } => snap = Some((seq, state.len())),
                Item::Record(e) => entries.push(e),
            }
        }
        Ok(Loaded { snapshot: snap, entries })
    }
}

pub fn inspect(path: &Path, from: u64, limit: usize) -> Result<()> {
    let Loaded { snapshot, entries } = load(path)?;
    if let Some((seq, len)) = snapshot {
        println!("snapshot at seq {seq} ({len} bytes of folded state)");
    }
    println!("{:>8}  {:<27}  {:<9} {:<9} {:<28} object", "seq", "recorded at", "kind", "event", "operation");
    for e in entries.iter().filter(|e| e.header.seq >= from).take(limit) {
        println!("{}", line(&e.header));
    }
    println!("{} records", entries.len());
    Ok(())
}

pub fn verify(path: &Path) -> Result<()> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    if path.is_dir() {
        let j = SledJournal::open_existing(path)?;
        let r = j.verify();
        match &r.first_error {
            None => println!(
                "ok: {} records (seq {}..={}), {} snapshot(s), checksums and sequence verified",
                r.records,
                r.first_seq.unwrap_or(0),
                r.last_seq,
                r.snapshots
            ),
            Some((seq, why)) => bail!("damaged: first bad seq {seq}: {why} ({} records scanned)", r.records),
        }
    } else {
        let items = export::read(path)?;
        let records = items.iter().filter(|i| matches!(i, Item::Record(_))).count();
        let mut expected: Option<u64> = None;
        for i in &items {
            if let Item::Record(e) = i {
                if let Some(x) = expected
                    && x != e.header.seq
                {
                    bail!("damaged: sequence gap, seq {x} missing before {}", e.header.seq);
                }
                expected = Some(e.header.seq + 1);
            }
        }
        println!("ok: export with {records} records; checksums, sequence and end frame verified");
    }
    Ok(())
}

/// `FILE` may be `-` (standard output). A journal that a running operator holds is exported by
/// that operator, over the socket in its directory.
pub fn export_to(dir: &Path, file: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a journal directory", dir.display());
    }
    let to_stdout = file.as_os_str() == "-";
    let socket = dir.join(vworkspace_operator::run::EXPORT_SOCKET);
    if let Ok(mut live) = std::os::unix::net::UnixStream::connect(&socket) {
        let n = if to_stdout {
            std::io::copy(&mut live, &mut std::io::stdout().lock())
        } else {
            let mut f = std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
            std::io::copy(&mut live, &mut f).and_then(|n| f.sync_all().map(|_| n))
        }
        .context("reading the export from the running operator")?;
        eprintln!("exported {n} bytes from the running operator");
        return Ok(());
    }
    let j = SledJournal::open_existing(dir)?;
    let n = if to_stdout {
        export::export_to(&j, &mut std::io::BufWriter::new(std::io::stdout().lock()), file)?
    } else {
        export::export(&j, file).with_context(|| format!("exporting to {}", file.display()))?
    };
    eprintln!("exported {n} records");
    Ok(())
}

pub fn import_from(file: &Path, dir: &Path) -> Result<()> {
    let n = export::import(file, dir)?;
    println!("imported {n} records into {}", dir.display());
    Ok(())
}
