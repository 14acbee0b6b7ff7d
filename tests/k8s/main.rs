//! Tests against the loopback Kubernetes control plane of the test world.

#[path = "../support/mod.rs"]
mod support;

// The page tests drive Chromium with the client of tests/browser (not all of it used here).
#[path = "../browser/cdp.rs"]
#[allow(dead_code)]
mod cdp;

mod alerts;
mod controller;
mod crd;
mod dashboard;
mod drift;
mod events;
mod harness;
mod helm;
mod history;
mod metrics;
mod page;
mod pin;
mod quiet;
mod reach;
mod real_peers;
mod requests;
