//! The Kubernetes cluster's DNS domain (`cluster.local` unless the cluster was set up with
//! another): the peers reach each other by `<pod>.<headless service>.<namespace>.svc.<domain>`.
//! Given by `--cluster-domain`, else read from the search list of the operator pod's
//! `/etc/resolv.conf` (kubelet writes `<ns>.svc.<domain> svc.<domain> <domain>` there), else
//! [`DEFAULT_CLUSTER_DOMAIN`].

use std::path::Path;

/// The domain of a cluster that says nothing else.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// Where a pod's resolver configuration lives.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Where the cluster domain in use came from (logged at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainSource {
    /// `--cluster-domain` (or `IPFS_KIT_CLUSTER_DOMAIN`).
    Flag,
    /// The search list of `/etc/resolv.conf`.
    ResolvConf,
    /// Nothing said otherwise: [`DEFAULT_CLUSTER_DOMAIN`].
    Default,
}

/// `domain` as a DNS name the operator may write into scripts and addresses: lowercase letters,
/// digits and `-` in dot-separated labels of at most 63 characters, at most 253 in all; a
/// trailing dot (a fully qualified name) is dropped.
pub fn parse_cluster_domain(domain: &str) -> Result<String, String> {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "{domain:?} is not a DNS domain (lowercase labels of letters, digits and '-', \
             separated by dots), e.g. cluster.local"
        ));
    }
    Ok(name.to_owned())
}

/// The cluster domain named by the search list of a `resolv.conf`: the rest of the first entry
/// `svc.<domain>`, else of the first entry `<namespace>.svc.<domain>`. Only the last `search`
/// line counts (as for the resolver); comments are ignored. `None` when no entry names one
/// (outside a pod, say).
pub fn cluster_domain_from_resolv_conf(text: &str) -> Option<String> {
    let search = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("search")).then(|| words.collect::<Vec<_>>())
        })
        .next_back()?;
    let after_svc = |entry: &&str| -> Option<String> {
        let entry = entry.to_ascii_lowercase();
        let rest = entry
            .strip_prefix("svc.")
            .or_else(|| entry.split_once(".svc.").map(|(_, rest)| rest))?;
        parse_cluster_domain(rest).ok()
    };
    let direct = search
        .iter()
        .filter(|e| e.to_ascii_lowercase().starts_with("svc."))
        .find_map(after_svc);
    direct.or_else(|| search.iter().find_map(after_svc))
}

/// The cluster domain to use and where it came from: `flag` when given, else the one of the
/// resolver configuration at `resolv_conf`, else [`DEFAULT_CLUSTER_DOMAIN`].
pub fn cluster_domain(flag: Option<&str>, resolv_conf: &Path) -> (String, DomainSource) {
    if let Some(domain) = flag {
        return (domain.to_owned(), DomainSource::Flag);
    }
    std::fs::read_to_string(resolv_conf)
        .ok()
        .and_then(|text| cluster_domain_from_resolv_conf(&text))
        .map(|d| (d, DomainSource::ResolvConf))
        .unwrap_or_else(|| (DEFAULT_CLUSTER_DOMAIN.to_owned(), DomainSource::Default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_resolv_conf_names_the_domain_after_svc() {
        let pod = "search ipfs.svc.cluster.local svc.cluster.local cluster.local\n\
                   nameserver 10.96.0.10\noptions ndots:5\n";
        assert_eq!(
            cluster_domain_from_resolv_conf(pod).as_deref(),
            Some("cluster.local")
        );
        let custom = "nameserver 10.0.0.10\n\
                      search apps.svc.k8s.example.org svc.k8s.example.org k8s.example.org corp.example\n";
        assert_eq!(
            cluster_domain_from_resolv_conf(custom).as_deref(),
            Some("k8s.example.org")
        );
    }

    #[test]
    fn host_entries_before_the_cluster_ones_are_skipped() {
        // A customised dnsConfig may put a node's own search domains first.
        let text = "search corp.example ipfs.svc.cluster.local svc.cluster.local cluster.local\n";
        assert_eq!(
            cluster_domain_from_resolv_conf(text).as_deref(),
            Some("cluster.local")
        );
        let text = "search corp.example ipfs.svc.Cluster.Local.\n";
        assert_eq!(
            cluster_domain_from_resolv_conf(text).as_deref(),
            Some("cluster.local"),
            "without a svc. entry, the rest of <ns>.svc.; case and trailing dot dropped"
        );
    }

    #[test]
    fn the_last_search_line_counts_and_comments_do_not() {
        let text = "search svc.old.local\n# search svc.commented.local\nsearch a.svc.new.local\n";
        assert_eq!(
            cluster_domain_from_resolv_conf(text).as_deref(),
            Some("new.local")
        );
    }

    #[test]
    fn no_search_list_or_no_svc_entry_names_no_domain() {
        for text in [
            "",
            "nameserver 1.1.1.1\n",
            "search example.com lan\nnameserver 192.168.1.1\n",
            "search\n",
            "search svc. svc.bad_label.local\n",
            "# search svc.cluster.local\n",
        ] {
            assert_eq!(cluster_domain_from_resolv_conf(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_domain_flag_must_be_a_dns_name() {
        assert_eq!(
            parse_cluster_domain("cluster.local.").as_deref(),
            Ok("cluster.local")
        );
        assert_eq!(
            parse_cluster_domain("k8s-1.example").as_deref(),
            Ok("k8s-1.example")
        );
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a$(id).local",
            "a b",
            "Cluster.Local",
            "a\"b",
        ] {
            assert!(parse_cluster_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_flag_wins_then_resolv_conf_then_the_default() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "search ns.svc.corp.internal svc.corp.internal\n").expect("write");
        assert_eq!(
            cluster_domain(Some("given.local"), &path),
            ("given.local".to_owned(), DomainSource::Flag)
        );
        assert_eq!(
            cluster_domain(None, &path),
            ("corp.internal".to_owned(), DomainSource::ResolvConf)
        );
        assert_eq!(
            cluster_domain(None, &dir.path().join("missing")),
            ("cluster.local".to_owned(), DomainSource::Default)
        );
    }
}
