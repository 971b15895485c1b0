//! The last status sent for an Operation, so a patch goes out only when it differs. While the
//! Operation runs it is compared on every reconcile, so the status itself is kept. Once it has
//! ended, a 128-bit digest stands in for it: at 10,000 retained Operations the statuses were
//! some 16 MB of the heap. Both forms ignore the running duration, which alone sends nothing.

use std::sync::Arc;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::api::OperationStatus;

#[derive(Clone, Debug, PartialEq)]
pub enum LastStatus {
    /// Shared with the status patch that sent it.
    Live(Arc<OperationStatus>),
    Settled(Digest),
}

/// sha256 of the status's JSON with no duration, cut to 128 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// The duration is taken out for the hash and put back (no copy of the status).
    pub fn of(status: &mut OperationStatus) -> Self {
        let duration = status.duration.take();
        // Serialised first and hashed in one call: fed to the hasher a token at a time, the
        // digest cost 3% of a replay. Serialising a plain struct cannot fail.
        let mut json = Vec::with_capacity(2048);
        let _ = serde_json::to_writer(&mut json, &*status);
        status.duration = duration;
        let mut out = [0; 16];
        out.copy_from_slice(&Sha256::digest(&json)[..16]);
        Self(out)
    }

    fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(PREFIX)?;
        let mut out = [0; 16];
        if hex.len() != 32 {
            return None;
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

const PREFIX: &str = "sha256-128:";

impl LastStatus {
    /// The status as sent; a digest if its Operation has ended.
    pub fn new(status: OperationStatus, terminal: bool) -> Self {
        Self::sent(status, terminal).0
    }

    /// What to keep of a status about to be sent, and the status to send: the same allocation
    /// while it runs, a digest taken before it is shared once it has ended (no copy either way).
    pub fn sent(mut status: OperationStatus, terminal: bool) -> (Self, Arc<OperationStatus>) {
        if terminal {
            let d = Digest::of(&mut status);
            (LastStatus::Settled(d), Arc::new(status))
        } else {
            let status = Arc::new(status);
            (LastStatus::Live(status.clone()), status)
        }
    }

    /// Whether `status` says the same, the duration aside. `status` is handed back as it came.
    pub fn same(&self, status: &mut OperationStatus) -> bool {
        match self {
            LastStatus::Live(last) => {
                // Compared in place, with the duration swapped in for the check (no copy).
                let duration = std::mem::replace(&mut status.duration, last.duration.clone());
                let same = **last == *status;
                status.duration = duration;
                same
            }
            LastStatus::Settled(d) => *d == Digest::of(status),
        }
    }

    /// Kept as a digest from now on (its Operation has ended).
    pub fn settle(&mut self) {
        if let LastStatus::Live(s) = self {
            // Copied only if the patch that sent it is still held (a replay's commands in flight).
            *self = LastStatus::Settled(Digest::of(Arc::make_mut(s)));
        }
    }
}

impl Serialize for LastStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LastStatus::Live(status) => status.serialize(s),
            LastStatus::Settled(d) => s.serialize_str(&format!("{PREFIX}{}", d.hex())),
        }
    }
}

/// A digest string, or a status object (the only form of snapshots before digests).
impl<'de> Deserialize<'de> for LastStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LastStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an Operation status or its digest")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LastStatus, E> {
                Digest::parse(v).map(LastStatus::Settled).ok_or_else(|| E::custom(format!("not a status digest: {v}")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LastStatus, A::Error> {
                OperationStatus::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|s| LastStatus::Live(Arc::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OperationPhase;

    fn status(phase: OperationPhase, duration: &str) -> OperationStatus {
        OperationStatus {
            phase: Some(phase),
            duration: Some(duration.into()),
            message: Some("done".into()),
            ..Default::default()
        }
    }

    #[test]
    fn both_forms_ignore_the_duration_and_see_any_other_change() {
        for terminal in [false, true] {
            let last = LastStatus::new(status(OperationPhase::Succeeded, "3s"), terminal);
            assert_eq!(matches!(last, LastStatus::Settled(_)), terminal);
            let mut later = status(OperationPhase::Succeeded, "9s");
            assert!(last.same(&mut later));
            assert_eq!(later, status(OperationPhase::Succeeded, "9s"), "handed back as it came");
            assert!(!last.same(&mut status(OperationPhase::Failed, "3s")));
        }
        let mut live = LastStatus::new(status(OperationPhase::Succeeded, "3s"), false);
        live.settle();
        assert_eq!(live, LastStatus::new(status(OperationPhase::Succeeded, "1m"), true));
    }

    #[test]
    fn a_status_sent_is_kept_without_a_copy() {
        for terminal in [false, true] {
            let (last, sent) = LastStatus::sent(status(OperationPhase::Running, "1s"), terminal);
            assert_eq!(*sent, status(OperationPhase::Running, "1s"), "sent as built");
            assert!(last.same(&mut status(OperationPhase::Running, "5s")));
            assert!(!last.same(&mut status(OperationPhase::Failed, "1s")));
            match &last {
                LastStatus::Live(kept) => assert!(!terminal && Arc::ptr_eq(kept, &sent)),
                LastStatus::Settled(_) => assert!(terminal),
            }
        }
        // Settling while the patch still holds the status leaves the patch as it was.
        let (mut last, sent) = LastStatus::sent(status(OperationPhase::Succeeded, "2s"), false);
        last.settle();
        assert_eq!(last, LastStatus::new(status(OperationPhase::Succeeded, "8s"), true));
        assert_eq!(*sent, status(OperationPhase::Succeeded, "2s"));
    }

    #[test]
    fn serialises_as_the_status_or_the_digest_and_reads_both_back() {
        for terminal in [false, true] {
            let last = LastStatus::new(status(OperationPhase::Running, "1s"), terminal);
            let text = serde_json::to_string(&last).unwrap();
            assert_eq!(text.starts_with('"'), terminal, "{text}");
            assert_eq!(serde_json::from_str::<LastStatus>(&text).unwrap(), last);
        }
        // A snapshot from before digests holds the status object.
        let old = serde_json::to_string(&status(OperationPhase::Failed, "2s")).unwrap();
        let read: LastStatus = serde_json::from_str(&old).unwrap();
        assert_eq!(read, LastStatus::Live(Arc::new(status(OperationPhase::Failed, "2s"))));
        for bad in ["\"sha256-128:zz\"", "\"md5:00\"", "3", "[]"] {
            assert!(serde_json::from_str::<LastStatus>(bad).is_err(), "{bad}");
        }
    }
}
