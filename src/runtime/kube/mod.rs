//! The Kubernetes runtime: `ipfs-kit-operator run`. A kube-rs `Controller` over IpfsClusters that
//! server-side applies the objects each one owns ([`build`]), probes the peers and writes status.

pub mod build;
