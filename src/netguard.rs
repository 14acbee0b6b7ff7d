//! Finds network addresses in a daemon configuration that are not on loopback.
//!
//! Kubo and IPFS Cluster configs name the addresses they listen on, announce and dial as
//! multiaddrs (`/ip4/127.0.0.1/tcp/4001`, `/dns4/example.org/...`) and URLs. A private, offline-safe
//! peer names only loopback ones; this module lists every other one with its JSON path so that a
//! caller can refuse to start the daemon and say exactly which setting is at fault.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;

/// One address found in a config that is not on loopback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonLoopback {
    /// JSON path of the setting, e.g. `Addresses.Swarm[1]`.
    pub path: String,
    /// The offending value.
    pub value: String,
}

impl std::fmt::Display for NonLoopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {:?}", self.path, self.value)
    }
}

/// Lists every multiaddr or URL in `config` whose host is not loopback. Paths listed in `ignore`
/// (exact JSON paths, or prefixes ending in `.`) are skipped: use that only for settings that are
/// switched off elsewhere in the same config.
pub fn non_loopback_addresses(config: &Value, ignore: &[&str]) -> Vec<NonLoopback> {
    let mut found = Vec::new();
    walk(config, String::new(), ignore, &mut found);
    found
}

fn walk(value: &Value, path: String, ignore: &[&str], found: &mut Vec<NonLoopback>) {
    if ignore
        .iter()
        .any(|i| path == *i || (i.ends_with('.') && path.starts_with(*i)))
    {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(v, child, ignore, found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, format!("{path}[{i}]"), ignore, found);
            }
        }
        Value::String(s) if !is_loopback_address(s) => {
            found.push(NonLoopback {
                path,
                value: s.clone(),
            });
        }
        _ => {}
    }
}

/// True unless `s` is a multiaddr or URL naming a host outside loopback. Strings that are neither
/// (names, durations, peer ids) are not addresses and count as loopback-safe.
pub fn is_loopback_address(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix('/') {
        let mut parts = rest.split('/');
        return match (parts.next(), parts.next()) {
            (Some("ip4"), Some(host)) => host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()),
            (Some("ip6"), Some(host)) => host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()),
            (Some("dns" | "dns4" | "dns6" | "dnsaddr"), Some(host)) => host == "localhost",
            _ => true,
        };
    }
    for scheme in ["http://", "https://", "ws://", "wss://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let host = if let Some(v6) = host.strip_prefix('[') {
                v6.split(']').next().unwrap_or("")
            } else {
                host.split(':').next().unwrap_or("")
            };
            return host == "localhost"
                || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
                || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loopback_multiaddrs_and_urls_pass() {
        for s in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.100.7/udp/4001/quic-v1",
            "/ip6/::1/tcp/5001",
            "/dns4/localhost/tcp/9094",
            "http://127.0.0.1:5001/api/v0",
            "https://localhost/x",
            "http://[::1]:8080",
            "12D3KooWabc",
            "30s",
        ] {
            assert!(is_loopback_address(s), "{s}");
        }
    }

    #[test]
    fn outside_addresses_are_found() {
        for s in [
            "/ip4/0.0.0.0/tcp/4001",
            "/ip4/10.0.0.1/tcp/4001",
            "/ip4/192.168.1.1/tcp/4001",
            "/ip6/::/tcp/4001",
            "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnoo",
            "/dns4/example.org/tcp/443",
            "https://cid.contact",
            "http://user:pw@172.16.0.1:80/",
        ] {
            assert!(!is_loopback_address(s), "{s}");
        }
    }

    #[test]
    fn paths_name_the_setting_and_ignore_skips_switched_off_sections() {
        let config = json!({
            "Addresses": {"Swarm": ["/ip4/127.0.0.1/tcp/0", "/ip4/0.0.0.0/tcp/4001"]},
            "AutoConf": {"Enabled": false, "URL": "https://conf.example.org/autoconf.json"},
            "Bootstrap": []
        });
        let found = non_loopback_addresses(&config, &["AutoConf."]);
        assert_eq!(
            found,
            vec![NonLoopback {
                path: "Addresses.Swarm[1]".into(),
                value: "/ip4/0.0.0.0/tcp/4001".into()
            }]
        );
        assert_eq!(non_loopback_addresses(&config, &[]).len(), 2);
    }
}
