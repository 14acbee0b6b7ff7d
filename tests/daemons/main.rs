//! Tests against real Kubo and IPFS Cluster daemons of the test world.

#[path = "../support/mod.rs"]
mod support;

mod harness;
mod healing;
mod kubo_metrics;
mod local;
mod probe;
