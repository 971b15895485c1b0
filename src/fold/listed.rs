//! An object seen in a relist that has not ended yet, kept as compact JSON text until the list
//! ends. A relist of 10,000 Operations held as JSON trees was the operator's peak heap at that
//! scale (about 130 MB, against 30 MB as text); each is parsed again, one at a time, when the
//! list is swapped in.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Listed(Box<RawValue>);

impl Listed {
    pub fn new(obj: &Value) -> Self {
        // A Value always serialises; Null stands in only if that ever changed.
        Self(serde_json::value::to_raw_value(obj).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    /// The object, parsed again.
    pub fn value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Listed {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get() || self.value() == other.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn holds_the_object_and_serialises_as_it() {
        let obj = json!({ "metadata": { "name": "o", "uid": "u" }, "status": { "phase": "Running" } });
        let l = Listed::new(&obj);
        assert_eq!(l.value(), obj);
        assert_eq!(serde_json::to_string(&l).unwrap(), serde_json::to_string(&obj).unwrap());
        let back: Listed = serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(back, l);
        assert_ne!(Listed::new(&json!({ "a": 1 })), l);
    }
}
