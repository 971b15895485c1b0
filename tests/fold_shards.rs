//! The fold's side of sharding and restarts: a new process (a Started record) acts only on what
//! it has relisted, and a relist filtered by a new shard count forgets the Operations another
//! shard now owns, without a command for them. A restart re-sends only what may not have run.

mod common;

use common::*;
use serde_json::json;
use vworkspace_operator::command::{Action, Command};
use vworkspace_operator::ownership::owns_operation;
use vworkspace_operator::record::{ChildKind, Discovery, Observed, RecordBody, ResourceKind, Started, WatchEvent};
use vworkspace_operator::shard::{Shard, owner};

const BASE: [ResourceKind; 4] = ResourceKind::BASE;

fn started(h: &mut vworkspace_operator::harness::Harness, shard: Shard) -> usize {
    h.record(RecordBody::Started(Started { shard, ..Default::default() })).len()
}

#[test]
fn a_new_process_acts_only_after_relisting_every_kind() {
    let mut h = world();
    h.discovery(&[ChildKind::Job]);
    for k in BASE.into_iter().chain([ResourceKind::Child(ChildKind::Job)]) {
        h.relist(k);
    }
    submit(&mut h, operation("cmd", "RunCommand", None, json!({})));
    let (k, ns, name) = only_child(&h, "cmd");

    assert_eq!(started(&mut h, Shard::default()), 0);
    assert!(!h.state.synced(), "restored state is stale until relisted");
    assert_eq!(h.state.shard, Shard::default());
    let commands = h.commands.len();
    let cmds = h.record(RecordBody::Restart);
    assert!(cmds.is_empty(), "nothing is re-derived from stale state: {cmds:?}");
    // The child finished while no process watched; only the relist tells.
    h.set_child_status_quietly(
        k,
        &ns,
        &name,
        json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
    );
    // The process's Discovery comes before its watches, and names the child kinds again.
    let watched = BASE.into_iter().chain([ResourceKind::Child(k)]).collect();
    let d = Discovery { installed: [k].into(), watched };
    assert!(h.record(RecordBody::Discovery(d)).is_empty());
    for kind in BASE {
        h.relist(kind);
    }
    assert!(!h.state.synced(), "the Job kind is not relisted yet");
    assert_eq!(h.phase(NS, "cmd"), "Running");
    h.relist(ResourceKind::Child(k));
    assert_eq!(h.phase(NS, "cmd"), "Succeeded", "{}", h.status(NS, "cmd"));
    assert!(h.commands.len() > commands, "it acted once synced");
    let creates = h.commands.iter().filter(|c| matches!(c.action, Action::CreateChild { .. })).count();
    assert_eq!(creates, 1, "no second child");
}

#[test]
fn a_relist_under_a_new_shard_count_forgets_what_another_shard_owns() {
    // Two targets that land on different shards of two.
    let names: Vec<String> = (0..50).map(|i| format!("app-{i}")).collect();
    let mine = names.iter().find(|n| owner(NS, n, 2) == 0).unwrap().clone();
    let theirs = names.iter().find(|n| owner(NS, n, 2) == 1).unwrap().clone();
    let mut h = world();
    for t in [&mine, &theirs] {
        h.apply(ResourceKind::ApplicationInstance, app(t, Some(true)));
    }
    for (op, t) in [("keep", &mine), ("move", &theirs)] {
        let mut o = operation(op, "RunCommand", None, json!({}));
        o["spec"]["target"]["name"] = json!(t);
        submit(&mut h, o);
    }
    assert_eq!(h.state.ops.len(), 2);
    let shard = Shard::new(0, 2).unwrap();
    started(&mut h, shard);
    let before = h.commands.len();
    for kind in BASE {
        h.relist_where(kind, |o| kind != ResourceKind::Operation || owns_operation(&shard, o));
    }
    let names: Vec<&str> = h.state.ops.keys().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["keep"], "the moved Operation is forgotten");
    assert!(
        h.commands[before..].iter().all(|c| c.op.name == "keep"),
        "no command for an Operation another shard owns: {:?}",
        &h.commands[before..]
    );
    assert_eq!(h.state.shard, shard);
}

#[test]
fn a_shard_that_comes_back_adopts_what_another_shard_finished_meanwhile() {
    let complete = json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] });
    // The other shard's run of the same Operation, to its end.
    let mut other = world();
    submit(&mut other, operation("cmd", "RunCommand", None, json!({})));
    let (k, ns, name) = only_child(&other, "cmd");
    other.set_child_status(k, &ns, &name, complete.clone());
    assert_eq!(other.phase(NS, "cmd"), "Succeeded");
    let done = other.get(ResourceKind::Operation, NS, "cmd").unwrap()["status"].clone();

    // This shard started it, then went away (scaled down); meanwhile the other shard finished it
    // and the Job was removed (a TTL, or by hand).
    let mut h = world();
    submit(&mut h, operation("cmd", "RunCommand", None, json!({})));
    assert_eq!(only_child(&h, "cmd"), (k, ns.clone(), name.clone()));
    let key = vworkspace_operator::key::ObjKey::new(NS, "cmd");
    h.objects.get_mut(&(ResourceKind::Operation, key)).unwrap()["status"] = done;
    h.objects.remove(&(ResourceKind::Child(k), vworkspace_operator::key::ObjKey::new(&ns, &name)));

    // It comes back with its old journal.
    started(&mut h, Shard::default());
    let before = h.commands.len();
    let watched = BASE.into_iter().chain([ResourceKind::Child(k)]).collect();
    h.record(RecordBody::Discovery(Discovery { installed: [k].into(), watched }));
    h.record(RecordBody::Restart);
    for kind in BASE.into_iter().chain([ResourceKind::Child(k)]) {
        h.relist(kind);
    }
    assert_eq!(h.phase(NS, "cmd"), "Succeeded", "{}", h.status(NS, "cmd"));
    let after = &h.commands[before..];
    use vworkspace_operator::api::OperationPhase;
    use vworkspace_operator::command::Action;
    assert!(
        after.iter().all(|c| match &c.action {
            Action::CreateChild { .. } => false,
            Action::PatchStatus { status } => status.phase == Some(OperationPhase::Succeeded),
            _ => true,
        }),
        "nothing re-driven from the stale step: {after:?}"
    );
}

fn status_patches(cmds: &[Command]) -> Vec<String> {
    cmds.iter().filter(|c| matches!(c.action, Action::PatchStatus { .. })).map(|c| c.op.name.clone()).collect()
}

#[test]
fn a_restart_resends_a_status_only_if_its_patch_was_in_flight() {
    let mut h = world();
    h.apply(ResourceKind::ApplicationInstance, app("other", Some(true)));
    let ended = json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] });
    for (op, target, status) in [("done", "shop", ended.clone()), ("running", "other", json!({ "active": 1 }))] {
        let mut o = operation(op, "RunCommand", None, json!({}));
        o["spec"]["target"]["name"] = json!(target);
        submit(&mut h, o);
        let (k, ns, name) = only_child(&h, op);
        h.set_child_status(k, &ns, &name, status);
    }
    assert_eq!([h.phase(NS, "done"), h.phase(NS, "running")], ["Succeeded", "Running"]);
    let (k, ns, name) = only_child(&h, "running");

    // Every status patch has its outcome in the journal: the cluster holds those statuses.
    let cmds = h.record(RecordBody::Restart);
    assert_eq!(status_patches(&cmds), Vec::<String>::new(), "{cmds:?}");
    h.run(cmds);
    h.settle();

    // The child ends; its status patch goes out but the process dies before its outcome.
    let mut child = h.get(ResourceKind::Child(k), &ns, &name).cloned().expect("child");
    child["status"] = ended;
    let sent = h.record(RecordBody::Observed(Observed {
        resource: ResourceKind::Child(k),
        event: WatchEvent::Apply,
        object: Some(child),
    }));
    assert_eq!(status_patches(&sent), ["running"]);
    let cmds = h.record(RecordBody::Restart);
    assert_eq!(status_patches(&cmds), ["running"], "only the patch in flight is sent again: {cmds:?}");
    h.run(cmds);
    h.settle();
    assert_eq!(h.phase(NS, "running"), "Succeeded");
}
