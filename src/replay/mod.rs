//! Offline replay of a journal (a sled directory or an export file) with the operator's own
//! fold: no cluster and no network. One pass produces everything the views need: a timeline per
//! Operation, the state at a moment (`--until`/`--at`), and the divergence check (`--check`).
//!
//! - [`source`]: loading a journal, snapshot included;
//! - [`pass`]: the fold over it, collecting timelines and checking commands;
//! - [`diff`]: two journals, or two moments of one, compared;
//! - [`view`]: the stable JSON shape every format is rendered from;
//! - [`html`]: the self-contained page.

pub mod diff;
pub mod html;
pub mod pass;
pub mod source;
pub mod view;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{0}: the journal holds no records")]
    Empty(String),
    #[error(transparent)]
    Journal(#[from] vworkspace_journal::Error),
    #[error(transparent)]
    Record(#[from] crate::journal_codec::Error),
    #[error("the snapshot at seq {seq} does not decode: {why}")]
    Snapshot { seq: u64, why: String },
    #[error("the journal starts at seq {first} and has no snapshot to start from")]
    NoStart { first: u64 },
    #[error("{0:?} is not NAMESPACE/NAME")]
    OpKey(String),
    #[error("{0:?} is not an RFC 3339 time such as 2026-11-25T10:00:00Z")]
    Time(String),
    #[error("no Operation {0} in this journal")]
    NoSuchOp(String),
}

impl Error {
    /// Stable category, for scripts and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Missing(_) | Error::OpKey(_) | Error::Time(_) | Error::NoSuchOp(_) => "usage",
            Error::Empty(_) | Error::NoStart { .. } => "empty",
            Error::Journal(_) | Error::Record(_) | Error::Snapshot { .. } => "damaged",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `NAMESPACE/NAME` → key.
pub fn parse_op(s: &str) -> Result<crate::key::OpKey> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(crate::key::OpKey { namespace: ns.into(), name: name.into() })
        }
        _ => Err(Error::OpKey(s.into())),
    }
}
