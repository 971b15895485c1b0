//! Properties of the fold over random record sequences (proptest):
//! determinism, no duplicate children under re-delivery, relist convergence, terminal stability.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use vworkspace_operator::harness::{Harness, replay};
use vworkspace_operator::record::{ChildKind, ResourceKind};

#[derive(Clone, Debug)]
enum Engine {
    Velero,
    Job,
    Argo,
    Snapshot,
}

impl Engine {
    fn op(&self, name: &str) -> Value {
        match self {
            Engine::Velero => operation(name, "Backup", Some("velero"), json!({})),
            Engine::Job => operation(name, "RunCommand", None, json!({})),
            Engine::Argo => operation(name, "Runbook", None, json!({})),
            Engine::Snapshot => operation(name, "Backup", Some("csiSnapshot"), json!({ "pvc": "data" })),
        }
    }

    /// Upstream statuses leading to a terminal one; `fail` picks the failing ending.
    fn statuses(&self, fail: bool) -> Vec<Value> {
        match (self, fail) {
            (Engine::Velero, false) => {
                vec![json!({ "phase": "New" }), json!({ "phase": "InProgress" }), json!({ "phase": "Completed" })]
            }
            (Engine::Velero, true) => {
                vec![json!({ "phase": "InProgress" }), json!({ "phase": "PartiallyFailed", "errors": 1 })]
            }
            (Engine::Job, false) => vec![
                json!({ "active": 1 }),
                json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] }),
            ],
            (Engine::Job, true) => vec![
                json!({ "active": 1 }),
                json!({ "failed": 1, "conditions": [{ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded" }] }),
            ],
            (Engine::Argo, false) => vec![
                json!({ "phase": "Running", "progress": "0/2" }),
                json!({ "phase": "Succeeded", "progress": "2/2" }),
            ],
            (Engine::Argo, true) => {
                vec![json!({ "phase": "Running" }), json!({ "phase": "Failed", "message": "boom" })]
            }
            (Engine::Snapshot, false) => vec![
                json!({ "readyToUse": false, "error": { "message": "busy" } }),
                json!({ "readyToUse": true, "boundVolumeSnapshotContentName": "c" }),
            ],
            (Engine::Snapshot, true) => vec![json!({ "readyToUse": false, "error": { "message": "busy" } })],
        }
    }

    fn expected(&self, fail: bool) -> (&'static str, &'static str) {
        match (self, fail) {
            (_, false) => ("True", "Completed"),
            (Engine::Velero, true) => ("False", "PartiallyFailed"),
            (Engine::Job, true) => ("False", "BackoffLimitExceeded"),
            (Engine::Argo, true) => ("False", "EngineFailed"),
            (Engine::Snapshot, true) => ("Unknown", "Pending"),
        }
    }
}

#[derive(Clone, Debug)]
enum Noise {
    Redeliver(usize),
    Relist(usize),
    Advance(i64),
    AppFlap,
}

fn engine() -> impl Strategy<Value = Engine> {
    prop_oneof![Just(Engine::Velero), Just(Engine::Job), Just(Engine::Argo), Just(Engine::Snapshot)]
}

fn noise() -> impl Strategy<Value = Noise> {
    prop_oneof![
        (0usize..400).prop_map(Noise::Redeliver),
        (0usize..4).prop_map(Noise::Relist),
        (1i64..20).prop_map(Noise::Advance),
        Just(Noise::AppFlap),
    ]
}

const RELIST: [ResourceKind; 4] = [
    ResourceKind::Operation,
    ResourceKind::ApplicationInstance,
    ResourceKind::Child(ChildKind::Job),
    ResourceKind::Child(ChildKind::VeleroBackup),
];

fn apply_noise(h: &mut Harness, n: &Noise) {
    match n {
        Noise::Redeliver(i) => {
            let len = h.journal.len().max(1);
            h.redeliver(i % len);
        }
        Noise::Relist(k) => h.relist(RELIST[k % RELIST.len()]),
        Noise::Advance(s) => h.advance(*s),
        Noise::AppFlap => {
            // A target that flaps Ready after the Operation started must not matter.
            h.apply(ResourceKind::ApplicationInstance, app("shop", Some(false)));
            h.apply(ResourceKind::ApplicationInstance, app("shop", Some(true)));
        }
    }
}

/// Runs one Operation to its end with noise between status updates; checks the per-step invariants.
fn run(engine: &Engine, fail: bool, noise: &[Noise], quiet: bool) -> Harness {
    let mut h = world();
    submit(&mut h, engine.op("op"));
    let mut terminal: Option<(String, String)> = None;
    let statuses = engine.statuses(fail);
    for (i, st) in statuses.iter().enumerate() {
        let kids = h.children_of("uid-op");
        assert_eq!(kids.len(), 1, "exactly one child: {kids:?}");
        let (k, key) = kids[0].clone();
        if quiet {
            h.set_child_status_quietly(k, &key.namespace, &key.name, st.clone());
        } else {
            h.set_child_status(k, &key.namespace, &key.name, st.clone());
        }
        if let Some(n) = noise.get(i) {
            apply_noise(&mut h, n);
        }
        let now = h.condition(NS, "op", "Succeeded");
        if let Some(t) = &terminal {
            assert_eq!(now.as_ref(), Some(t), "a terminal outcome never changes");
        } else if now.as_ref().is_some_and(|(s, _)| s != "Unknown") {
            terminal = now;
        }
    }
    for n in noise.iter().skip(statuses.len()) {
        apply_noise(&mut h, n);
        if let Some(t) = &terminal {
            assert_eq!(h.condition(NS, "op", "Succeeded").as_ref(), Some(t), "a terminal outcome never changes");
        }
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn same_records_give_same_state_and_commands(e in engine(), fail in any::<bool>(), noise in prop::collection::vec(noise(), 0..8)) {
        let h = run(&e, fail, &noise, false);
        let (s1, c1) = replay(&h.journal);
        let (s2, c2) = replay(&h.journal);
        prop_assert_eq!(&c1, &c2);
        prop_assert_eq!(&s1, &s2);
        prop_assert_eq!(&c1, &h.commands, "replaying the journal reproduces every decision");
        prop_assert_eq!(&s1, &h.state);
    }

    #[test]
    fn every_record_leaves_the_fold_settled(e in engine(), fail in any::<bool>(), noise in prop::collection::vec(noise(), 0..8)) {
        // Skipping inert records is safe only if no reconcile leaves work for a later one.
        let h = run(&e, fail, &noise, false);
        let mut state = vworkspace_operator::fold::State::default();
        for r in &h.journal {
            vworkspace_operator::fold::step(&mut state, r);
            let again = vworkspace_operator::fold::unsettled(&state, r.at);
            prop_assert!(again.is_empty(), "after seq {} a second reconcile sends {:?}", r.seq, again);
        }
    }

    #[test]
    fn redelivery_creates_no_second_child_and_reaches_the_outcome(e in engine(), fail in any::<bool>(), noise in prop::collection::vec(noise(), 0..12)) {
        let h = run(&e, fail, &noise, false);
        prop_assert_eq!(h.children_of("uid-op").len(), 1);
        let creates = h.commands.iter().filter(|c| c.action.name() == "CreateChild").count();
        prop_assert_eq!(creates, 1, "one create command in total");
        let (s, r) = e.expected(fail);
        prop_assert_eq!(h.condition(NS, "op", "Succeeded"), Some((s.to_string(), r.to_string())));
    }

    #[test]
    fn relist_that_coalesces_missed_updates_converges(e in engine(), fail in any::<bool>()) {
        let live = run(&e, fail, &[], false);
        let mut missed = run(&e, fail, &[], true);
        missed.relist(ResourceKind::Child(ChildKind::ALL.iter().copied().find(|k| !missed.children_of("uid-op").is_empty() && missed.children_of("uid-op")[0].0 == *k).unwrap_or(ChildKind::Job)));
        prop_assert_eq!(live.condition(NS, "op", "Succeeded"), missed.condition(NS, "op", "Succeeded"));
        prop_assert_eq!(missed.children_of("uid-op").len(), 1);
    }
}

#[test]
fn missed_delete_is_seen_on_relist_as_child_lost() {
    let mut h = world();
    submit(&mut h, operation("op", "RunCommand", None, json!({})));
    let (k, key) = h.children_of("uid-op")[0].clone();
    h.set_child_status(k, &key.namespace, &key.name, json!({ "active": 1 }));
    h.objects.remove(&(ResourceKind::Child(k), key));
    assert_eq!(h.condition(NS, "op", "Succeeded").unwrap().0, "Unknown");
    h.relist(ResourceKind::Child(k));
    assert_eq!(h.condition(NS, "op", "Succeeded"), Some(("False".into(), "ChildLost".into())));
}

#[test]
fn lost_journal_converges_from_the_cluster_without_duplicates() {
    let mut h = world();
    submit(&mut h, operation("op", "Backup", Some("velero"), json!({})));
    let (k, key) = h.children_of("uid-op")[0].clone();
    h.set_child_status(k, &key.namespace, &key.name, json!({ "phase": "InProgress" }));
    let before = h.commands.iter().filter(|c| c.action.name() == "EmitEvent").count();
    // A new operator with an empty journal relists everything.
    h.state = Default::default();
    for kind in [
        ResourceKind::OperationTemplate,
        ResourceKind::ApplicationInstance,
        ResourceKind::Secret,
        ResourceKind::Child(k),
        ResourceKind::Operation,
    ] {
        h.relist(kind);
    }
    assert_eq!(h.children_of("uid-op").len(), 1);
    assert_eq!(
        h.commands.iter().filter(|c| c.action.name() == "EmitEvent").count(),
        before,
        "no transition is re-announced"
    );
    h.set_child_status(k, &key.namespace, &key.name, json!({ "phase": "Completed" }));
    assert_eq!(h.condition(NS, "op", "Succeeded"), Some(("True".into(), "Completed".into())));
    assert_eq!(h.children_of("uid-op").len(), 1);
}

#[test]
fn nothing_happens_before_the_first_relist_is_done() {
    use vworkspace_operator::record::{Discovery, RecordBody};
    let mut h = Harness::new();
    let body = RecordBody::Discovery(Discovery {
        installed: ChildKind::ALL.iter().copied().collect(),
        watched: ResourceKind::ALL.iter().copied().collect(),
    });
    h.record(body);
    h.apply(ResourceKind::Operation, operation("early", "RunCommand", None, json!({})));
    assert!(
        h.commands.is_empty(),
        "an Operation seen before templates and targets are listed is not judged: {:?}",
        h.commands
    );
    for t in all_templates() {
        h.objects.insert((ResourceKind::OperationTemplate, vworkspace_operator::key::ObjKey::of(&t).unwrap()), t);
    }
    let a = app("shop", Some(true));
    h.objects.insert((ResourceKind::ApplicationInstance, vworkspace_operator::key::ObjKey::of(&a).unwrap()), a);
    for k in ResourceKind::ALL {
        h.relist(k);
    }
    assert_eq!(h.condition(NS, "early", "Accepted"), Some(("True".into(), "Valid".into())));
    assert_eq!(h.children_of("uid-early").len(), 1);
}

#[test]
fn restart_with_lost_in_flight_commands_converges_without_duplicates() {
    for engine in [Engine::Velero, Engine::Job, Engine::Argo, Engine::Snapshot] {
        let mut h = world();
        // The create is sent, but the operator dies before it runs or its outcome is journaled.
        h.fail_next.clear();
        let op = engine.op("op");
        h.objects.insert((ResourceKind::Operation, vworkspace_operator::key::ObjKey::new(NS, "op")), {
            let mut o = op.clone();
            o["metadata"]["uid"] = json!("uid-op");
            o["metadata"]["creationTimestamp"] = json!(h.now.to_rfc3339());
            o["metadata"]["generation"] = json!(1);
            o
        });
        let obj = h.objects[&(ResourceKind::Operation, vworkspace_operator::key::ObjKey::new(NS, "op"))].clone();
        let lost = h.record(vworkspace_operator::record::RecordBody::Observed(vworkspace_operator::record::Observed {
            resource: ResourceKind::Operation,
            event: vworkspace_operator::record::WatchEvent::Apply,
            object: Some(obj),
        }));
        assert!(lost.iter().any(|c| c.action.name() == "CreateChild" || c.action.name() == "AddFinalizer"), "{lost:?}");
        assert!(h.children_of("uid-op").is_empty(), "the lost commands never ran");
        h.restart_losing_in_flight();
        assert_eq!(h.children_of("uid-op").len(), 1, "{engine:?}: the child is created after the restart");
        // A second restart after the child exists changes nothing.
        h.restart_losing_in_flight();
        assert_eq!(h.children_of("uid-op").len(), 1);
        let (k, key) = h.children_of("uid-op")[0].clone();
        for st in engine.statuses(false) {
            h.set_child_status(k, &key.namespace, &key.name, st);
        }
        assert_eq!(h.condition(NS, "op", "Succeeded"), Some(("True".into(), "Completed".into())), "{engine:?}");
        let (_, replayed) = replay(&h.journal);
        assert_eq!(replayed, h.commands, "the restart is a record: replay reproduces it");
    }
}
