//! ENGINE SIMULATORS (dev and tests only). Velero, Argo, CSI, VolSync and the Job controller
//! cannot run here, so these stand-ins move each child's status through the exact upstream
//! phases. Every log line they write says "simulator"; their statuses carry no marker, because
//! schemaful upstream CRDs prune unknown fields exactly as a cluster does.

pub mod app;
pub mod controller;
pub mod scenario;

pub use controller::{Options, run};
pub use scenario::Scenario;

/// Annotation (on the child or its Operation) that picks the simulated scenario.
pub const SCENARIO_ANNOTATION: &str = "sim.vworkspace.io/scenario";
