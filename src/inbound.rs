//! What the fold loop receives: records, and watched objects still as their JSON text. Queued as
//! `serde_json::Value` trees, 3–5 times their text, the child watches' backlog held 64 MB at the
//! end of the 10,000-Operation scale stage (heaptrack); each object is now parsed when the loop
//! takes it. The text is copied from the response as it is read (serde-transcode): kube reads
//! list pages through serde's buffered `Content`, where a `RawValue` cannot be read.

use std::borrow::Cow;
use std::cell::RefCell;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
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

/// The metadata the watcher needs, taken from the object as it is copied.
#[derive(Default)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

impl Meta {
    const FIELDS: [&str; 4] = ["name", "namespace", "uid", "resourceVersion"];

    fn set(&mut self, key: &str, v: Option<String>) {
        match key {
            "name" => self.name = v,
            "namespace" => self.namespace = v,
            "uid" => self.uid = v,
            _ => self.resource_version = v,
        }
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let meta = RefCell::new(Meta::default());
        let mut buf = Vec::with_capacity(2048);
        let object = Copied { de: RefCell::new(Some(d)), level: Level::Object, meta: &meta };
        serde_json::to_writer(&mut buf, &object).map_err(D::Error::custom)?;
        let text = String::from_utf8(buf).map_err(D::Error::custom)?;
        let m = meta.into_inner();
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

/// Which map is being copied. `metadata.managedFields` is left out of every kind but an
/// Operation, known by a `kind` that comes first (as the API server writes it): redaction removes
/// them before the journal anyway, and they were a third of a child's text.
#[derive(Clone, Copy)]
enum Level {
    Object,
    Metadata { strip: bool },
}

/// A map copied as it is read into whatever serialises it, its metadata noted on the way.
struct Copied<'m, D> {
    de: RefCell<Option<D>>,
    level: Level,
    meta: &'m RefCell<Meta>,
}

impl<'de, D: Deserializer<'de>> Serialize for Copied<'_, D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.de.borrow_mut().take().ok_or_else(|| S::Error::custom("a map copied twice"))?;
        d.deserialize_map(CopyMap { ser: s, level: self.level, meta: self.meta }).map_err(S::Error::custom)
    }
}

struct CopyMap<'m, S> {
    ser: S,
    level: Level,
    meta: &'m RefCell<Meta>,
}

impl<'de, S: Serializer> Visitor<'de> for CopyMap<'_, S> {
    type Value = S::Ok;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self.level {
            Level::Object => "a Kubernetes object",
            Level::Metadata { .. } => "object metadata",
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<S::Ok, A::Error> {
        let mut m = self.ser.serialize_map(None).map_err(A::Error::custom)?;
        let mut kind: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if matches!(self.level, Level::Metadata { strip: true }) && key == "managedFields" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            m.serialize_key(&key).map_err(A::Error::custom)?;
            let noted = match self.level {
                Level::Object => key == "kind",
                Level::Metadata { .. } => Meta::FIELDS.contains(&key.as_str()),
            };
            if noted {
                let v: Value = map.next_value()?;
                let text = v.as_str().map(str::to_owned);
                match self.level {
                    Level::Object => kind = text,
                    Level::Metadata { .. } => self.meta.borrow_mut().set(&key, text),
                }
                m.serialize_value(&v).map_err(A::Error::custom)?;
                continue;
            }
            let nested = (matches!(self.level, Level::Object) && key == "metadata")
                .then(|| Level::Metadata { strip: kind.as_deref().is_some_and(|k| k != "Operation") });
            map.next_value_seed(Copy { m: &mut m, nested, meta: self.meta })?;
        }
        m.end().map_err(A::Error::custom)
    }
}

/// One value copied into a map being written: a nested map at `nested`, anything else whole.
struct Copy<'a, 'm, M> {
    m: &'a mut M,
    nested: Option<Level>,
    meta: &'m RefCell<Meta>,
}

impl<'de, M: SerializeMap> DeserializeSeed<'de> for Copy<'_, '_, M> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let copied = match self.nested {
            Some(level) => self.m.serialize_value(&Copied { de: RefCell::new(Some(d)), level, meta: self.meta }),
            None => self.m.serialize_value(&serde_transcode::Transcoder::new(d)),
        };
        copied.map_err(D::Error::custom)
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
        assert_eq!((o.metadata.name.as_deref(), o.metadata.namespace.as_deref()), (Some("j"), Some("ns")));
        let mut want = job();
        want["metadata"].as_object_mut().unwrap().remove("managedFields");
        assert_eq!(serde_json::from_str::<Value>(&o.text).unwrap(), want);
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
            assert_eq!(l.items[1].metadata.resource_version.as_deref(), Some("42"), "noted through Content too");
            let mut want = job();
            want["metadata"].as_object_mut().unwrap().remove("managedFields");
            assert_eq!(serde_json::from_str::<Value>(&l.items[1].text).unwrap(), want);
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
    fn managed_fields_are_left_out_of_children_and_kept_for_operations() {
        let text = |o: &Value| serde_json::from_str::<RawObject>(&o.to_string()).unwrap().text;
        let child: Value = serde_json::from_str(&text(&job())).unwrap();
        let mut want = job();
        want["metadata"].as_object_mut().unwrap().remove("managedFields");
        assert_eq!(child, want);
        let mut op = job();
        op["kind"] = json!("Operation");
        assert_eq!(serde_json::from_str::<Value>(&text(&op)).unwrap(), op, "redaction keeps who wrote it");
        // Metadata before the kind: not known to be a child, so copied whole.
        let late = r#"{"metadata":{"name":"j","managedFields":[{"manager":"m"}]},"kind":"Job"}"#;
        let kept = serde_json::from_str::<RawObject>(late).unwrap().text;
        assert_eq!(serde_json::from_str::<Value>(&kept).unwrap(), serde_json::from_str::<Value>(late).unwrap());
    }

    #[test]
    fn a_non_object_is_refused_by_the_watcher_not_queued() {
        assert!(serde_json::from_str::<RawObject>("[1, 2]").is_err());
        assert!(serde_json::from_str::<RawObject>("{\"metadata\": 3}").is_err());
    }
}
