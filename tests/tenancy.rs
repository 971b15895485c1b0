//! Tenancy on the real API server, with the ordinary users of `tests/controlplane/`: alice may
//! edit Operations in namespace a only; bob may create Operations in a but holds no verb on any
//! ApplicationInstance. Every attempt to act beyond that is refused, by RBAC, by the admission
//! policy in `deploy/helm/vworkspace-operator/files/` or by the operator, with its documented reason, and no child
//! appears anywhere. Then the policy is removed, and the operator alone still refuses what it can
//! judge without knowing the user.

mod support;

use std::time::Duration;

use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use vworkspace_operator::api::{ApplicationInstance, Operation, OperationTemplate};
use vworkspace_operator::record::ChildKind;
use vworkspace_operator::{run, sim};

fn kubectl_apply(context: &str, yaml: &str) -> std::process::Output {
    support::kubectl(context, &["create", "-f", "-"], Some(yaml))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn op(ns: &str, name: &str, ty: &str, target: &str, params: Value) -> String {
    let o = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "Operation",
        "metadata": { "name": name, "namespace": ns, "annotations": { "sim.vworkspace.io/scenario": "succeed" } },
        "spec": { "type": ty, "target": { "name": target }, "parameters": params } });
    o.to_string()
}

fn bind(ns: &str, user: &str, role_kind: &str, role: &str) -> String {
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": format!("{user}-{role}"), "namespace": ns },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }] })
    .to_string()
}

/// The Operation's Succeeded/Accepted reasons and message once it has a verdict.
async fn verdict(ops: &Api<Operation>, name: &str) -> (String, String, String) {
    for _ in 0..200 {
        if let Some(st) = ops.get(name).await.ok().and_then(|o| o.status) {
            let accepted =
                st.conditions.iter().find(|c| c.type_ == "Accepted").map(|c| (c.status.as_str(), c.reason.clone()));
            let phase = st.phase.map(|p| p.as_str().to_string()).unwrap_or_default();
            if let Some((_, r)) = accepted.filter(|(s, _)| *s == "False" || (*s == "True" && phase == "Succeeded")) {
                return (phase, r, st.message.unwrap_or_default());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} reached no verdict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_users_cannot_act_beyond_their_rights() {
    let client = support::client("admin").await;
    let (a, b, c) =
        (support::namespace("ten-a").await, support::namespace("ten-b").await, support::namespace("ten-c").await);
    let velero_ns = support::namespace("velero").await;
    let deploy = support::repo().join("deploy");
    for f in ["rbac/user-roles.yaml", "helm/vworkspace-operator/files/operation-policy.yaml"] {
        support::ok(&support::kubectl("admin", &["apply", "-f", deploy.join(f).to_str().unwrap()], None));
    }
    // alice: edit in a and c, view in b. bob: may create Operations in a, and nothing else.
    let creator = json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": { "name": "creator", "namespace": a },
        "rules": [{ "apiGroups": ["ops.vworkspace.io"], "resources": ["operations"], "verbs": ["create", "get"] }] });
    for yaml in [
        bind(&a, "alice", "ClusterRole", "vworkspace-operations-edit"),
        bind(&c, "alice", "ClusterRole", "vworkspace-operations-edit"),
        bind(&b, "alice", "ClusterRole", "vworkspace-operations-view"),
        creator.to_string(),
        bind(&a, "bob", "Role", "creator"),
    ] {
        support::ok(&kubectl_apply("admin", &yaml));
    }
    let t = |name: &str, spec: Value| json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "OperationTemplate", "metadata": { "name": name }, "spec": spec });
    let nss = json!([a, b, c]);
    for tpl in [
        t(
            &format!("job-{a}"),
            json!({ "types": ["RunCommand"], "engine": "job", "namespaces": nss, "job": { "image": "busybox:1.36" },
            "rbac": { "serviceAccountName": "runner" }, "preconditions": { "exclusive": false } }),
        ),
        t(
            &format!("argo-{a}"),
            json!({ "types": ["Runbook"], "engine": "argoWorkflow", "namespaces": nss, "argo": { "workflowTemplateRef": "t" },
            "preconditions": { "exclusive": false } }),
        ),
        t(
            &format!("velero-{a}"),
            json!({ "types": ["Backup", "Restore"], "engine": "velero", "namespaces": nss,
            "velero": { "namespace": velero_ns }, "preconditions": { "exclusive": false } }),
        ),
    ] {
        support::apply(&client, &support::ar::<OperationTemplate>(), None, tpl).await;
    }
    for ns in [&a, &b, &c] {
        let app = json!({ "apiVersion": "ops.vworkspace.io/v1alpha1", "kind": "ApplicationInstance",
            "metadata": { "name": "shop", "namespace": ns, "annotations": { "ops.vworkspace.io/backup": "velero",
                "ops.vworkspace.io/restore": "velero", "ops.vworkspace.io/run-command": "job", "ops.vworkspace.io/runbook": "argoWorkflow" } },
            "spec": { "chart": { "name": "shop", "version": "1.0.0" } },
            "status": { "conditions": [{ "type": "Ready", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z" }] } });
        support::apply(&client, &support::ar::<ApplicationInstance>(), Some(ns), app.clone()).await;
        support::ok(&support::kubectl(
            "admin",
            &[
                "patch",
                "applicationinstance",
                "shop",
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                &json!({ "status": app["status"] }).to_string(),
            ],
            None,
        ));
    }
    let sims = tokio::spawn(sim::run(client.clone(), sim::Options { tick: Duration::from_millis(100), instant: true }));
    let journal = tempfile::tempdir().unwrap();
    let opts = support::operator_options(journal.path());
    let operator = tokio::spawn(run::run(client.clone(), opts));

    // The policy takes a moment to load: wait until it refuses bob.
    let mut refused = String::new();
    for i in 0..100 {
        let out = kubectl_apply("bob", &op(&a, &format!("bob-{i}"), "Backup", "shop", json!({})));
        if !out.status.success() {
            refused = stderr(&out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        refused.contains("may not backup ApplicationInstance shop") && refused.contains("ValidatingAdmissionPolicy"),
        "{refused}"
    );

    // Refused before anything exists: RBAC, schema, or the admission policy.
    let denied = [
        (
            "create in a namespace where alice only views",
            op(&b, "x1", "RunCommand", "shop", json!({})),
            "cannot create resource \"operations\"",
        ),
        (
            "target an app in another namespace",
            op(&a, "x2", "RunCommand", "shop", json!({}))
                .replace("{\"name\":\"shop\"}", &format!("{{\"name\":\"shop\",\"namespace\":\"{b}\"}}")),
            "unknown field \"spec.target.namespace\"",
        ),
        (
            "restore into a namespace where alice may not restore",
            op(&a, "x3", "Restore", "shop", json!({ "backupName": "b1", "targetNamespace": b })),
            "may not restore into namespace",
        ),
        (
            "read a Secret alice cannot read, through a Job's env",
            op(
                &a,
                "x4",
                "RunCommand",
                "shop",
                json!({ "env": { "TOKEN": { "secretKeyRef": { "name": "db", "key": "password" } } } }),
            ),
            "may not read a Secret",
        ),
    ];
    for (what, yaml, want) in &denied {
        let out = kubectl_apply("alice", yaml);
        assert!(!out.status.success(), "{what}: admitted");
        assert!(stderr(&out).contains(want), "{what}: {}", stderr(&out));
    }
    let ops_a: Api<Operation> = Api::namespaced(client.clone(), &a);
    for name in ["x2", "x3", "x4"] {
        assert!(ops_a.get_opt(name).await.unwrap().is_none(), "{name} exists");
    }

    // Admitted, then refused by the operator: what the parameters may not do.
    let operator_refuses = [
        (
            "x5",
            "name a ServiceAccount",
            op(&a, "x5", "RunCommand", "shop", json!({ "serviceAccountName": "admin" })),
            "InvalidParameters",
            "not accepted by this engine",
        ),
        (
            "x6",
            "smuggle a pod spec",
            op(
                &a,
                "x6",
                "RunCommand",
                "shop",
                json!({ "podSpec": { "hostNetwork": true, "volumes": [{ "hostPath": { "path": "/" } }], "containers": [{ "securityContext": { "privileged": true } }] } }),
            ),
            "InvalidParameters",
            "not accepted by this engine",
        ),
        (
            "x7",
            "smuggle a pod spec into a Workflow",
            op(&a, "x7", "Runbook", "shop", json!({ "spec": { "hostNetwork": true } })),
            "InvalidParameters",
            "must be a string, number or boolean",
        ),
        (
            "x8",
            "restore into another namespace without a template that allows it",
            op(&a, "x8", "Restore", "shop", json!({ "backupName": "b1", "targetNamespace": c })),
            "Forbidden",
            "not allowed by the template",
        ),
    ];
    for (name, what, yaml, _, _) in &operator_refuses {
        support::ok(&kubectl_apply("alice", yaml));
        let _ = (name, what);
    }
    for (name, what, _, reason, want) in &operator_refuses {
        let (phase, r, message) = verdict(&ops_a, name).await;
        assert_eq!(r.as_str(), *reason, "{what}: {phase} {message}");
        assert!(message.contains(want), "{what}: {message}");
        let uid = ops_a.get(name).await.unwrap().metadata.uid.unwrap();
        assert_eq!(support::count_children_anywhere(&client, &uid).await, 0, "{what}: a child appeared");
    }

    // What alice may do works, and runs as the template's ServiceAccount without a token.
    support::ok(&kubectl_apply("alice", &op(&a, "fine", "RunCommand", "shop", json!({}))));
    let (phase, ..) = verdict(&ops_a, "fine").await;
    assert_eq!(phase, "Succeeded");
    let jobs: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &a, &vworkspace_operator::sim::controller::api_resource(ChildKind::Job));
    let job =
        &jobs.list(&kube::api::ListParams::default().labels("ops.vworkspace.io/operation=fine")).await.unwrap().items
            [0];
    let pod = job.data.pointer("/spec/template/spec").unwrap();
    assert_eq!(
        (pod["serviceAccountName"].as_str(), pod["automountServiceAccountToken"].as_bool()),
        (Some("runner"), Some(false))
    );

    // Without the policy the operator still refuses what it can judge alone.
    let bindings: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding"),
            "validatingadmissionpolicybindings",
        ),
    );
    bindings.delete("vworkspace-operation-authority", &DeleteParams::default()).await.unwrap();
    let mut admitted = false;
    for i in 0..100 {
        let out = kubectl_apply(
            "alice",
            &op(&a, &format!("y{i}"), "Restore", "shop", json!({ "backupName": "b1", "targetNamespace": b })),
        );
        if out.status.success() {
            let (_, r, message) = verdict(&ops_a, &format!("y{i}")).await;
            assert_eq!(r, "Forbidden", "{message}");
            assert!(message.contains("not allowed by the template"), "{message}");
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(admitted, "the policy binding was removed but requests are still denied");
    support::ok(&kubectl_apply(
        "alice",
        &op(
            &a,
            "z1",
            "RunCommand",
            "shop",
            json!({ "env": { "TOKEN": { "secretKeyRef": { "name": "db", "key": "password" } } } }),
        ),
    ));
    let (_, r, message) = verdict(&ops_a, "z1").await;
    assert_eq!(r, "InvalidParameters");
    assert!(message.contains("does not mark it secret"), "{message}");
    let uid = ops_a.get("z1").await.unwrap().metadata.uid.unwrap();
    assert_eq!(support::count_children_anywhere(&client, &uid).await, 0);
    operator.abort();
    sims.abort();
}
