//! Probes of the Kubo RPC API and the IPFS Cluster REST API, used for health.

pub mod report;
