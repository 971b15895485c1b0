//! The real kubectl against the real kube-apiserver: server-side apply of an Operation, every
//! printer column, the CEL immutability rule, and 403 for an ordinary user without RBAC.

mod support;

use support::{kubectl, namespace, ok};

fn operation_yaml(ns: &str) -> String {
    format!(
        r#"apiVersion: ops.vworkspace.io/v1alpha1
kind: Operation
metadata:
  name: nightly
  namespace: {ns}
spec:
  type: Backup
  engine: velero
  target: {{ name: shop }}
  parameters: {{ ttl: 72h0m0s }}
"#
    )
}

#[tokio::test]
async fn kubectl_applies_lists_and_enforces_the_contract() {
    let ns = namespace("kubectl").await;
    let applied = ok(&kubectl(
        "admin",
        &["apply", "--server-side", "--field-manager=test", "-f", "-"],
        Some(&operation_yaml(&ns)),
    ));
    assert!(applied.contains("operation.ops.vworkspace.io/nightly serverside-applied"), "{applied}");

    // Status as the operator would write it, through the status subresource.
    let status = r#"{"status":{"phase":"Running","progress":"3/10","duration":"42s","message":"velero backup in progress","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","engine":{"name":"velero","phase":"InProgress"}}}"#;
    ok(&kubectl(
        "admin",
        &["-n", &ns, "patch", "operation", "nightly", "--subresource=status", "--type=merge", "-p", status],
        None,
    ));

    let table = ok(&kubectl("admin", &["-n", &ns, "get", "operations"], None));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "TARGET", "ENGINE", "PHASE", "PROGRESS", "AGE", "DURATION"], "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..6], ["nightly", "Backup", "shop", "velero", "Running", "3/10"], "{table}");
    assert_eq!(row[7], "42s");
    let wide = ok(&kubectl("admin", &["-n", &ns, "get", "ops", "-o", "wide"], None));
    let wide_header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(wide_header[8..], ["MESSAGE", "REQUESTED-BY", "TRACE"], "{wide}");
    assert!(wide.contains("velero backup in progress"), "{wide}");
    // The trace ID to open in Jaeger, next to the Operation.
    assert!(wide.lines().nth(1).unwrap().ends_with("4bf92f3577b34da6a3ce929d0e0e4736"), "{wide}");
    // Short names and the category work.
    ok(&kubectl("admin", &["-n", &ns, "get", "op"], None));
    assert!(ok(&kubectl("admin", &["-n", &ns, "get", "vworkspace"], None)).contains("nightly"));

    // CEL: the spec is immutable except cancel.
    let changed = kubectl(
        "admin",
        &["-n", &ns, "patch", "operation", "nightly", "--type=merge", "-p", r#"{"spec":{"target":{"name":"other"}}}"#],
        None,
    );
    assert!(!changed.status.success());
    let err = String::from_utf8_lossy(&changed.stderr);
    assert!(err.contains("spec is immutable after creation; only spec.cancel may change"), "{err}");
    let params = kubectl(
        "admin",
        &["-n", &ns, "patch", "operation", "nightly", "--type=merge", "-p", r#"{"spec":{"parameters":{"ttl":"1h"}}}"#],
        None,
    );
    assert!(!params.status.success(), "parameters are immutable too");
    ok(&kubectl(
        "admin",
        &["-n", &ns, "patch", "operation", "nightly", "--type=merge", "-p", r#"{"spec":{"cancel":true}}"#],
        None,
    ));

    // Schema: an unknown type is refused by the enum.
    let bad = operation_yaml(&ns).replace("name: nightly", "name: bad").replace("type: Backup", "type: Explode");
    let refused = kubectl("admin", &["apply", "--server-side", "-f", "-"], Some(&bad));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Unsupported value: \"Explode\""),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // An ordinary user has no rights until RBAC grants them.
    for user in ["alice", "bob"] {
        let denied = kubectl(user, &["-n", &ns, "get", "operations"], None);
        assert!(!denied.status.success());
        let err = String::from_utf8_lossy(&denied.stderr);
        assert!(err.contains("Forbidden") && err.contains(&format!("User \"{user}\"")), "{err}");
    }
}
