//! Which watch events belong to this shard, decided before they are journaled: a shard's journal
//! holds its own Operations, their targets and children, and what every shard shares (templates,
//! Secret names). Children name their Operation by labels only, so their owner's target comes
//! from the Operation watch (or one GET when a child is seen first); targets never change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::api::{Api, DynamicObject};
use serde_json::Value;

use crate::api::{LABEL_OPERATION, LABEL_OPERATION_NAMESPACE, LABEL_OPERATION_UID};
use crate::record::ResourceKind;
use crate::shard::Shard;

#[derive(Clone)]
pub struct Ownership {
    shard: Shard,
    client: kube::Client,
    /// Operation UID → whether this shard owns it.
    owned: Arc<Mutex<BTreeMap<String, bool>>>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    crate::engine::str_at(v, pointer).unwrap_or_default()
}

/// Whether `shard` owns an Operation, from the Operation object (its namespace and target).
pub fn owns_operation(shard: &Shard, op: &Value) -> bool {
    shard.owns(str_at(op, "/metadata/namespace"), str_at(op, "/spec/target/name"))
}

impl Ownership {
    pub fn new(client: kube::Client, shard: Shard) -> Self {
        Self { shard, client, owned: Arc::default() }
    }

    /// Whether objects are filtered at all: one shard keeps everything.
    pub fn filters(&self) -> bool {
        self.shard.count > 1
    }

    /// Whether an object of `kind` goes into this shard's journal; `deleted` for a Delete event
    /// (a deleted Operation's UID is forgotten: its children are garbage by then).
    pub async fn keeps(&self, kind: ResourceKind, obj: &Value, deleted: bool) -> bool {
        if self.shard.count <= 1 {
            return true;
        }
        match kind {
            ResourceKind::Operation => {
                let mine = owns_operation(&self.shard, obj);
                let uid = str_at(obj, "/metadata/uid");
                let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
                if deleted {
                    owned.remove(uid);
                } else if !uid.is_empty() {
                    owned.insert(uid.to_string(), mine);
                }
                mine
            }
            ResourceKind::ApplicationInstance => {
                self.shard.owns(str_at(obj, "/metadata/namespace"), str_at(obj, "/metadata/name"))
            }
            ResourceKind::OperationTemplate | ResourceKind::Secret => true,
            ResourceKind::Child(_) => self.child(obj).await,
        }
    }

    async fn child(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let uid = labels.get(LABEL_OPERATION_UID).and_then(Value::as_str).unwrap_or_default();
        if let Some(mine) = self.owned.lock().unwrap_or_else(|p| p.into_inner()).get(uid) {
            return *mine;
        }
        let name = labels.get(LABEL_OPERATION).and_then(Value::as_str).unwrap_or_default();
        let namespace = labels.get(LABEL_OPERATION_NAMESPACE).and_then(Value::as_str).unwrap_or_default();
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &kube::api::ApiResource::erase::<crate::api::Operation>(&()),
        );
        match api.get_opt(name).await {
            Ok(Some(op)) if op.metadata.uid.as_deref() == Some(uid) => {
                let mine = owns_operation(&self.shard, &serde_json::to_value(&op).unwrap_or(Value::Null));
                self.owned.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string(), mine);
                mine
            }
            // An orphan (its Operation is gone): garbage collection removes it; no shard needs it.
            Ok(_) => false,
            // Unknown: journal it. A child whose Operation this shard does not hold routes nowhere.
            Err(e) => {
                tracing::warn!(error = %e, operation = %format!("{namespace}/{name}"), "cannot tell the shard of a child; journaling it");
                true
            }
        }
    }
}
