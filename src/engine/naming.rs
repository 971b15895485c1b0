//! Deterministic names and IDs: derived from the Operation UID and step, never random (DESIGN §3).

use sha2::{Digest, Sha256};

/// Hex of the first `n` bytes of sha256 over `parts` joined by ':'.
pub fn short_hash(parts: &[&str], n: usize) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    // Called for every command ID and status: one allocation, no formatter per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * n);
    for b in h.finalize().iter().take(n) {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// `<prefix>-<hash8>`, at most 63 characters and a valid DNS-1123 label.
/// `prefix` is the Operation name, or `<namespace>-<name>` for children in Velero's namespace.
pub fn child_name(prefix: &str, uid: &str, step: u32) -> String {
    let hash = short_hash(&[uid, &step.to_string()], 4);
    let room = 63 - 1 - hash.len();
    let mut head: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(room)
        .collect();
    while head.ends_with('-') {
        head.pop();
    }
    if head.is_empty() || !head.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        format!("op-{hash}")
    } else {
        format!("{head}-{hash}")
    }
}

/// The ID of the command that made step `step` do `what`: stable across replays and restarts.
pub fn command_id(uid: &str, step: u32, what: &str) -> String {
    step_command_id(&uid_prefix(uid), step, what)
}

/// `command_id` from the UID's prefix (`uid_prefix`), when that is at hand.
pub fn step_command_id(prefix: &str, step: u32, what: &str) -> String {
    format!("{prefix}-{step}-{what}")
}

/// `{prefix}-c{counter}-{action in lower case}`: the ID of a command that is not a step's
/// create. Written without `format!`: an ID is built for most commands, and the formatting
/// machinery was a third of what issuing one cost.
pub fn counted_command_id(prefix: &str, counter: u64, action: &str) -> String {
    let counter = counter.to_string();
    let mut id = String::with_capacity(prefix.len() + 3 + counter.len() + action.len());
    id.push_str(prefix);
    id.push_str("-c");
    id.push_str(&counter);
    id.push('-');
    id.extend(action.chars().map(|c| c.to_ascii_lowercase()));
    id
}

/// What every command ID of an Operation starts with.
pub fn uid_prefix(uid: &str) -> String {
    short_hash(&[uid], 6)
}

/// A label value (at most 63 characters); long names keep a hash suffix so they stay unique.
pub fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        name.to_string()
    } else {
        let hash = short_hash(&[name], 4);
        let mut head: String = name.chars().take(63 - 1 - hash.len()).collect();
        while head.ends_with(['-', '.', '_']) {
            head.pop();
        }
        format!("{head}-{hash}")
    }
}

/// W3C-compatible trace ID (32 hex) derived from the Operation UID.
pub fn trace_id(uid: &str) -> String {
    short_hash(&["trace", uid], 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_command_id_reads_as_format_would_write_it() {
        for counter in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            for action in ["EmitEvent", "PatchStatus", "SetTimer", "RemoveFinalizer"] {
                let want = format!("{}-c{}-{}", "a18b61fbced2", counter, action.to_ascii_lowercase());
                assert_eq!(counted_command_id("a18b61fbced2", counter, action), want);
            }
        }
    }

    #[test]
    fn names_are_stable_bounded_and_distinct_per_step() {
        let long = "a".repeat(300);
        let n = child_name(&long, "uid-1", 0);
        assert!(n.len() <= 63, "{n}");
        assert_eq!(n, child_name(&long, "uid-1", 0));
        assert_ne!(n, child_name(&long, "uid-1", 1));
        assert_ne!(n, child_name(&long, "uid-2", 0));
        assert_eq!(child_name("nightly.backup", "u", 0).split('-').next(), Some("nightly"));
        assert!(child_name("---", "u", 0).starts_with("op-"));
    }

    #[test]
    fn label_values_fit() {
        assert_eq!(label_value("short"), "short");
        let l = label_value(&"x".repeat(200));
        assert!(l.len() <= 63);
        assert_ne!(l, label_value(&format!("{}y", "x".repeat(199))));
    }

    #[test]
    fn trace_id_is_32_hex() {
        let t = trace_id("0f5e3b2a-uid");
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
