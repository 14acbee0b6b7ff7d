//! ipfs-kit-operator: runs IPFS (Kubo) and IPFS Cluster peers from a declared desired state, keeps
//! them healthy and serves a dashboard about them, in Kubernetes or on one host.

pub mod alerts;
pub mod api;
pub mod cli;
pub mod dashboard;
pub mod history;
pub mod kubo_metrics;
pub mod metrics;
pub mod netguard;
pub mod probe;
pub mod reconcile;
pub mod runtime;
pub mod telemetry;
pub mod tls;
