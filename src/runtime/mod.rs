//! The runtimes that carry out what the reconcile core decides: Kubernetes objects ([`kube`]) or
//! real processes on this host ([`local`]).

pub mod kube;
pub mod local;
