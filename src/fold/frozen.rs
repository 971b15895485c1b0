//! The template an Operation froze at acceptance. It shares the world's copy (an `Arc`) instead
//! of cloning it: thousands of Operations run under a handful of templates, and the clone was
//! 552 bytes inline in every Operation (5 MB at 10,000). Serialised as the `[name, spec]` pair it
//! replaced, so snapshots read alike.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::template::Template;
use crate::api::{OperationTemplate, OperationTemplateSpec};

#[derive(Clone, Debug)]
pub struct Frozen {
    name: String,
    template: Arc<Template>,
}

impl Frozen {
    pub fn new(name: String, template: Arc<Template>) -> Self {
        Self { name, template }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spec(&self) -> &OperationTemplateSpec {
        &self.template.spec
    }

    /// Its compiled parameters schema (`Template::schema`).
    pub fn schema(&self) -> Option<Result<&jsonschema::Validator, &str>> {
        self.template.schema()
    }
}

/// The name and spec, as frozen; the template's metadata is not part of it (a restored one has
/// none but its name).
impl PartialEq for Frozen {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.spec() == other.spec()
    }
}

impl Serialize for Frozen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.name, self.spec()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Frozen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (name, spec) = <(String, OperationTemplateSpec)>::deserialize(d)?;
        Ok(Self { template: Arc::new(Template::new(OperationTemplate::new(&name, spec))), name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(deadline: i64) -> OperationTemplateSpec {
        serde_json::from_value(serde_json::json!({ "types": ["Backup"], "engine": "velero", "namespaces": ["*"], "deadlineSeconds": deadline }))
            .unwrap()
    }

    #[test]
    fn serialises_as_the_name_and_spec_pair_it_replaced() {
        let mut t = OperationTemplate::new("backup", spec(60));
        t.metadata.uid = Some("u-1".into());
        let f = Frozen::new("backup".into(), Arc::new(Template::new(t)));
        let text = serde_json::to_string(&f).unwrap();
        assert_eq!(text, serde_json::to_string(&("backup", spec(60))).unwrap());
        let back: Frozen = serde_json::from_str(&text).unwrap();
        assert_eq!(back, f, "equal by name and spec, whatever the metadata");
        assert_eq!(back.name(), "backup");
        assert_eq!(back.spec().deadline_seconds, Some(60));
        assert_ne!(
            Frozen::new("backup".into(), Arc::new(Template::new(OperationTemplate::new("backup", spec(61))))),
            f
        );
    }

    #[test]
    fn clones_share_one_template() {
        let f = Frozen::new("backup".into(), Arc::new(Template::new(OperationTemplate::new("backup", spec(60)))));
        let g = f.clone();
        assert!(Arc::ptr_eq(&f.template, &g.template));
    }
}
