//! [`FaultProxy`]: a TCP proxy on 127.0.0.1 that forwards to one target and can cut the
//! link like a network partition, then heal it.
//!
//! Cutting is a blackhole, not a refusal: connections already open stop forwarding bytes
//! in both directions but stay open, and new connections are accepted and never forwarded,
//! so the peers learn of the partition only through their own timeouts. Bytes arriving on
//! a cut link are read and dropped. When the link heals, the connections the cut caught
//! are closed (their streams lost bytes and cannot resume); new connections forward again.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Connections one proxy relays at once, at most; more are closed at once.
pub const MAX_CONNECTIONS_PER_PROXY: usize = 256;
/// How long the proxy waits to reach its target before it closes the incoming connection.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after a failed `accept` before the next.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(20);
/// Bytes read and dropped per read on a cut link.
const DISCARD_BUFFER_BYTES: usize = 16 * 1024;

pub struct FaultProxy {
    address: SocketAddr,
    /// True while the link is cut.
    cut: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy listener");
        let address = listener.local_addr().expect("proxy address");
        let (cut, link) = watch::channel(false);
        let accept_task = tokio::spawn(accept_connections(listener, target, link));
        FaultProxy {
            address,
            cut,
            accept_task,
        }
    }

    /// Where peers connect to reach the target through this proxy.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops forwarding: open connections go silent, new ones are never forwarded.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards again; the connections the cut caught are closed.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for FaultProxy {
    /// Stops accepting and closes every relayed connection (the accept task owns them).
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_connections(
    listener: TcpListener,
    target: SocketAddr,
    link: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let inbound = match listener.accept().await {
            Ok((inbound, _peer)) => inbound,
            Err(_) => {
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                continue;
            }
        };
        if connections.len() >= MAX_CONNECTIONS_PER_PROXY {
            continue;
        }
        connections.spawn(relay(inbound, target, link.clone()));
    }
}

/// Forwards one connection both ways until either side closes it or the link is cut.
async fn relay(mut inbound: TcpStream, target: SocketAddr, mut link: watch::Receiver<bool>) {
    if *link.borrow_and_update() {
        blackhole(inbound, None, link).await;
        return;
    }
    let connected = tokio::time::timeout(TARGET_CONNECT_TIMEOUT, TcpStream::connect(target)).await;
    let Ok(Ok(mut outbound)) = connected else {
        // Closing the incoming connection tells the peer the target is unreachable.
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
        cut = link.wait_for(|cut| *cut) => if cut.is_err() { return },
    }
    blackhole(inbound, Some(outbound), link).await;
}

/// Holds the connection open without forwarding anything until the link heals. A caught
/// connection (with an `outbound` side) stays open on both sides even if one side closes,
/// so that no close travels across the partition. A connection accepted while the link is
/// cut is closed when its peer gives up on it.
async fn blackhole(
    mut inbound: TcpStream,
    mut outbound: Option<TcpStream>,
    mut link: watch::Receiver<bool>,
) {
    let silence = async {
        match outbound.as_mut() {
            Some(outbound) => {
                tokio::join!(discard(&mut inbound), discard(outbound));
                std::future::pending::<()>().await;
            }
            None => discard(&mut inbound).await,
        }
    };
    tokio::select! {
        () = silence => {},
        _ = link.wait_for(|cut| !*cut) => {},
    }
}

/// Reads and drops bytes until the peer closes the stream (or it fails).
async fn discard(stream: &mut TcpStream) {
    let mut buffer = vec![0u8; DISCARD_BUFFER_BYTES];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            return;
        }
    }
}
