//! The cap on Operations run at once (`run --max-active-operations`, `fold::admission`): over it
//! a new Operation waits untouched, in creation order, and each ending admits the oldest.

mod common;

use common::*;
use serde_json::json;
use vworkspace_operator::command::Action;
use vworkspace_operator::fold::State;
use vworkspace_operator::harness::Harness;
use vworkspace_operator::record::{ChildKind, RecordBody, ResourceKind, Started};

/// A harness whose process runs at most `cap` Operations, with targets `t0`..`t5`.
fn capped(cap: Option<u32>) -> Harness {
    let mut h = world();
    h.discovery(&[ChildKind::Job]);
    h.record(RecordBody::Started(Started { max_active: cap, ..Default::default() }));
    for k in ResourceKind::BASE.into_iter().chain([ResourceKind::Child(ChildKind::Job)]) {
        h.relist(k);
    }
    assert!(h.state.synced());
    for i in 0..6 {
        h.apply(ResourceKind::ApplicationInstance, app(&format!("t{i}"), Some(true)));
    }
    h
}

/// A RunCommand on its own target, created `h.now` (names sort apart from creation order).
fn run_on(h: &mut Harness, name: &str, target: usize) {
    let mut op = operation(name, "RunCommand", None, json!({}));
    op["spec"]["target"]["name"] = json!(format!("t{target}"));
    submit(h, op);
    h.advance(1);
}

fn commands_for(h: &Harness, name: &str) -> usize {
    h.commands.iter().filter(|c| c.op.name == name).count()
}

fn complete(h: &mut Harness, name: &str) {
    let (kind, ns, child) = only_child(h, name);
    let done = json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] });
    h.set_child_status(kind, &ns, &child, done);
    assert_eq!(h.phase(NS, name), "Succeeded", "{}", h.status(NS, name));
}

#[test]
fn over_the_cap_operations_wait_untouched_and_start_oldest_first() {
    let mut h = capped(Some(2));
    for (i, name) in ["zeta", "yank", "xray", "whisky"].into_iter().enumerate() {
        run_on(&mut h, name, i);
    }
    for name in ["zeta", "yank"] {
        assert_eq!(h.phase(NS, name), "Running", "{name}: {}", h.status(NS, name));
    }
    for name in ["xray", "whisky"] {
        assert!(h.status(NS, name).is_null(), "{name} waits with no status: {}", h.status(NS, name));
        assert_eq!(commands_for(&h, name), 0, "{name}: no command, no Event while it waits");
    }
    assert_eq!(h.state.admission.waiting(), 2);

    // One slot frees: the oldest waiting (xray, not whisky, which sorts first) takes it, in the
    // same record.
    complete(&mut h, "zeta");
    assert_eq!(h.phase(NS, "xray"), "Running", "{}", h.status(NS, "xray"));
    assert!(h.status(NS, "whisky").is_null());
    complete(&mut h, "yank");
    complete(&mut h, "xray");
    complete(&mut h, "whisky");
    assert_eq!(h.state.admission.waiting(), 0);
}

#[test]
fn cancelling_or_deleting_a_waiting_operation_takes_no_slot() {
    let mut h = capped(Some(1));
    run_on(&mut h, "first", 0);
    run_on(&mut h, "second", 1);
    run_on(&mut h, "third", 2);
    assert!(h.status(NS, "second").is_null());
    cancel(&mut h, "second");
    assert_eq!(h.phase(NS, "second"), "Cancelled", "{}", h.status(NS, "second"));
    assert!(h.children_of("uid-second").is_empty(), "no child for a cancelled waiting Operation");
    assert!(h.status(NS, "third").is_null(), "the slot is still first's");
    h.request_delete(NS, "third");
    assert!(h.get(ResourceKind::Operation, NS, "third").is_none(), "deleted while it waited");
    assert_eq!(h.state.admission.waiting(), 0);
    complete(&mut h, "first");
}

#[test]
fn who_waits_survives_a_snapshot() {
    let mut h = capped(Some(1));
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        run_on(&mut h, name, i);
    }
    let bytes = serde_json::to_vec(&h.state).unwrap();
    let restored = State::from_snapshot(&bytes).unwrap();
    assert_eq!(restored.admission, h.state.admission);
    assert_eq!(restored.max_active, Some(1));
    assert_eq!(restored.admission.waiting(), 2);
}

#[test]
fn a_new_process_with_a_higher_cap_starts_those_waiting() {
    let mut h = capped(Some(1));
    run_on(&mut h, "a", 0);
    run_on(&mut h, "b", 1);
    assert!(h.status(NS, "b").is_null());
    h.record(RecordBody::Started(Started { max_active: Some(5), ..Default::default() }));
    h.record(RecordBody::Restart);
    for k in ResourceKind::BASE.into_iter().chain([ResourceKind::Child(ChildKind::Job)]) {
        h.relist(k);
    }
    assert_eq!(h.phase(NS, "b"), "Running", "{}", h.status(NS, "b"));
    let creates = h.commands.iter().filter(|c| matches!(c.action, Action::CreateChild { .. })).count();
    assert_eq!(creates, 2, "one child each, none twice");
}

#[test]
fn without_a_cap_nothing_waits() {
    let mut h = capped(None);
    for i in 0..6 {
        run_on(&mut h, &format!("op{i}"), i);
    }
    for i in 0..6 {
        assert_eq!(h.phase(NS, &format!("op{i}")), "Running");
    }
    assert_eq!(h.state.admission.waiting(), 0);
}

#[test]
fn an_operation_blocked_on_its_target_gives_its_slot_back() {
    let mut h = capped(Some(1));
    h.apply(ResourceKind::ApplicationInstance, app("t0", Some(false)));
    run_on(&mut h, "stuck", 0);
    assert_eq!(cond(&h, "stuck", "PreconditionsMet").0, "False", "{}", h.status(NS, "stuck"));
    // A target that never becomes Ready must not hold every slot.
    run_on(&mut h, "other", 1);
    assert_eq!(h.phase(NS, "other"), "Running", "{}", h.status(NS, "other"));
    // Once its target is Ready it starts, over the cap: it was admitted long ago.
    h.apply(ResourceKind::ApplicationInstance, app("t0", Some(true)));
    assert!(h.children_of("uid-stuck").len() == 1, "{}", h.status(NS, "stuck"));
    complete(&mut h, "stuck");
    complete(&mut h, "other");
}

#[test]
fn a_waiting_operation_held_by_another_finalizer_takes_no_slot() {
    let mut h = capped(Some(1));
    run_on(&mut h, "first", 0);
    run_on(&mut h, "second", 1);
    run_on(&mut h, "third", 2);
    // Deleted while it waits, but another controller's finalizer keeps it.
    let mut third = h.get(ResourceKind::Operation, NS, "third").cloned().unwrap();
    third["metadata"]["deletionTimestamp"] = json!(h.now.to_rfc3339());
    third["metadata"]["finalizers"] = json!(["example.org/keep"]);
    h.apply(ResourceKind::Operation, third);
    assert!(h.children_of("uid-third").is_empty());
    complete(&mut h, "first");
    assert_eq!(h.phase(NS, "second"), "Running", "the next waiting one, not the deleted one, gets the slot");
    complete(&mut h, "second");
}
