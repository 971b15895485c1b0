//! vworkspace-operator: day-2 Operations on application instances, with an event-sourced core.
//!
//! The path of every decision: watch event → [`record`] → [`fold`] → [`command`] → effector.

pub mod api;
pub mod cluster;
pub mod command;
pub mod crdgen;
pub mod dispatch;
pub mod effector;
pub mod engine;
pub mod events;
pub mod failpoint;
pub mod fold;
#[doc(hidden)]
pub mod fuzz;
#[doc(hidden)]
pub mod harness;
pub mod http;
pub mod inbound;
pub mod ingest;
pub mod journal_codec;
pub mod json;
pub mod key;
pub mod leader;
pub mod metrics;
pub mod ownership;
pub mod pressure;
pub mod record;
pub mod replay;
pub mod run;
pub mod shard;
pub mod signals;
pub mod sim;
pub mod telemetry;
