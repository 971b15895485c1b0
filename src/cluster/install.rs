//! Installs CRDs with server-side apply and waits until the API server serves them.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

use super::third_party::{self, Source};
use crate::api::FIELD_MANAGER;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: String, source: serde_yaml::Error },
    #[error("applying CRD {name}: {source}")]
    Apply { name: String, source: Box<kube::Error> },
    #[error("CRD {0} did not become Established within 60s")]
    NotEstablished(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every YAML document in a file that is a CustomResourceDefinition.
pub fn crds_in_file(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|source| Error::Parse { path: path.display().to_string(), source })?;
        if v.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
            out.push(v);
        }
    }
    Ok(out)
}

pub async fn apply_crd(client: &kube::Client, mut crd: Value) -> Result<String> {
    let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    // The upstream snapshot CRDs end with a status stanza for the CRD object itself.
    if let Some(m) = crd.as_object_mut() {
        m.remove("status");
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
        .await
        .map_err(|e| Error::Apply { name: name.clone(), source: Box::new(e) })?;
    Ok(name)
}

pub async fn wait_established(client: &kube::Client, names: &[String]) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        let mut ok = false;
        for _ in 0..600 {
            if let Ok(crd) = api.get(name).await {
                ok = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if ok {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ok {
            return Err(Error::NotEstablished(name.clone()));
        }
    }
    Ok(())
}

/// The project's CRDs, the third-party ones (upstream or minimal) and VolSync's.
pub async fn install_all(client: &kube::Client, repo_root: &Path) -> Result<Source> {
    let mut names = Vec::new();
    for (_, crd) in crate::crdgen::all() {
        let v = serde_json::to_value(&crd).unwrap_or_default();
        names.push(apply_crd(client, v).await?);
    }
    let source = match third_party::shared_dir(repo_root) {
        Some(dir) => {
            for file in third_party::upstream_files(&dir)
                .map_err(|source| Error::Read { path: dir.display().to_string(), source })?
            {
                for crd in crds_in_file(&file)? {
                    names.push(apply_crd(client, crd).await?);
                }
            }
            Source::Upstream(dir)
        }
        None => {
            for crd in third_party::minimal_crds() {
                names.push(apply_crd(client, crd).await?);
            }
            Source::Minimal
        }
    };
    for crd in third_party::volsync_crds() {
        names.push(apply_crd(client, crd).await?);
    }
    wait_established(client, &names).await?;
    Ok(source)
}
