//! Probes of the Kubo RPC API and the IPFS Cluster REST API, used for health.

pub mod client;
pub mod report;

pub use client::{DEFAULT_CONCURRENCY, Endpoint, PeerTarget, Prober};
