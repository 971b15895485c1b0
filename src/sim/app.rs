//! SIMULATOR for the ApplicationInstance's rollout (Flux is not here): each generation becomes
//! Ready=True (or, with scenario `fail`, Ready=False from the second generation on) one tick
//! after it is observed. With `never-finish`, rollouts after the install are never observed;
//! with `never-ready`, not even the install (a test marks it Ready by hand).

use std::time::Duration;

use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::SCENARIO_ANNOTATION;
use crate::api::ApplicationInstance;

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, tick: Duration) {
    let api: Api<ApplicationInstance> = Api::all(client.clone());
    loop {
        if let Ok(list) = api.list(&ListParams::default()).await {
            for app in list.items {
                let generation = app.metadata.generation.unwrap_or(1);
                let observed = app.status.as_ref().map(|s| s.observed_generation).unwrap_or(0);
                if observed >= generation {
                    continue;
                }
                let annotations = app.metadata.annotations.clone().unwrap_or_default();
                let scenario = annotations.get(SCENARIO_ANNOTATION).map(String::as_str);
                if scenario == Some("never-finish") && generation > 1 || scenario == Some("never-ready") {
                    continue;
                }
                // `fail` fails a rollout: the first generation (the install) is Ready.
                let fail = scenario == Some("fail") && generation > 1;
                let (Some(ns), Some(name)) = (app.metadata.namespace.clone(), app.metadata.name.clone()) else {
                    continue;
                };
                let version = app.spec.chart.version.clone();
                let status = json!({ "status": {
                    "observedGeneration": generation,
                    "conditions": [{
                        "type": "Ready",
                        "status": if fail { "False" } else { "True" },
                        "observedGeneration": generation,
                        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        "reason": if fail { "UpgradeFailed" } else { "ReconciliationSucceeded" },
                        "message": if fail { format!("simulator: rollout of {version} failed") } else { format!("simulator: release reconciled at chart version {version}") },
                    }],
                }});
                let ns_api: Api<ApplicationInstance> = Api::namespaced(client.clone(), &ns);
                match ns_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await {
                    Ok(_) => {
                        tracing::info!(namespace = %ns, name = %name, generation, fail, "simulator: application rollout reported")
                    }
                    Err(e) => {
                        tracing::warn!(namespace = %ns, name = %name, error = %e, "simulator: application status write failed")
                    }
                }
            }
        }
        tokio::time::sleep(tick).await;
    }
}
