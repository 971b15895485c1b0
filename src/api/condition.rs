//! `metav1.Condition`, with chrono time so the pure core never touches jiff.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The four condition types of the contract (DESIGN §2), in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConditionType {
    Accepted,
    PreconditionsMet,
    Progressing,
    Succeeded,
}

impl ConditionType {
    pub const ALL: [ConditionType; 4] = [
        ConditionType::Accepted,
        ConditionType::PreconditionsMet,
        ConditionType::Progressing,
        ConditionType::Succeeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Accepted => "Accepted",
            ConditionType::PreconditionsMet => "PreconditionsMet",
            ConditionType::Progressing => "Progressing",
            ConditionType::Succeeded => "Succeeded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// One `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[schemars(length(min = 1, max = 316))]
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default)]
    pub observed_generation: i64,
    pub last_transition_time: DateTime<Utc>,
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"))]
    pub reason: String,
    #[schemars(length(max = 32768))]
    #[serde(default)]
    pub message: String,
}
