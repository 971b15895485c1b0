//! Third-party CRDs: the upstream files from `../shared/third-party-crds/` when present, else the
//! project's own minimal stand-ins (schema-free, with a status subresource wherever upstream has
//! one). VolSync is always the project's own: its upstream files are not Apache-2.0.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Which set of third-party CRDs was installed (logged by `dev` and the tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Upstream(PathBuf),
    Minimal,
}

/// (group, kind, plural, namespaced, status subresource)
const MINIMAL: &[(&str, &str, &str, bool, bool)] = &[
    ("velero.io", "Backup", "backups", true, false),
    ("velero.io", "Restore", "restores", true, false),
    ("velero.io", "BackupStorageLocation", "backupstoragelocations", true, false),
    ("velero.io", "Schedule", "schedules", true, false),
    ("argoproj.io", "Workflow", "workflows", true, false),
    ("argoproj.io", "WorkflowTemplate", "workflowtemplates", true, false),
    ("snapshot.storage.k8s.io", "VolumeSnapshot", "volumesnapshots", true, true),
    ("snapshot.storage.k8s.io", "VolumeSnapshotContent", "volumesnapshotcontents", false, true),
    ("snapshot.storage.k8s.io", "VolumeSnapshotClass", "volumesnapshotclasses", false, false),
    ("helm.toolkit.fluxcd.io", "HelmRelease", "helmreleases", true, true),
];

fn version_of(group: &str) -> &'static str {
    match group {
        "velero.io" | "snapshot.storage.k8s.io" => "v1",
        "helm.toolkit.fluxcd.io" => "v2",
        _ => "v1alpha1",
    }
}

/// A schema-free CRD: every field preserved, so objects round-trip as written.
pub fn minimal_crd(group: &str, kind: &str, plural: &str, namespaced: bool, status: bool) -> Value {
    let mut version = json!({
        "name": version_of(group),
        "served": true,
        "storage": true,
        "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } },
    });
    if status {
        version["subresources"] = json!({ "status": {} });
    }
    let mut crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.{group}"), "labels": { "ops.vworkspace.io/crd-set": "minimal" } },
        "spec": {
            "group": group,
            "names": { "kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List") },
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "versions": [version],
        },
    });
    if group.ends_with(".k8s.io") {
        // A *.k8s.io group needs this annotation to be accepted.
        crd["metadata"]["annotations"] =
            json!({ "api-approved.kubernetes.io": "https://github.com/kubernetes-csi/external-snapshotter/pull/419" });
    }
    crd
}

/// VolSync's ReplicationSource and ReplicationDestination, written from the public field names
/// of its API types (see SOURCES.md in shared/): status subresource, fields preserved.
pub fn volsync_crds() -> Vec<Value> {
    ["ReplicationSource", "ReplicationDestination"]
        .iter()
        .map(|kind| {
            let plural = format!("{}s", kind.to_lowercase());
            let mut crd = minimal_crd("volsync.backube", kind, &plural, true, true);
            crd["metadata"]["labels"] = json!({ "ops.vworkspace.io/crd-set": "project" });
            crd
        })
        .collect()
}

pub fn minimal_crds() -> Vec<Value> {
    MINIMAL.iter().map(|(g, k, p, ns, st)| minimal_crd(g, k, p, *ns, *st)).collect()
}

/// `../shared/third-party-crds` beside the repository, or `$VWORKSPACE_SHARED/third-party-crds`.
pub fn shared_dir(repo_root: &Path) -> Option<PathBuf> {
    let base = std::env::var_os("VWORKSPACE_SHARED").map(PathBuf::from).unwrap_or_else(|| repo_root.join("../shared"));
    let dir = base.join("third-party-crds");
    dir.join("velero.io_backups.yaml").is_file().then_some(dir)
}

/// The upstream CRD files (top level of the folder, not `examples/`), sorted.
pub fn upstream_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}
