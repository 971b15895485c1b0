//! Per-Operation state: everything the fold remembers about one Operation.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::conditions::Conditions;
use super::last_status::LastStatus;
use crate::api::{EngineStatus, OperationSpec, PlannedChild};
use crate::command::HelmHook;
use crate::engine::{EngineKind, naming};
use crate::key::OpKey;
use crate::record::{ChildKind, TimerKind};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpState {
    pub key: OpKey,
    pub uid: String,
    pub generation: i64,
    /// `metadata.creationTimestamp`, or the record time it was first seen.
    pub created: DateTime<Utc>,
    /// Frozen at first sight: only `cancel` may change afterwards.
    pub spec: Option<OperationSpec>,
    /// Why the spec could not be read, if it could not.
    pub spec_error: Option<String>,
    pub has_finalizer: bool,
    pub deleting: bool,
    pub conditions: Conditions,
    /// Resolved template name and spec, frozen once the Operation starts.
    pub template: Option<super::frozen::Frozen>,
    pub started: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    pub steps: Vec<StepState>,
    pub hooks: Option<Vec<HelmHook>>,
    pub upgrade: Option<UpgradeState>,
    pub cancel: CancelState,
    pub outputs: BTreeMap<String, String>,
    pub engine: Option<EngineStatus>,
    pub plan: Vec<PlannedChild>,
    pub queue_position: Option<u32>,
    /// Last status sent (or adopted from the cluster); a patch goes out only when it differs.
    /// A digest once the Operation has ended (`last_status`).
    pub last_status: Option<LastStatus>,
    pub timers: BTreeMap<TimerKind, DateTime<Utc>>,
    /// Commands sent and not yet answered, by ID.
    pub pending: BTreeMap<String, Pending>,
    /// Events sent and not yet answered, by command ID. An Event marks an edge, which no
    /// reconcile derives again, so a restart sends these once more under the same ID.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unsent_events: BTreeMap<String, crate::command::Action>,
    pub counter: u64,
    pub cancel_ignored_reported: bool,
    /// Who asked for it: the `ops.vworkspace.io/requested-by` annotation, else the first
    /// field manager (audit records and signals carry it).
    #[serde(default)]
    pub requested_by: Option<String>,
    pub finalizer_requested: bool,
    pub cleanup: Cleanup,
    /// The engine, resolved at acceptance.
    pub kind: Option<EngineKind>,
    /// Hashes of the UID, computed once: every command ID and status carries one.
    #[serde(skip)]
    pub(crate) derived: Derived,
}

/// What derives from the UID alone (`naming`): the command ID prefix and the trace ID. Two
/// sha256 per reconcile were 4% of a replay. Not part of the state: equal whether computed or
/// not, and never serialised.
#[derive(Clone, Debug, Default)]
pub(crate) struct Derived(std::sync::OnceLock<(String, String)>);

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl OpState {
    pub fn new(key: OpKey, uid: String, created: DateTime<Utc>) -> Self {
        Self {
            key,
            uid,
            generation: 1,
            created,
            spec: None,
            spec_error: None,
            has_finalizer: false,
            deleting: false,
            conditions: Conditions::default(),
            template: None,
            started: None,
            completed: None,
            steps: Vec::new(),
            hooks: None,
            upgrade: None,
            cancel: CancelState::NotRequested,
            outputs: BTreeMap::new(),
            engine: None,
            plan: Vec::new(),
            queue_position: None,
            last_status: None,
            timers: BTreeMap::new(),
            pending: BTreeMap::new(),
            unsent_events: BTreeMap::new(),
            counter: 0,
            cancel_ignored_reported: false,
            requested_by: None,
            finalizer_requested: false,
            cleanup: Cleanup::default(),
            kind: None,
            derived: Derived::default(),
        }
    }

    fn derived(&self) -> &(String, String) {
        self.derived.0.get_or_init(|| (naming::uid_prefix(&self.uid), naming::trace_id(&self.uid)))
    }

    /// The prefix of every command ID (`naming::uid_prefix`).
    pub fn id_prefix(&self) -> &str {
        &self.derived().0
    }

    /// `naming::trace_id` of the UID.
    pub fn trace_id(&self) -> &str {
        &self.derived().1
    }

    pub fn is_terminal(&self) -> bool {
        self.conditions.is_terminal()
    }

    pub fn is_dry_run(&self) -> bool {
        self.spec.as_ref().is_some_and(|s| s.dry_run)
    }

    pub fn target_name(&self) -> Option<&str> {
        self.spec.as_ref().map(|s| s.target.name.as_str())
    }

    /// After a restart nothing sent is known to have run: re-derive it. Creates go out again
    /// under the same name (AlreadyExists with our UID counts as done), and timers are re-armed
    /// by the next reconcile. The status is re-sent only if a patch of it was in flight: one
    /// whose outcome was journaled is in the cluster (a failed one already cleared it), and
    /// re-sending every retained Operation's status was 50,000 patches at a restart.
    pub fn forget_in_flight(&mut self) {
        if self.has_pending(&Pending::Status) {
            self.last_status = None;
        }
        self.pending.clear();
        for s in &mut self.steps {
            if s.create == CreateState::Sent {
                s.create = CreateState::NotSent;
            }
        }
        self.timers.clear();
        self.finalizer_requested = false;
        self.cleanup.deletes_sent = false;
        self.cleanup.finalizer_removal_sent = false;
        self.cleanup.retention_delete_sent = false;
        if self.cancel == CancelState::Stopping {
            self.cancel = CancelState::NotRequested;
        }
    }

    /// Takes an answered command out of the books (an Event is no longer owed after a restart).
    pub(crate) fn answered(&mut self, command_id: &str) -> Option<Pending> {
        let pending = self.pending.remove(command_id)?;
        if pending == Pending::Event {
            self.unsent_events.remove(command_id);
        }
        shed(&mut self.pending);
        shed(&mut self.unsent_events);
        Some(pending)
    }

    /// A timer that fired is no longer armed.
    pub(crate) fn fired(&mut self, timer: TimerKind) {
        self.timers.remove(&timer);
        shed(&mut self.timers);
    }

    pub fn has_pending(&self, what: &Pending) -> bool {
        self.pending.values().any(|p| p == what)
    }
}

/// Frees an emptied map: a B-tree keeps its root node when its last entry is removed (1.8 KiB
/// for the Events owed), and every ended Operation would hold one for each of its maps.
fn shed<K, V>(map: &mut BTreeMap<K, V>) {
    if map.is_empty() {
        *map = BTreeMap::new();
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub step: u32,
    pub kind: ChildKind,
    pub namespace: String,
    pub name: String,
    pub create: CreateState,
    /// Observed in the cluster at least once.
    pub seen: bool,
    pub done: bool,
}

impl StepState {
    /// `Kind namespace/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind.kind(), self.namespace, self.name)
    }
}

/// The message when a child's deterministic name is taken by an object that is not ours.
pub fn foreign_child(what: &str) -> String {
    format!("{what} already exists and does not belong to this Operation; nothing was overwritten")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateState {
    /// Not sent yet (or to be sent again after a transient failure).
    NotSent,
    Sent,
    Created,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeState {
    pub previous: String,
    pub version: String,
    /// Generation the target reached with the patch.
    pub generation: Option<i64>,
    pub rollback: RollbackState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RollbackState {
    None,
    Sent { reason: String, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelState {
    NotRequested,
    /// The stop command is out; Cancelled once it succeeds.
    Stopping,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {
    pub deletes_sent: bool,
    pub finalizer_removal_sent: bool,
    pub retention_delete_sent: bool,
}

/// What an unanswered command was for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pending {
    Create { step: u32 },
    Stop { step: u32 },
    Status,
    Event,
    PatchTarget { rollback: bool },
    LoadHooks,
    AddFinalizer,
    RemoveFinalizer,
    CleanupDelete { step: u32 },
    DeleteOperation,
}
