//! The condition contract (DESIGN §2): four conditions from the first reconcile on, plus the
//! kstatus pair Reconciling/Stalled; `lastTransitionTime` moves only when a status changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{Condition, ConditionStatus, ConditionType, OperationPhase, reason};

/// A condition change worth an Event: its status or its reason moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub ty: ConditionType,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    pub map: CondMap,
}

/// The contract conditions, a slot per type. A B-tree node has room for eleven and cost every
/// Operation 1 KiB for its four. Serialised as the map it replaced, so snapshots read alike.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CondMap([Option<Condition>; ConditionType::ALL.len()]);

impl CondMap {
    pub fn get(&self, ty: &ConditionType) -> Option<&Condition> {
        self.0[*ty as usize].as_ref()
    }

    pub fn get_mut(&mut self, ty: &ConditionType) -> Option<&mut Condition> {
        self.0[*ty as usize].as_mut()
    }

    pub fn insert(&mut self, ty: ConditionType, c: Condition) {
        self.0[ty as usize] = Some(c);
    }

    fn or_insert_with(&mut self, ty: ConditionType, f: impl FnOnce() -> Condition) -> &mut Condition {
        self.0[ty as usize].get_or_insert_with(f)
    }

    /// By type, in `ConditionType::ALL`'s order (the map's order before).
    pub fn iter(&self) -> impl Iterator<Item = (ConditionType, &Condition)> {
        ConditionType::ALL.into_iter().zip(&self.0).filter_map(|(t, c)| Some((t, c.as_ref()?)))
    }

    pub fn values(&self) -> impl Iterator<Item = &Condition> {
        self.0.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.values().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

impl Serialize for CondMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for CondMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = CondMap::default();
        for (ty, c) in BTreeMap::<ConditionType, Condition>::deserialize(d)? {
            out.insert(ty, c);
        }
        Ok(out)
    }
}

impl Conditions {
    /// Every contract condition starts Unknown.
    pub fn init(&mut self, generation: i64, now: DateTime<Utc>) {
        for ty in ConditionType::ALL {
            self.map.or_insert_with(ty, || Condition {
                type_: ty.as_str().into(),
                status: ConditionStatus::Unknown,
                observed_generation: generation,
                last_transition_time: now,
                reason: reason::PENDING.into(),
                message: String::new(),
            });
        }
    }

    /// Adopts conditions from an observed status (after a lost journal): the cluster is truth.
    pub fn adopt(&mut self, observed: &[Condition]) {
        for c in observed {
            if let Some(ty) = ConditionType::parse(&c.type_) {
                self.map.insert(ty, c.clone());
            }
        }
    }

    pub fn get(&self, ty: ConditionType) -> Option<&Condition> {
        self.map.get(&ty)
    }

    pub fn status(&self, ty: ConditionType) -> ConditionStatus {
        self.get(ty).map(|c| c.status).unwrap_or(ConditionStatus::Unknown)
    }

    pub fn reason(&self, ty: ConditionType) -> &str {
        self.get(ty).map(|c| c.reason.as_str()).unwrap_or("")
    }

    pub fn set(
        &mut self,
        ty: ConditionType,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        generation: i64,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        let message = message.into();
        let entry = self.map.or_insert_with(ty, || Condition {
            type_: ty.as_str().into(),
            status: ConditionStatus::Unknown,
            observed_generation: generation,
            last_transition_time: now,
            reason: reason::PENDING.into(),
            message: String::new(),
        });
        let moved = entry.status != status;
        let changed = moved || entry.reason != reason;
        if moved {
            entry.last_transition_time = now;
        }
        entry.status = status;
        entry.reason = reason.to_string();
        entry.message = message.clone();
        entry.observed_generation = generation;
        changed.then(|| Transition { ty, status, reason: reason.to_string(), message })
    }

    pub fn is_terminal(&self) -> bool {
        self.status(ConditionType::Succeeded) != ConditionStatus::Unknown
    }

    /// Display phase, derived from the conditions only.
    pub fn phase(&self) -> OperationPhase {
        match self.status(ConditionType::Succeeded) {
            ConditionStatus::True => return OperationPhase::Succeeded,
            ConditionStatus::False if self.reason(ConditionType::Succeeded) == reason::CANCELLED => {
                return OperationPhase::Cancelled;
            }
            ConditionStatus::False => return OperationPhase::Failed,
            ConditionStatus::Unknown => {}
        }
        if self.status(ConditionType::Progressing) == ConditionStatus::True {
            OperationPhase::Running
        } else if self.status(ConditionType::Accepted) == ConditionStatus::True
            && self.status(ConditionType::PreconditionsMet) == ConditionStatus::False
        {
            OperationPhase::Blocked
        } else {
            OperationPhase::Pending
        }
    }

    /// The one line for `kubectl get -o wide`: the condition that explains the phase.
    pub fn summary(&self) -> String {
        let pick = |ty| self.get(ty).map(|c| c.message.clone()).unwrap_or_default();
        match self.phase() {
            OperationPhase::Succeeded | OperationPhase::Failed | OperationPhase::Cancelled => {
                pick(ConditionType::Succeeded)
            }
            OperationPhase::Running => pick(ConditionType::Progressing),
            OperationPhase::Blocked => pick(ConditionType::PreconditionsMet),
            OperationPhase::Pending => {
                if self.status(ConditionType::Accepted) == ConditionStatus::False {
                    pick(ConditionType::Accepted)
                } else {
                    pick(ConditionType::PreconditionsMet)
                }
            }
        }
    }

    /// Contract conditions plus kstatus' Reconciling (active) and Stalled (failed), in order.
    pub fn to_status(&self, generation: i64) -> Vec<Condition> {
        let mut out: Vec<Condition> = ConditionType::ALL.iter().filter_map(|t| self.map.get(t).cloned()).collect();
        let succeeded = self.get(ConditionType::Succeeded);
        let ltt = succeeded.map(|c| c.last_transition_time).unwrap_or_default();
        let terminal = self.is_terminal();
        let failed = self.status(ConditionType::Succeeded) == ConditionStatus::False;
        let first_ltt = out.iter().map(|c| c.last_transition_time).min().unwrap_or_default();
        out.push(Condition {
            type_: "Reconciling".into(),
            status: if terminal { ConditionStatus::False } else { ConditionStatus::True },
            observed_generation: generation,
            last_transition_time: if terminal { ltt } else { first_ltt },
            reason: if terminal { reason::FINISHED.into() } else { self.phase().as_str().into() },
            message: String::new(),
        });
        out.push(Condition {
            type_: "Stalled".into(),
            status: if failed { ConditionStatus::True } else { ConditionStatus::False },
            observed_generation: generation,
            last_transition_time: if failed { ltt } else { first_ltt },
            reason: if failed { self.reason(ConditionType::Succeeded).to_string() } else { "NotStalled".into() },
            message: if failed { succeeded.map(|c| c.message.clone()).unwrap_or_default() } else { String::new() },
        });
        out
    }
}

/// kubectl-style short duration ("45s", "3m12s", "2h5m", "3d4h").
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slots_serialise_as_the_map_they_replaced() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut c = Conditions::default();
        c.init(1, t0);
        c.set(ConditionType::Succeeded, ConditionStatus::True, reason::COMPLETED, "done", 1, t0);
        let map: BTreeMap<ConditionType, Condition> = c.map.iter().map(|(t, c)| (t, c.clone())).collect();
        assert_eq!(map.len(), 4);
        #[derive(Serialize)]
        struct Before {
            map: BTreeMap<ConditionType, Condition>,
        }
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            serde_json::to_string(&Before { map }).unwrap(),
            "a snapshot reads as before"
        );
        let back: Conditions = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let order: Vec<ConditionType> = c.map.iter().map(|(t, _)| t).collect();
        assert_eq!(order, ConditionType::ALL, "in the B-tree's order");
        let bad = serde_json::from_str::<Conditions>(r#"{"map":{"Healthy":{}}}"#).unwrap_err();
        assert!(bad.to_string().contains("unknown variant"), "{bad}");
    }
}
