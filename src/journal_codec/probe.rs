//! Reading an object's `metadata` and `spec` from a watch event body and stopping there. An
//! Operation echo is mostly its status (80% of the body), which the echo probe never needs:
//! reading on to the end only to skip it was most of the probe's cost.
//!
//! serde_json checks that a map is read to its end, so stopping early surfaces as an error from
//! the parser; the two parts are kept aside before it, and that error is the expected way out.
//! A body whose parts come in another order is read to the end as before. Bodies are checked by
//! their CRC and were written by serde_json, so a tail never read is a tail that parsed.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// `object.metadata` and `object.spec` (None when absent) of a body `{..., "object": {...}}`;
/// None when the body does not hold them as `M` and `S` read them.
pub fn object<M, S>(text: &str) -> Option<(M, Option<S>)>
where
    M: for<'de> Deserialize<'de>,
    S: for<'de> Deserialize<'de>,
{
    let mut found = Found { meta: None, spec: None, whole: false };
    let mut de = serde_json::Deserializer::from_str(text);
    let read = de::Deserializer::deserialize_map(&mut de, Body(&mut found)).and_then(|()| de.end());
    // Stopped early with both parts, or read to the end without error.
    if !(found.whole || read.is_ok()) {
        return None;
    }
    Some((found.meta?, found.spec.flatten()))
}

struct Found<M, S> {
    meta: Option<M>,
    /// Some(None): `spec` was there and null.
    spec: Option<Option<S>>,
    /// Both parts read, and the rest left unread on purpose.
    whole: bool,
}

const STOP: &str = "metadata and spec read";

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum BodyKey {
    Object,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum ObjKey {
    Metadata,
    Spec,
    #[serde(other)]
    Other,
}

struct Body<'a, M, S>(&'a mut Found<M, S>);

impl<'de, M: Deserialize<'de>, S: Deserialize<'de>> Visitor<'de> for Body<'_, M, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record body")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<BodyKey>()? {
            match k {
                BodyKey::Object => map.next_value_seed(Object(&mut *self.0))?,
                BodyKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct Object<'a, M, S>(&'a mut Found<M, S>);

impl<'de, M: Deserialize<'de>, S: Deserialize<'de>> DeserializeSeed<'de> for Object<'_, M, S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, M: Deserialize<'de>, S: Deserialize<'de>> Visitor<'de> for Object<'_, M, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<ObjKey>()? {
            match k {
                ObjKey::Metadata => self.0.meta = Some(map.next_value()?),
                ObjKey::Spec => self.0.spec = Some(map.next_value()?),
                ObjKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if self.0.meta.is_some() && self.0.spec.is_some() {
                self.0.whole = true;
                return Err(de::Error::custom(STOP));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parts(text: &str) -> Option<(Value, Option<Value>)> {
        object::<Value, Value>(text)
    }

    #[test]
    fn reads_metadata_and_spec_in_any_order_and_stops_after_both() {
        let meta = json!({ "name": "a", "uid": "u" });
        let spec = json!({ "cancel": true });
        let want = Some((meta.clone(), Some(spec.clone())));
        // The usual order: the status after them is never read (here it is not even JSON).
        let text = format!(r#"{{"event":"Apply","object":{{"metadata":{meta},"spec":{spec},"status":{{not json"#);
        assert_eq!(parts(&text), want);
        // Status first, spec last, keys after the object: read to the end.
        let text = format!(
            r#"{{"object":{{"status":{{"phase":"Running"}},"spec":{spec},"metadata":{meta}}},"resource":"operation"}}"#
        );
        assert_eq!(parts(&text), want);
        // No spec, or a null one.
        let text = format!(r#"{{"object":{{"metadata":{meta},"status":{{}}}}}}"#);
        assert_eq!(parts(&text), Some((meta.clone(), None)));
        let text = format!(r#"{{"object":{{"spec":null,"metadata":{meta}}}}}"#);
        assert_eq!(parts(&text), Some((meta.clone(), None)));
    }

    #[test]
    fn declines_what_it_cannot_read() {
        for text in [
            r#"{"object":{"spec":{}}}"#,
            r#"{"object":{"metadata":{"name":"a"}"#,
            r#"{"object":{"metadata":{}}} trailing"#,
            r#"{"object":[]}"#,
            r#"[]"#,
            "",
        ] {
            assert_eq!(parts(text), None, "{text}");
        }
        // A part of the wrong shape is an error from its own reader, not the stop.
        assert_eq!(object::<String, Value>(r#"{"object":{"metadata":{},"spec":{}}}"#), None);
    }
}
