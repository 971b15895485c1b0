//! What the fold loop receives: records, and watched objects still as their JSON text. Queued as
//! `serde_json::Value` trees, 3–5 times their text, the child watches' backlog held 64 MB at the
//! end of the 10,000-Operation scale stage (heaptrack); each object is now parsed when the loop
//! takes it.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::record::{Observed, RecordBody, ResourceKind, WatchEvent};

/// An item of the fold loop's channel.
#[derive(Debug)]
pub enum Inbound {
    Record(RecordBody),
    /// A watch event with its object as compact JSON text.
    Watched {
        resource: ResourceKind,
        event: WatchEvent,
        text: Box<str>,
    },
}

impl From<RecordBody> for Inbound {
    fn from(body: RecordBody) -> Self {
        Inbound::Record(body)
    }
}

impl Inbound {
    /// The record, a watched object parsed. The text was written by serde_json from what it
    /// read, so it parses; an error here is a bug, reported by the caller.
    pub fn into_body(self) -> Result<RecordBody, serde_json::Error> {
        match self {
            Inbound::Record(body) => Ok(body),
            Inbound::Watched { resource, event, text } => {
                let object: Value = serde_json::from_str(&text)?;
                Ok(RecordBody::Observed(Observed { resource, event, object: Some(object) }))
            }
        }
    }
}

/// A watched object as compact JSON text, with the metadata the watcher reads (its resource
/// version) and nothing else parsed.
#[derive(Clone, Debug)]
pub struct RawObject {
    pub metadata: ObjectMeta,
    pub text: Box<str>,
}

/// The only fields parsed out of the text.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    metadata: Meta,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut buf = Vec::with_capacity(2048);
        serde_transcode::transcode(d, &mut serde_json::Serializer::new(&mut buf)).map_err(D::Error::custom)?;
        let text = String::from_utf8(buf).map_err(D::Error::custom)?;
        let Head { metadata: m } = serde_json::from_str(&text).map_err(D::Error::custom)?;
        let metadata = ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            ..ObjectMeta::default()
        };
        Ok(RawObject { metadata, text: text.into_boxed_str() })
    }
}

/// Watched like a `DynamicObject`: the API resource names the kind.
impl kube::Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{ObjectList, WatchEvent as KubeEvent};
    use serde_json::json;

    fn job() -> Value {
        json!({ "apiVersion": "batch/v1", "kind": "Job",
            "metadata": { "name": "j", "namespace": "ns", "uid": "u-1", "resourceVersion": "42",
                "labels": { "a": "b" }, "managedFields": [{ "manager": "m" }] },
            "spec": { "backoffLimit": 0 }, "status": { "succeeded": 1, "ratio": 0.5 } })
    }

    #[test]
    fn a_watch_event_keeps_the_object_as_text_with_its_resource_version() {
        let line = serde_json::to_string(&json!({ "type": "MODIFIED", "object": job() })).unwrap();
        let KubeEvent::Modified(o) = serde_json::from_str::<KubeEvent<RawObject>>(&line).unwrap() else {
            panic!("not a Modified event")
        };
        assert_eq!(o.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(o.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(serde_json::from_str::<Value>(&o.text).unwrap(), job());
    }

    #[test]
    fn a_list_page_buffered_by_serde_still_reads() {
        // ObjectList flattens its type fields, so serde buffers the page before the items.
        let page = json!({ "apiVersion": "batch/v1", "kind": "JobList", "metadata": { "resourceVersion": "7" },
            "items": [job(), job()] });
        let list: ObjectList<RawObject> = serde_json::from_value(page.clone()).unwrap();
        let list2: ObjectList<RawObject> = serde_json::from_str(&page.to_string()).unwrap();
        for l in [list, list2] {
            assert_eq!(l.items.len(), 2);
            assert_eq!(serde_json::from_str::<Value>(&l.items[1].text).unwrap(), job());
        }
    }

    #[test]
    fn the_loop_parses_the_text_into_the_record_it_journals() {
        let text = job().to_string().into_boxed_str();
        let body =
            Inbound::Watched { resource: ResourceKind::Operation, event: WatchEvent::Apply, text }.into_body().unwrap();
        let RecordBody::Observed(o) = body else { panic!("not observed") };
        assert_eq!(o.object, Some(job()));
    }

    #[test]
    fn a_non_object_is_refused_by_the_watcher_not_queued() {
        assert!(serde_json::from_str::<RawObject>("[1, 2]").is_err());
        assert!(serde_json::from_str::<RawObject>("{\"metadata\": 3}").is_err());
    }
}
