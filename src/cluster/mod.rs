//! A real control plane on this machine, for `dev` and the integration tests: the Go-built
//! kube-apiserver + etcd from `tests/controlplane/`, and the CRDs the operator needs.

pub mod controlplane;
pub mod install;
pub mod jaeger;
pub mod third_party;

pub use controlplane::{ControlPlane, Error as ControlPlaneError};
