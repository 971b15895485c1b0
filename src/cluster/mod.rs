//! A real control plane on this machine, for `dev` and the integration tests: the Go-built
//! kube-apiserver + etcd from `tests/controlplane/`, and the CRDs the operator needs.

pub mod controlplane;
pub mod install;
pub mod jaeger;
pub mod third_party;

pub use controlplane::{ControlPlane, Error as ControlPlaneError};

/// Whether a process's log or error says a port it was given was taken before it bound it: a
/// free port is released before the process binds it, and another connection can take it
/// meanwhile. Go and Rust both say it, capitalised differently.
pub fn port_taken(text: &str) -> bool {
    text.to_ascii_lowercase().contains("address already in use")
}

#[cfg(test)]
mod tests {
    #[test]
    fn port_taken_reads_go_and_rust_wording() {
        // Go's net package, and Rust's io::Error for EADDRINUSE.
        assert!(super::port_taken("listen tcp 127.0.0.1:4317: bind: address already in use"));
        assert!(super::port_taken("Error: binding 127.0.0.1:9090: Address already in use (os error 98)"));
        assert!(!super::port_taken("connection refused"));
    }
}
