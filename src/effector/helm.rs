//! Helm release records (`sh.helm.release.v1.<release>.v<N>` Secrets): read on demand, never
//! watched, and only the Job hooks an Operation uses leave this module.

use std::io::Read;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::{Done, classify};
use crate::command::HelmHook;
use crate::record::{OutcomeData, OutcomeResult as R};

/// Reads the newest release record and returns the hooks of one event (manifests as JSON).
pub(super) async fn load_hooks(client: &kube::Client, namespace: &str, release: &str, event: &str) -> Done {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let list = api
        // Helm's own Secret type too, not only its labels: labels are easy to imitate.
        .list(&ListParams::default().labels(&format!("owner=helm,name={release}")).fields("type=helm.sh/release.v1"))
        .await
        .map_err(|e| classify(&e))?;
    let newest = list
        .items
        .into_iter()
        .filter_map(|s| {
            let v: u64 = s.metadata.labels.as_ref()?.get("version")?.parse().ok()?;
            Some((v, s))
        })
        .max_by_key(|(v, _)| *v)
        .ok_or((R::NotFound, format!("no Helm release record for release {release} in {namespace}")))?;
    let (_, secret) = newest;
    let name = secret.metadata.name.clone().unwrap_or_default();
    let hooks = hooks_of(&secret).map_err(|e| (R::Invalid, format!("{name}: {e}")))?;
    let hooks = hooks.into_iter().filter(|h| h.events.iter().any(|e| e == event)).collect();
    Ok(OutcomeData::HelmHooks { release_secret: name, hooks })
}

/// One hook's manifest, read again from the record it was first read from (for its env values).
pub(super) async fn hook_manifest(client: &kube::Client, namespace: &str, secret: &str, hook: &str) -> Done<Value> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let s = api.get(secret).await.map_err(|e| classify(&e))?;
    if s.type_.as_deref() != Some("helm.sh/release.v1") {
        return Err((R::Invalid, format!("{secret} is not a Helm release record (type helm.sh/release.v1)")));
    }
    let hooks = hooks_of(&s).map_err(|e| (R::Invalid, format!("{secret}: {e}")))?;
    hooks
        .into_iter()
        .find(|h| h.name == hook)
        .map(|h| h.manifest)
        .ok_or((R::NotFound, format!("release record {secret} no longer has hook {hook}")))
}

fn hooks_of(secret: &Secret) -> Result<Vec<HelmHook>, String> {
    let raw = secret.data.as_ref().and_then(|d| d.get("release")).ok_or("no release key")?;
    decode_release_hooks(&raw.0)
}

/// A release record as Helm writes it: Secret `sh.helm.release.v1.<release>.v1` of type
/// `helm.sh/release.v1`, whose `release` key holds base64 of gzip of the release JSON. The
/// inverse of [`decode_release_hooks`]; `dev` and the tests write records with it.
pub fn release_record(namespace: &str, release: &str, release_json: &Value) -> Value {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(release_json.to_string().as_bytes());
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let inner = b64(&gz.finish().unwrap_or_default());
    serde_json::json!({ "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": { "name": format!("sh.helm.release.v1.{release}.v1"), "namespace": namespace,
            "labels": { "owner": "helm", "name": release, "version": "1", "status": "deployed" } },
        "data": { "release": b64(inner.as_bytes()) } })
}

/// A Helm release record (`data.release`: base64 of gzip of the release JSON) → its Job hooks,
/// manifests converted from YAML to JSON.
pub fn decode_release_hooks(release_b64: &[u8]) -> Result<Vec<HelmHook>, String> {
    let gz = base64::engine::general_purpose::STANDARD.decode(release_b64).map_err(|e| format!("base64: {e}"))?;
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut json).map_err(|e| format!("gzip: {e}"))?;
    let release: Value = serde_json::from_str(&json).map_err(|e| format!("release JSON: {e}"))?;
    let mut hooks = Vec::new();
    for h in release.get("hooks").and_then(Value::as_array).into_iter().flatten() {
        let kind = h.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        // Only Job hooks run as children; other hook kinds are the chart's own business.
        if kind != "Job" {
            continue;
        }
        let events = h
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect();
        let manifest_yaml = h.get("manifest").and_then(Value::as_str).unwrap_or("");
        let manifest: Value = serde_yaml::from_str(manifest_yaml).map_err(|e| format!("hook manifest: {e}"))?;
        hooks.push(HelmHook {
            name: h.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
            kind,
            weight: h.get("weight").and_then(Value::as_i64).unwrap_or(0),
            events,
            manifest,
            release_secret: String::new(),
        });
    }
    Ok(hooks)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_written_record_reads_back() {
        let rel = json!({ "name": "shop", "hooks": [
            { "name": "m", "kind": "Job", "events": ["pre-upgrade"], "weight": 2, "manifest": "kind: Job\nspec: {}\n" },
            { "name": "cm", "kind": "ConfigMap", "events": ["pre-upgrade"], "manifest": "kind: ConfigMap\n" }] });
        let secret = release_record("ns", "shop", &rel);
        assert_eq!(secret["metadata"]["name"], "sh.helm.release.v1.shop.v1");
        let once =
            base64::engine::general_purpose::STANDARD.decode(secret["data"]["release"].as_str().unwrap()).unwrap();
        let hooks = decode_release_hooks(&once).unwrap();
        assert_eq!(hooks.len(), 1, "Job hooks only");
        assert_eq!((hooks[0].name.as_str(), hooks[0].weight), ("m", 2));
    }
}
