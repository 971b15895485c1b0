//! Trace and span IDs derived from the Operation UID, so one Operation is one trace across
//! restarts, leader changes and replays (W3C Trace Context: 16- and 8-byte IDs in hex).

use crate::engine::naming::short_hash;

pub use crate::engine::naming::trace_id;

/// The root span: the Operation from acceptance to its end.
pub fn root_span_id(uid: &str) -> String {
    span_id(&["root", uid])
}

/// Any other span, from what identifies it (command ID, seq, condition type…).
pub fn span_id(parts: &[&str]) -> String {
    let id = short_hash(parts, 8);
    // An all-zero span ID is invalid in W3C Trace Context.
    if id.bytes().all(|b| b == b'0') { "0000000000000001".into() } else { id }
}

/// The `traceparent` annotation put on every child, pointing at the root span.
pub fn traceparent(uid: &str) -> String {
    format!("00-{}-{}-01", trace_id(uid), root_span_id(uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_well_formed() {
        let tp = traceparent("7d1f7b2e-0000-4000-8000-000000000001");
        assert_eq!(tp, traceparent("7d1f7b2e-0000-4000-8000-000000000001"));
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!((parts[0], parts[1].len(), parts[2].len(), parts[3]), ("00", 32, 16, "01"));
        assert_ne!(root_span_id("a"), root_span_id("b"));
        assert_ne!(span_id(&["a", "1"]), span_id(&["a", "2"]));
    }
}
