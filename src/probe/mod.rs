//! The typed client of the IPFS daemons' APIs, and the health probes built on it.
//!
//! - [`http`]: [`IpfsClient`], one connection pool for every call, and [`Endpoint`]s.
//! - [`kubo`]: Kubo RPC calls (status, `swarm/connect`, `shutdown`).
//! - [`cluster`]: IPFS Cluster REST calls (status, peer removal, pin, unpin, allocation).
//! - [`round`]: the concurrent probe round ([`Prober`]) that yields one [`report::PeerReport`]
//!   per peer.
//! - [`liveness`]: the cheap pings between rounds that find a hung daemon within seconds.

pub mod cluster;
pub mod http;
pub mod kubo;
pub mod liveness;
pub mod report;
pub mod round;

pub use http::{Endpoint, IpfsClient, ProberError, host_port};
pub use round::{DEFAULT_CONCURRENCY, PeerTarget, Prober};
