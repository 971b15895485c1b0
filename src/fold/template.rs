//! An observed OperationTemplate with its parameters schema compiled once, on first use. Every
//! acceptance checks parameters against it, and an Operation waiting in its target's queue is
//! checked again at each revisit: compiled per check, a queue of N cost N² compilations.
//! Serialised, compared and shown as the template alone; the compiled form is derived from it.

use std::ops::Deref;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::OperationTemplate;

pub struct Template {
    template: OperationTemplate,
    schema: OnceLock<Result<jsonschema::Validator, String>>,
}

impl Template {
    pub fn new(template: OperationTemplate) -> Self {
        Self { template, schema: OnceLock::new() }
    }

    /// The compiled parameters schema, or why it does not compile; None without a schema.
    pub fn schema(&self) -> Option<Result<&jsonschema::Validator, &str>> {
        let schema = self.template.spec.parameters_schema.as_ref()?;
        let compiled = self.schema.get_or_init(|| jsonschema::validator_for(schema).map_err(|e| e.to_string()));
        Some(compiled.as_ref().map_err(String::as_str))
    }
}

impl Deref for Template {
    type Target = OperationTemplate;
    fn deref(&self) -> &OperationTemplate {
        &self.template
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.template == other.template
    }
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.template.fmt(f)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.template.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        OperationTemplate::deserialize(d).map(Template::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(schema: Option<serde_json::Value>) -> Template {
        let mut spec = json!({ "types": ["Backup"], "engine": "velero", "namespaces": ["*"] });
        if let Some(s) = schema {
            spec["parametersSchema"] = s;
        }
        Template::new(OperationTemplate::new("t", serde_json::from_value(spec).unwrap()))
    }

    #[test]
    fn compiles_once_and_reads_as_the_template() {
        let t = template(Some(json!({ "type": "object", "properties": { "n": { "type": "integer" } } })));
        let a = t.schema().unwrap().unwrap() as *const _;
        let b = t.schema().unwrap().unwrap() as *const _;
        assert_eq!(a, b, "the second check reuses the first compilation");
        assert!(t.schema().unwrap().unwrap().is_valid(&json!({ "n": 1 })));
        assert!(!t.schema().unwrap().unwrap().is_valid(&json!({ "n": "x" })));
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(text, serde_json::to_string(&*t).unwrap());
        let back: Template = serde_json::from_str(&text).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn a_schema_that_does_not_compile_says_why_each_time() {
        let t = template(Some(json!({ "type": 12 })));
        let first = t.schema().unwrap().unwrap_err().to_string();
        assert!(!first.is_empty());
        assert_eq!(t.schema().unwrap().unwrap_err(), first);
    }

    #[test]
    fn no_schema_is_nothing_to_check() {
        assert!(template(None).schema().is_none());
    }
}
