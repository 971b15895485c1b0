//! The effector's outcomes on the real API server, one attempt at a time: AlreadyExists is ours
//! only with our UID label and never overwrites; the Upgrade guard refuses a version changed by
//! someone else; every write carries the lease epoch; env values are filled from their live
//! source, and a vanished source is a clear outcome, not a Job with placeholder values.

mod support;

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use vworkspace_operator::api::{ApplicationInstance, LABEL_OPERATION_UID, Operation};
use vworkspace_operator::command::{Action, Command, EnvSource};
use vworkspace_operator::dispatch::Execute;
use vworkspace_operator::effector::Effector;
use vworkspace_operator::key::OpKey;
use vworkspace_operator::leader::ANNOTATION_EPOCH;
use vworkspace_operator::record::{ChildKind, OutcomeData, OutcomeResult as R};
use vworkspace_operator::sim::controller::api_resource;

fn job(ns: &str, name: &str, uid: &str, env_value: &str) -> Value {
    json!({ "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "namespace": ns, "labels": { LABEL_OPERATION_UID: uid } },
        "spec": { "template": { "spec": { "restartPolicy": "Never",
            "containers": [{ "name": "run", "image": "busybox:1.36", "env": [{ "name": "TOKEN", "value": env_value }] }] } } } })
}

fn command(ns: &str, op: &str, uid: &str, action: Action) -> Command {
    Command { id: format!("{uid}-test"), op: OpKey { namespace: ns.into(), name: op.into() }, uid: uid.into(), action }
}

fn create(ns: &str, name: &str, manifest: Value, env_from: Option<EnvSource>) -> Action {
    Action::CreateChild { kind: ChildKind::Job, namespace: ns.into(), name: name.into(), step: 0, env_from, manifest }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_on_the_real_api_server() {
    let client = support::client("admin").await;
    let ns = support::namespace("effector").await;
    let effector = Effector::new(client.clone());
    let jobs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_resource(ChildKind::Job));

    // Created once, then AlreadyExists: ours with our UID label, foreign otherwise, never overwritten.
    let c = command(&ns, "op", "uid-1", create(&ns, "child", job(&ns, "child", "uid-1", "v1"), None));
    assert_eq!(effector.execute(&c, 4).await.map_err(|e| e.0), Ok(OutcomeData::None));
    let created = jobs.get("child").await.unwrap();
    assert_eq!(created.metadata.annotations.unwrap()[ANNOTATION_EPOCH], "4", "the create carries the epoch");
    let again = effector.execute(&c, 5).await;
    assert_eq!(again.map_err(|e| e.0), Err(R::AlreadyExistsOurs));
    let other = command(&ns, "other", "uid-2", create(&ns, "child", job(&ns, "child", "uid-2", "v2"), None));
    let (r, message) = effector.execute(&other, 5).await.unwrap_err();
    assert_eq!(r, R::AlreadyExistsForeign);
    assert!(message.contains("already exists"), "{message}");
    let after = jobs.get("child").await.unwrap();
    assert_eq!(after.metadata.labels.unwrap()[LABEL_OPERATION_UID], "uid-1", "nothing was overwritten");
    assert_eq!(after.metadata.annotations.unwrap()[ANNOTATION_EPOCH], "4");

    // Env values: from the live Operation's parameters, matched by UID.
    let ops: Api<Operation> = Api::namespaced(client.clone(), &ns);
    let op: Operation = serde_json::from_value(json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
        "metadata": { "name": "cmd", "namespace": ns },
        "spec": { "type": "RunCommand", "target": { "name": "app" }, "parameters": { "env": { "TOKEN": "live-value" } } } }))
    .unwrap();
    let uid = ops.create(&PostParams::default(), &op).await.unwrap().metadata.uid.unwrap();
    let redacted = job(&ns, "filled", &uid, "<redacted>");
    let c = command(&ns, "cmd", &uid, create(&ns, "filled", redacted.clone(), Some(EnvSource::OperationParameters)));
    effector.execute(&c, 1).await.unwrap();
    let filled = jobs.get("filled").await.unwrap();
    assert_eq!(filled.data.pointer("/spec/template/spec/containers/0/env/0/value"), Some(&json!("live-value")));
    // A replaced Operation (same name, new UID) is not the source: nothing is created.
    let stale = command(
        &ns,
        "cmd",
        "uid-of-an-older-cmd",
        create(&ns, "stale", redacted.clone(), Some(EnvSource::OperationParameters)),
    );
    let (r, message) = effector.execute(&stale, 1).await.unwrap_err();
    assert_eq!(r, R::NotFound, "{message}");
    assert!(jobs.get_opt("stale").await.unwrap().is_none());
    // A release record that is gone is NotFound; a hook it lacks is NotFound too.
    let hook = EnvSource::HelmHook { release_secret: "sh.helm.release.v1.gone.v1".into(), hook: "h".into() };
    let c = command(&ns, "cmd", &uid, create(&ns, "hooked", redacted, Some(hook)));
    assert_eq!(effector.execute(&c, 1).await.map_err(|e| e.0), Err(R::NotFound));
    assert!(jobs.get_opt("hooked").await.unwrap().is_none(), "never created with placeholder values");

    // The Upgrade guard: the patch applies only over the expected version.
    let apps: Api<ApplicationInstance> = Api::namespaced(client.clone(), &ns);
    let app: ApplicationInstance =
        serde_json::from_value(json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
        "metadata": { "name": "app", "namespace": ns }, "spec": { "chart": { "name": "app", "version": "1.0.0" } } }))
        .unwrap();
    apps.create(&PostParams::default(), &app).await.unwrap();
    let patch = |to: &str, from: &str| {
        command(
            &ns,
            "up",
            "uid-up",
            Action::PatchTargetVersion { target: "app".into(), version: to.into(), expected_current: from.into() },
        )
    };
    let (r, message) = effector.execute(&patch("2.0.0", "0.9.0"), 2).await.unwrap_err();
    assert_eq!(r, R::Conflict);
    assert!(message.contains("\"1.0.0\"") && message.contains("changed by someone else"), "{message}");
    assert_eq!(apps.get("app").await.unwrap().spec.chart.version, "1.0.0", "untouched");
    let Ok(OutcomeData::Generation(g)) = effector.execute(&patch("2.0.0", "1.0.0"), 2).await else {
        panic!("patch refused")
    };
    let patched = apps.get("app").await.unwrap();
    assert_eq!((patched.spec.chart.version.as_str(), patched.metadata.generation), ("2.0.0", Some(g)));
    assert_eq!(patched.metadata.annotations.unwrap()[ANNOTATION_EPOCH], "2", "the target write carries the epoch");
    // Run again (its first outcome lost): already at the version, so the same answer, no write.
    let Ok(OutcomeData::Generation(again)) = effector.execute(&patch("2.0.0", "1.0.0"), 3).await else {
        panic!("a repeated patch was refused")
    };
    assert_eq!(again, g);
    assert_eq!(apps.get("app").await.unwrap().metadata.resource_version, patched.metadata.resource_version);

    // Child patches and finalizer writes carry the epoch too.
    let c = command(
        &ns,
        "op",
        "uid-1",
        Action::PatchChild {
            kind: ChildKind::Job,
            namespace: ns.clone(),
            name: "child".into(),
            patch: json!({ "spec": { "suspend": true } }),
        },
    );
    effector.execute(&c, 9).await.unwrap();
    assert_eq!(jobs.get("child").await.unwrap().metadata.annotations.unwrap()[ANNOTATION_EPOCH], "9");
    effector.execute(&command(&ns, "cmd", &uid, Action::AddFinalizer), 9).await.unwrap();
    let op = ops.get("cmd").await.unwrap();
    assert!(op.metadata.finalizers.unwrap_or_default().contains(&"ops.vworkspace.io/cleanup".to_string()));
    assert_eq!(op.metadata.annotations.unwrap()[ANNOTATION_EPOCH], "9");
    effector.execute(&command(&ns, "cmd", &uid, Action::RemoveFinalizer), 9).await.unwrap();
    assert!(ops.get("cmd").await.unwrap().metadata.finalizers.unwrap_or_default().is_empty());
}
