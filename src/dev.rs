//! `vworkspace-operator dev`: the embedded default. A real local control plane, the CRDs, the
//! ENGINE SIMULATORS, and the samples from `deploy/samples/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery;
use serde_json::Value;

use vworkspace_operator::api::FIELD_MANAGER;
use vworkspace_operator::cluster::jaeger::Jaeger;
use vworkspace_operator::cluster::{controlplane, install, third_party::Source};
use vworkspace_operator::sim;

pub struct Options {
    pub once: bool,
    pub repo: PathBuf,
    pub state_dir: Option<PathBuf>,
}

/// Applies every document of a YAML file with server-side apply.
pub async fn apply_file(client: &kube::Client, path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut applied = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).with_context(|| format!("parsing {}", path.display()))?;
        if v.is_null() {
            continue;
        }
        let obj: DynamicObject =
            serde_json::from_value(v.clone()).with_context(|| format!("object in {}", path.display()))?;
        let types = obj.types.clone().context("object without apiVersion/kind")?;
        let (group, version) = types.api_version.split_once('/').unwrap_or(("", types.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        let (ar, caps) =
            discovery::pinned_kind(client, &gvk).await.with_context(|| format!("discovering {}", types.kind))?;
        let name = obj.metadata.name.clone().context("object without a name")?;
        let api: Api<DynamicObject> = match (&caps.scope, obj.metadata.namespace.as_deref()) {
            (discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            (discovery::Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &ar),
            (discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
        };
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&v))
            .await
            .with_context(|| format!("applying {} {name}", types.kind))?;
        applied.push(format!("{}/{name}", types.kind));
    }
    Ok(applied)
}

fn kubectl_get_operations(kubeconfig: &Path) -> Result<String> {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "operations", "-A", "-o", "wide"])
        .output()
        .context("running kubectl (is it installed?)")?;
    if !out.status.success() {
        bail!("kubectl get operations failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What outlives the async runtime: stopped only after every task of the runtime is gone.
pub struct Processes {
    _jaeger: Option<Jaeger>,
    _control_plane: controlplane::ControlPlane,
}

pub async fn run(opts: Options) -> Result<Processes> {
    eprintln!("dev: building the control plane if needed (first run: several minutes; cached in ~/.cache/vworkspace)");
    let binary = controlplane::build(&opts.repo)?;
    let dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vworkspace-dev-{}", std::process::id())));
    let cp = controlplane::ControlPlane::start(&binary, &dir, &["--cleanup"])?;
    let client = cp.client("admin").await?;
    let source = install::install_all(&client, &opts.repo).await?;
    match &source {
        Source::Upstream(d) => {
            eprintln!("dev: installed the project's CRDs and the upstream third-party CRDs from {}", d.display())
        }
        Source::Minimal => {
            eprintln!("dev: ../shared/third-party-crds is absent: installed the project's minimal stand-in CRDs")
        }
    }
    // Jaeger runs when it was built (the tests build it; `bash tests/tools/build.sh jaeger` does too).
    let jaeger_bin = jaeger_binary();
    let jaeger = match &jaeger_bin {
        Some(bin) => Some(Jaeger::start(bin, &opts.repo, &dir.join("jaeger.log")).context("starting Jaeger")?),
        None => None,
    };
    let sims = tokio::spawn(sim::run(client.clone(), sim::Options::default()));
    let journal_dir = dir.join("journal");
    let operator_opts = vworkspace_operator::run::Options { journal: Some(journal_dir.clone()), ..Default::default() };
    let operator = tokio::spawn(vworkspace_operator::run::run(client.clone(), operator_opts));
    let app_sim = tokio::spawn(sim::app::run(client.clone(), Duration::from_millis(400)));
    eprintln!("dev: ENGINE SIMULATORS running (Velero, Argo, CSI, VolSync, Job and the app rollout are simulated)");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(opts.repo.join("deploy/samples"))
        .context("reading deploy/samples")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    samples.sort();
    for (i, s) in samples.iter().enumerate() {
        if i == 1 {
            // After the namespaces, before the Operations: the hook sample reads it at once.
            write_helm_release(&client, "demo", "billing").await?;
        }
        let applied = apply_file(&client, s).await?;
        eprintln!("dev: applied {} ({} objects)", s.display(), applied.len());
    }
    println!("kubeconfig: {}", cp.kubeconfig.display());
    match &jaeger {
        Some(j) => println!("jaeger:     {} (OTLP gRPC {}, HTTP {})", j.ui_url(), j.otlp_grpc, j.otlp_http),
        None => println!("jaeger:     not built; `bash tests/tools/build.sh jaeger` builds it (about 10 minutes cold)"),
    }
    println!("try:        kubectl --kubeconfig {} get operations -A -o wide", cp.kubeconfig.display());
    println!("journal:    {}", journal_dir.display());
    if opts.once {
        let waited = wait_for_samples(&client, Duration::from_secs(180)).await;
        print!("{}", kubectl_get_operations(&cp.kubeconfig)?);
        waited?;
    } else {
        eprintln!("dev: running; Ctrl-C stops everything");
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    }
    operator.abort();
    sims.abort();
    app_sim.abort();
    Ok(Processes { _jaeger: jaeger, _control_plane: cp })
}

/// A Helm release record for `release`, in Helm's own format (Secret `sh.helm.release.v1.<r>.v1`,
/// base64 of gzip of the release JSON), with two pre-upgrade hook Jobs: what
/// `helm install --no-hooks` writes, so the helmHookJob sample has hooks to run.
async fn write_helm_release(client: &kube::Client, ns: &str, release: &str) -> Result<()> {
    let hook = |name: &str, weight: i64| {
        serde_json::json!({
            "name": format!("{release}-{name}"), "kind": "Job", "path": format!("{release}/templates/hooks.yaml"),
            "events": ["pre-upgrade"], "weight": weight, "delete_policies": ["before-hook-creation"],
            "manifest": format!("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {release}-{name}\n  annotations:\n    helm.sh/hook: pre-upgrade\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: {name}\n          image: busybox:1.36\n          command: [\"sh\", \"-c\", \"echo {name}\"]\n"),
        })
    };
    let rel = serde_json::json!({ "name": release, "namespace": ns, "version": 1, "info": { "status": "deployed" },
        "hooks": [hook("db-migrate", 5), hook("db-check", -1)] });
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(vworkspace_operator::effector::release_record(ns, release, &rel))?;
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    api.patch(
        &format!("sh.helm.release.v1.{release}.v1"),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await
    .context("writing the Helm release record")?;
    eprintln!("dev: wrote Helm release record sh.helm.release.v1.{release}.v1 (as `helm install --no-hooks` would)");
    Ok(())
}

/// Waits until every sample Operation reaches the phase its `dev.vworkspace.io/expect` names.
async fn wait_for_samples(client: &kube::Client, timeout: Duration) -> Result<()> {
    use vworkspace_operator::api::Operation;
    let api: Api<Operation> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ops = api.list(&Default::default()).await.context("listing Operations")?;
        let waiting: Vec<String> = ops
            .items
            .iter()
            .filter_map(|o| {
                let expect = o.metadata.annotations.as_ref()?.get("dev.vworkspace.io/expect")?.clone();
                let phase = o.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str().to_string()).unwrap_or_default();
                (phase != expect).then(|| {
                    format!(
                        "{} is {} (expected {expect})",
                        o.metadata.name.clone().unwrap_or_default(),
                        if phase.is_empty() { "-" } else { &phase }
                    )
                })
            })
            .collect();
        if waiting.is_empty() {
            eprintln!("dev: every sample reached its expected end");
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("samples did not reach their expected end within {timeout:?}: {}", waiting.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The cached Jaeger binary, if `tests/tools/build.sh` has built it.
fn jaeger_binary() -> Option<PathBuf> {
    let home = std::env::var_os("VWORKSPACE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vworkspace")))?;
    let bin = home.join("bin/jaeger");
    bin.is_file().then_some(bin)
}
