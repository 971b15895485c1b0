//! The operator's journal (DESIGN §4): every watch event, effect outcome and timer firing, as
//! versioned, checksummed records with contiguous sequence numbers.
//!
//! - [`envelope`]: the record format: an rkyv header, an lz4 body, a CRC32C.
//! - [`redact`]: what never reaches the disk (Secret values, managedFields, env values, ...).
//! - [`store`]: the [`Journal`] trait and its sled implementation, with group commit,
//!   a `durable()` barrier (sled flush + fdatasync), snapshots (in files, `snapfile`) and
//!   compaction.
//! - [`raw`]: records as stored, checked and decoded one at a time (replay).
//! - [`export`]: one portable, self-describing file for incidents and replay.
//! - [`stream`]: an export read one record at a time (replay).

pub mod envelope;
pub mod export;
pub mod outbox;
pub mod raw;
pub mod redact;
mod snapfile;
pub mod store;
pub mod stream;

pub use envelope::{Entry, EntryKind, FORMAT_VERSION, Header, NewEntry, ResourceRef};
pub use store::{Journal, OpenReport, SledJournal, VerifyReport};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("journal I/O on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("journal store: {0}")]
    Store(String),
    #[error("record damaged at seq {seq}: {why}")]
    Damaged { seq: u64, why: String },
    #[error("record written by format version {found}; this build reads up to {supported}: upgrade the operator")]
    NewerFormat { found: u16, supported: u16 },
    #[error("{path} is not a vworkspace journal export (bad magic)")]
    Foreign { path: String },
    #[error("export {path} is truncated: {why}")]
    Truncated { path: String, why: String },
    #[error("{path} already holds a journal; import into an empty directory")]
    NotEmpty { path: String },
    #[error("encoding a record: {0}")]
    Encode(String),
    #[error(
        "the journal in {path} is open in another process (it holds the lock on its db file): stop that process, or export through it with `journal export {path} -`"
    )]
    Locked { path: String },
}

impl Error {
    /// A stable category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Store(_) => "store",
            Error::Damaged { .. } => "damaged",
            Error::NewerFormat { .. } => "newer-format",
            Error::Foreign { .. } => "foreign",
            Error::Truncated { .. } => "truncated",
            Error::NotEmpty { .. } => "not-empty",
            Error::Encode(_) => "encode",
            Error::Locked { .. } => "locked",
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
