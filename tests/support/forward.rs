//! A TCP forwarder: puts a real daemon behind another loopback address, e.g. the "pod IP" kwok
//! gave a pod that runs no container, so the operator reaches a real IPFS Cluster there.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Listens on `listen` and forwards every connection to `to`, until the handle is aborted.
pub async fn forward(listen: SocketAddr, to: SocketAddr) -> JoinHandle<()> {
    let listener = TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| panic!("binding the forwarder on {listen}: {e}"));
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}
