//! Ports of the local daemons: a preferred port per daemon and peer (the usual IPFS ports, shifted
//! by 10 per peer), replaced by a free one (found by binding) when something else holds it. Whoever
//! holds a port is never disturbed.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};

use serde::{Deserialize, Serialize};

/// The loopback ports one peer listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerPorts {
    /// Kubo RPC API (usually 5001).
    pub kubo_api: u16,
    /// Kubo read-only gateway (usually 8080).
    pub kubo_gateway: u16,
    /// Kubo libp2p swarm (usually 4001).
    pub kubo_swarm: u16,
    /// IPFS Cluster REST API (usually 9094).
    pub cluster_rest: u16,
    /// IPFS Cluster IPFS-proxy API (usually 9095).
    pub cluster_proxy: u16,
    /// IPFS Cluster libp2p (usually 9096).
    pub cluster_swarm: u16,
    /// IPFS Cluster pinning-service API (usually 9097).
    pub cluster_pinsvc: u16,
}

/// Distance between the preferred ports of two consecutive peers.
pub const PEER_PORT_STRIDE: u16 = 10;

impl PeerPorts {
    /// The preferred ports of peer `index`: the usual ones for peer 0, shifted by
    /// [`PEER_PORT_STRIDE`] for each further peer.
    pub fn preferred(index: u32) -> PeerPorts {
        let shift = u16::try_from(index)
            .unwrap_or(u16::MAX)
            .saturating_mul(PEER_PORT_STRIDE);
        PeerPorts {
            kubo_api: 5001u16.saturating_add(shift),
            kubo_gateway: 8080u16.saturating_add(shift),
            kubo_swarm: 4001u16.saturating_add(shift),
            cluster_rest: 9094u16.saturating_add(shift),
            cluster_proxy: 9095u16.saturating_add(shift),
            cluster_swarm: 9096u16.saturating_add(shift),
            cluster_pinsvc: 9097u16.saturating_add(shift),
        }
    }

    /// Every port with the name of its setting, for messages.
    pub fn named(&self) -> [(&'static str, u16); 7] {
        [
            ("Kubo RPC API", self.kubo_api),
            ("Kubo gateway", self.kubo_gateway),
            ("Kubo swarm", self.kubo_swarm),
            ("Cluster REST API", self.cluster_rest),
            ("Cluster proxy API", self.cluster_proxy),
            ("Cluster swarm", self.cluster_swarm),
            ("Cluster pinning-service API", self.cluster_pinsvc),
        ]
    }

    fn fields_mut(&mut self) -> [&mut u16; 7] {
        [
            &mut self.kubo_api,
            &mut self.kubo_gateway,
            &mut self.kubo_swarm,
            &mut self.cluster_rest,
            &mut self.cluster_proxy,
            &mut self.cluster_swarm,
            &mut self.cluster_pinsvc,
        ]
    }

    /// The Kubo ports only.
    pub fn kubo(&self) -> [u16; 3] {
        [self.kubo_api, self.kubo_gateway, self.kubo_swarm]
    }

    /// The cluster ports only.
    pub fn cluster(&self) -> [u16; 4] {
        [
            self.cluster_rest,
            self.cluster_proxy,
            self.cluster_swarm,
            self.cluster_pinsvc,
        ]
    }
}

/// Where ports come from: whether one can be bound now, and a fresh free one. Abstract so that
/// the choice is testable without touching the network.
pub trait PortSource {
    /// True when `port` can be bound on 127.0.0.1 now.
    fn is_free(&mut self, port: u16) -> bool;
    /// A port the system considers free now (bind to port 0).
    fn any_free(&mut self) -> Option<u16>;
}

/// The real source: binds a TCP socket on 127.0.0.1 and closes it again.
pub struct Loopback;

impl PortSource for Loopback {
    fn is_free(&mut self, port: u16) -> bool {
        port != 0 && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
    }

    fn any_free(&mut self) -> Option<u16> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
        listener.local_addr().ok().map(|a| a.port())
    }
}

/// A port that had to move because its preferred one was held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    pub what: &'static str,
    pub from: u16,
    pub to: u16,
}

/// No free port could be found for one listener (every candidate was held).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoFreePort {
    /// Which listener (`Kubo API`, ...).
    pub what: &'static str,
    /// Its preferred port, held by another process.
    pub preferred: u16,
}

/// Keeps each wanted port that is free and not already `taken` (by another peer of this
/// cluster); replaces the others by free ones. Returns the ports and what moved. `taken` is
/// updated with the result.
pub fn choose(
    wanted: PeerPorts,
    taken: &mut BTreeSet<u16>,
    source: &mut impl PortSource,
) -> Result<(PeerPorts, Vec<Moved>), NoFreePort> {
    let mut ports = wanted;
    let names = wanted.named();
    let mut moved = Vec::new();
    for (slot, (what, want)) in ports.fields_mut().into_iter().zip(names) {
        let port = if !taken.contains(&want) && source.is_free(want) {
            want
        } else {
            let mut found = None;
            for _ in 0..64 {
                match source.any_free() {
                    Some(p) if p != 0 && !taken.contains(&p) => {
                        found = Some(p);
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            let port = found.ok_or(NoFreePort {
                what,
                preferred: want,
            })?;
            moved.push(Moved {
                what,
                from: want,
                to: port,
            });
            port
        };
        taken.insert(port);
        *slot = port;
    }
    Ok((ports, moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        busy: BTreeSet<u16>,
        next: u16,
    }

    impl PortSource for Fake {
        fn is_free(&mut self, port: u16) -> bool {
            !self.busy.contains(&port)
        }
        fn any_free(&mut self) -> Option<u16> {
            self.next += 1;
            Some(self.next)
        }
    }

    #[test]
    fn preferred_ports_do_not_overlap_between_peers() {
        let mut all = BTreeSet::new();
        for i in 0..20 {
            for (_, p) in PeerPorts::preferred(i).named() {
                assert!(all.insert(p), "port {p} of peer {i} repeats");
            }
        }
        assert_eq!(PeerPorts::preferred(0).kubo_api, 5001);
        assert_eq!(PeerPorts::preferred(2).cluster_rest, 9114);
    }

    #[test]
    fn free_preferred_ports_are_kept() {
        let mut fake = Fake {
            busy: BTreeSet::new(),
            next: 40000,
        };
        let mut taken = BTreeSet::new();
        let (ports, moved) = choose(PeerPorts::preferred(1), &mut taken, &mut fake).expect("ok");
        assert_eq!(ports, PeerPorts::preferred(1));
        assert!(moved.is_empty());
        assert_eq!(taken.len(), 7);
    }

    #[test]
    fn a_held_or_taken_port_moves_to_a_free_one() {
        let mut fake = Fake {
            busy: [5001].into(),
            next: 40000,
        };
        let mut taken: BTreeSet<u16> = [9094, 40001].into();
        let (ports, moved) = choose(PeerPorts::preferred(0), &mut taken, &mut fake).expect("ok");
        assert_eq!(ports.kubo_api, 40002, "40001 is taken by another peer");
        assert_eq!(ports.cluster_rest, 40003);
        assert_eq!(ports.kubo_swarm, 4001);
        assert_eq!(
            moved,
            vec![
                Moved {
                    what: "Kubo RPC API",
                    from: 5001,
                    to: 40002
                },
                Moved {
                    what: "Cluster REST API",
                    from: 9094,
                    to: 40003
                }
            ]
        );
    }

    #[test]
    fn no_free_port_names_the_listener_and_its_preferred_port() {
        struct Full;
        impl PortSource for Full {
            fn is_free(&mut self, _: u16) -> bool {
                false
            }
            fn any_free(&mut self) -> Option<u16> {
                None
            }
        }
        let mut taken = BTreeSet::new();
        let err = choose(PeerPorts::preferred(0), &mut taken, &mut Full).expect_err("full");
        assert_eq!(
            err,
            NoFreePort {
                what: "Kubo RPC API",
                preferred: 5001
            }
        );
    }

    #[test]
    fn loopback_source_sees_a_held_port() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = held.local_addr().expect("addr").port();
        assert!(!Loopback.is_free(port));
        let other = Loopback.any_free().expect("free port");
        assert_ne!(other, port);
    }
}
