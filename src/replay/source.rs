//! Loading a journal for replay: every record as stored (checked, still compressed; the pass
//! decodes one at a time), and the snapshot to start from when the head of the journal was
//! compacted away.

use std::path::Path;

use vworkspace_journal::raw::{Decoder, RawRecords};
use vworkspace_journal::{Entry, Journal, SledJournal, export};

use super::{Error, Result};
use crate::fold::State;

pub struct Source {
    /// The path, for messages and views.
    pub name: String,
    /// The state to fold from, and the seq it covers (0: from nothing).
    pub start: (State, u64),
    /// Records after `start`, in seq order.
    pub records: RawRecords,
}

impl Source {
    /// Every record decoded, each in its own allocation (tools and tests; the pass decodes
    /// into one reused record instead).
    pub fn entries(&self) -> impl Iterator<Item = Result<Entry>> + '_ {
        let mut d = Decoder::default();
        self.records.iter().map(move |raw| Ok(d.decode(0, raw)?.clone()))
    }
}

pub fn load(path: &Path) -> Result<Source> {
    if !path.exists() {
        return Err(Error::Missing(path.to_path_buf()));
    }
    let name = path.display().to_string();
    let (snapshot, mut records) = if path.is_dir() {
        let j = SledJournal::open_existing(path)?;
        (j.latest_snapshot()?, j.raw_records(0)?)
    } else {
        export::read_raw(path)?
    };
    let Some(first) = records.first_seq() else { return Err(Error::Empty(name)) };
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
    records.drop_through(start.1)?;
    Ok(Source { name, start, records })
}
