//! Tests against real Kubo and IPFS Cluster daemons of the test world.

#[path = "../support/mod.rs"]
mod support;

mod harness;
mod local;
mod healing;
mod probe;
