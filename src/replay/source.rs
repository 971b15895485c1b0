//! Loading a journal for replay: every record, and the snapshot to start from when the head of
//! the journal was compacted away.

use std::path::Path;

use vworkspace_journal::export::{self, Item};
use vworkspace_journal::{Entry, Journal, SledJournal};

use super::{Error, Result};
use crate::fold::State;

pub struct Source {
    /// The path, for messages and views.
    pub name: String,
    /// The state to fold from, and the seq it covers (0: from nothing).
    pub start: (State, u64),
    /// Records after `start`, in seq order.
    pub entries: Vec<Entry>,
}

pub fn load(path: &Path) -> Result<Source> {
    if !path.exists() {
        return Err(Error::Missing(path.to_path_buf()));
    }
    let name = path.display().to_string();
    let (snapshot, entries) = if path.is_dir() {
        let j = SledJournal::open_existing(path)?;
        let snap = j.latest_snapshot()?;
        let entries = j.read_from(0).collect::<Result<Vec<_>, _>>()?;
        (snap, entries)
    } else {
        let mut snap = None;
        let mut entries = Vec::new();
        for item in export::read(path)? {
            match item {
                Item::Snapshot { seq, state } => snap = Some((seq, state)),
                Item::Record(e) => entries.push(e),
            }
        }
        (snap, entries)
    };
    let Some(first) = entries.first().map(|e| e.header.seq) else { return Err(Error::Empty(name)) };
    // Fold from nothing when the journal is whole; else from the snapshot it was compacted to.
    let start = if first <= 1 {
        (State::default(), 0)
    } else {
        let Some((seq, bytes)) = snapshot.filter(|(seq, _)| seq + 1 >= first) else {
            return Err(Error::NoStart { first });
        };
        let state = serde_json::from_slice(&bytes).map_err(|e| Error::Snapshot { seq, why: e.to_string() })?;
        (state, seq)
    };
    let from = start.1;
    let entries = entries.into_iter().filter(|e| e.header.seq > from).collect();
    Ok(Source { name, start, entries })
}
