//! Loading a journal for replay: its records as stored (checked, still compressed; the pass
//! decodes one at a time), and the snapshot to start from when the head of the journal was
//! compacted away. An export file is read a record at a time as the pass goes; a journal
//! directory is read whole first (sled has no cheaper sequential read).

use std::path::Path;

use vworkspace_journal::raw::{Checked, Decoder, RawRecords};
use vworkspace_journal::stream::ExportFile;
use vworkspace_journal::{Entry, Journal, SledJournal};

use super::{Error, Result};
use crate::fold::State;

pub struct Source {
    /// The path, for messages and views.
    pub name: String,
    /// The state to fold from, and the seq it covers (0: from nothing).
    pub start: (State, u64),
    pub records: Records,
}

/// Where the records after `start` are, in seq order.
pub enum Records {
    Memory(RawRecords),
    /// Read from the file by each walk (`Source::each`): an export is not held in memory.
    File(ExportFile),
}

impl Source {
    /// How many records a walk hands over (for an export, counting any a snapshot covers).
    pub fn len(&self) -> u64 {
        match &self.records {
            Records::Memory(r) => r.len() as u64,
            Records::File(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands each record after `start` to `f`, in order, until `f` returns false.
    pub fn each(&self, mut f: impl FnMut(Checked<'_>) -> Result<bool>) -> Result<()> {
        match &self.records {
            Records::Memory(r) => {
                for raw in r.iter() {
                    if !f(raw)? {
                        break;
                    }
                }
            }
            Records::File(file) => {
                let mut reader = file.records()?;
                let mut decoder = Decoder::default();
                // Records a snapshot covers lead the file: the pass starts after them.
                let mut covered = self.start.1 > 0;
                while let Some(raw) = reader.next_record()? {
                    if covered && decoder.decode(0, raw)?.header.seq <= self.start.1 {
                        continue;
                    }
                    covered = false;
                    if !f(raw)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every record decoded, each in its own allocation (tools and tests; the pass decodes
    /// into one reused record instead).
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        self.each(|raw| {
            out.push(d.decode(0, raw)?.clone());
            Ok(true)
        })?;
        Ok(out)
    }
}

pub fn load(path: &Path) -> Result<Source> {
    if !path.exists() {
        return Err(Error::Missing(path.to_path_buf()));
    }
    let name = path.display().to_string();
    let (snapshot, first, records) = if path.is_dir() {
        let j = SledJournal::open_existing(path)?;
        let r = j.raw_records(0)?;
        (j.latest_snapshot()?, r.first_seq(), Records::Memory(r))
    } else {
        let f = ExportFile::open(path)?;
        (f.snapshot().cloned(), f.first_seq(), Records::File(f))
    };
    let Some(first) = first else { return Err(Error::Empty(name)) };
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
    let mut records = records;
    if let Records::Memory(r) = &mut records {
        r.drop_through(start.1)?;
    }
    Ok(Source { name, start, records })
}
