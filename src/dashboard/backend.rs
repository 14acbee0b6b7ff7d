//! Backend names: `[<namespace>/]<cluster>/<peer>/<daemon>` with daemon `ipfs` or `cluster`.
//! Names are looked up in the reconciled status; they are never used as file paths.

pub use crate::api::request::Daemon;

/// A parsed backend name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendName {
    /// `namespace/cluster` in Kubernetes, `cluster` locally.
    pub cluster: String,
    pub peer: String,
    pub daemon: Daemon,
}

impl BackendName {
    /// Parses `[<namespace>/]<cluster>/<peer>/<daemon>`; every part a DNS-1123 label.
    pub fn parse(name: &str) -> Result<BackendName, String> {
        let parts: Vec<&str> = name.split('/').collect();
        let shape =
            "backend names look like <cluster>/<peer>/ipfs or <namespace>/<cluster>/<peer>/cluster";
        if !(3..=4).contains(&parts.len()) {
            return Err(format!("{name:?}: {shape}"));
        }
        for part in &parts[..parts.len() - 1] {
            if !is_label(part) {
                return Err(format!("{name:?}: {part:?} is not a valid name; {shape}"));
            }
        }
        let daemon = parts[parts.len() - 1];
        let daemon = Daemon::parse(daemon)
            .ok_or_else(|| format!("{name:?}: unknown daemon {daemon:?} (ipfs or cluster)"))?;
        Ok(BackendName {
            cluster: parts[..parts.len() - 2].join("/"),
            peer: parts[parts.len() - 2].to_string(),
            daemon,
        })
    }
}

/// A DNS-1123 label: 1-63 of `a-z0-9-`, starting and ending alphanumeric.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_and_without_namespace() {
        let local = BackendName::parse("demo/demo-0/ipfs").expect("local");
        assert_eq!(
            (local.cluster.as_str(), local.peer.as_str()),
            ("demo", "demo-0")
        );
        assert_eq!(local.daemon, Daemon::Ipfs);
        let kube = BackendName::parse("prod/store/store-2/cluster").expect("kube");
        assert_eq!(kube.cluster, "prod/store");
        assert_eq!(kube.daemon, Daemon::Cluster);
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        for bad in [
            "demo",
            "demo/demo-0",
            "../etc/passwd/ipfs",
            "demo/demo-0/lotus",
            "a/b/c/d/ipfs",
            "Demo/x/ipfs",
        ] {
            let err = BackendName::parse(bad).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }
}
