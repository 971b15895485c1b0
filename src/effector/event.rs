//! Kubernetes Events (events.k8s.io/v1), one per EmitEvent command. Each is named after its
//! command, so a retried attempt finds its own Event instead of writing a second one. There is
//! no client-side cache: the fold already emits each transition's Event once. (kube's `Recorder`
//! kept every Event of the last six minutes for its series, and scanned them all on each
//! publish: 94 MB and a scan per Event at a few thousand Operations.)

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use super::{Done, classify};
use crate::command::{Command, EventType};
use crate::engine::naming;
use crate::record::{OutcomeData, OutcomeResult as R};

/// The Events API allows a note of at most 1 KB.
const NOTE_MAX_BYTES: usize = 1024;

pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
}

impl Events {
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Self { client, controller: controller.into(), instance: instance.unwrap_or_else(|| controller.into()) }
    }

    pub async fn emit(&self, cmd: &Command, event_type: EventType, reason: &str, note: &str, action: &str) -> Done {
        let ns = &cmd.op.namespace;
        let event = Event {
            metadata: ObjectMeta { name: Some(name(cmd)), namespace: Some(ns.clone()), ..Default::default() },
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(truncate(note, NOTE_MAX_BYTES).into()),
            type_: Some(if event_type == EventType::Warning { "Warning" } else { "Normal" }.into()),
            regarding: Some(ObjectReference {
                api_version: Some("ops.vworkspace.io/v1alpha1".into()),
                kind: Some("Operation".into()),
                namespace: Some(ns.clone()),
                name: Some(cmd.op.name.clone()),
                uid: Some(cmd.uid.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        match Api::<Event>::namespaced(self.client.clone(), ns).create(&PostParams::default(), &event).await {
            Ok(_) => Ok(OutcomeData::None),
            Err(e) => match classify(&e) {
                // An earlier attempt of this command wrote it.
                (R::AlreadyExistsForeign, _) => Ok(OutcomeData::None),
                other => Err(other),
            },
        }
    }
}

/// `<operation>.<16 hex of the command and its content>`, as Kubernetes names Events after what
/// they regard. The content is in the hash because a command ID alone can come back: an
/// Operation adopted afresh from the cluster (after a restart, or a lost journal) counts its
/// commands from one again, and its new Event must not be taken for the old one's retry.
fn name(cmd: &Command) -> String {
    let op = truncate(&cmd.op.name, 253 - 17);
    let content = match &cmd.action {
        crate::command::Action::EmitEvent { event_type, reason, note, action } => {
            format!("{event_type:?}/{reason}/{action}/{note}")
        }
        _ => String::new(),
    };
    format!("{}.{}", op.trim_end_matches(['.', '-']), naming::short_hash(&[&cmd.uid, &cmd.id, &content], 8))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Action;
    use crate::key::OpKey;

    fn cmd(op: &str, id: &str) -> Command {
        event(op, id, "Valid")
    }

    fn event(op: &str, id: &str, reason: &str) -> Command {
        Command {
            id: id.into(),
            op: OpKey::new("ns", op),
            uid: "u".into(),
            action: Action::EmitEvent {
                event_type: EventType::Normal,
                reason: reason.into(),
                note: String::new(),
                action: "Accept".into(),
            },
        }
    }

    #[test]
    fn a_reused_command_id_with_other_content_is_another_event() {
        // Found by the chaos suite: after a restart an adopted Operation's IDs start again, and
        // its Completed Event was taken for the AlreadyExists retry of its first Valid Event.
        assert_ne!(name(&event("a", "c1", "Valid")), name(&event("a", "c1", "Completed")));
    }

    #[test]
    fn names_are_per_command_and_valid_for_any_operation_name() {
        assert_ne!(name(&cmd("a", "c1")), name(&cmd("a", "c2")));
        assert_eq!(name(&cmd("a", "c1")), name(&cmd("a", "c1")), "a retry finds its own Event");
        let long = "x".repeat(253);
        assert!(name(&cmd(&long, "c1")).len() <= 253);
    }

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        let note = "é".repeat(600);
        let cut = truncate(&note, NOTE_MAX_BYTES);
        assert!(cut.len() <= NOTE_MAX_BYTES && cut.chars().all(|c| c == 'é'));
    }
}
