//! The live consumers of signals, fed by the fold loop after each record: OTLP spans, the
//! audit stream and metrics. Each is optional and costs nothing when off.

use std::io::Write;

use super::{Projector, Signal};
use crate::command::Command;
use crate::fold::State;
use crate::record::Record;

pub struct Sinks {
    projector: Projector,
    audit: Option<Box<dyn Write + Send>>,
    /// The lease, for the epoch live spans carry.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    leadership: Option<crate::leader::Leadership>,
}

impl Sinks {
    /// Starts from the restored state, so what was already reported is not reported again.
    pub fn new(
        state: &State,
        audit: Option<Box<dyn Write + Send>>,
        leadership: Option<crate::leader::Leadership>,
    ) -> Self {
        Self { projector: Projector::seeded(state), audit, leadership }
    }

    pub fn on_record(&mut self, state: &State, rec: &Record, cmds: &[Command]) -> Vec<Signal> {
        let signals = self.projector.step(state, rec, cmds);
        if signals.is_empty() {
            return signals;
        }
        #[cfg(feature = "otlp")]
        super::spans::emit(&signals, self.leadership.as_ref().and_then(crate::leader::current).map(|t| t.epoch));
        crate::metrics::on_signals(&signals);
        if let Some(w) = self.audit.as_mut() {
            for r in super::audit::records(&signals) {
                if let Ok(line) = serde_json::to_string(&r) {
                    // The audit stream must not stop the operator; a failed write is logged.
                    if let Err(e) = writeln!(w, "{line}").and_then(|_| w.flush()) {
                        tracing::error!(error = %e, "audit record not written");
                    }
                }
            }
        }
        signals
    }
}
