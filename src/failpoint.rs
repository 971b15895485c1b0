//! Crash points for the chaos suite. `VW_FAILPOINT=<point>:<n>` aborts the process the n-th
//! time it passes `<point>`: no destructor runs and nothing is flushed, as under SIGKILL, but at
//! a moment a random kill rarely hits. Unset, a point costs one load of a cached value.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// After a child's create succeeded, before its outcome reaches the journal.
pub const AFTER_CREATE: &str = "after-create";
/// After a batch is appended, before it is made durable.
pub const MID_APPEND: &str = "mid-append";

static CONFIG: OnceLock<Option<(String, u64)>> = OnceLock::new();
static PASSED: AtomicU64 = AtomicU64::new(0);

fn config() -> &'static Option<(String, u64)> {
    CONFIG.get_or_init(|| {
        let v = std::env::var("VW_FAILPOINT").ok()?;
        let (point, n) = v.rsplit_once(':')?;
        Some((point.to_string(), n.parse().ok()?))
    })
}

pub fn hit(point: &str) {
    if let Some((p, n)) = config()
        && p == point
        && PASSED.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        eprintln!("failpoint {point}: aborting the process (VW_FAILPOINT)");
        std::process::abort();
    }
}
