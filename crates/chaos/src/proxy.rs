//! [`FaultProxy`]: a TCP proxy on 127.0.0.1 that forwards to one target and can break the
//! link the ways a network does: cut it both ways or one way, delay it, or drop every
//! connection on it; then heal it.
//!
//! A delay is latency, not a slower line: each chunk is forwarded when its delay after it
//! was read has passed, while the chunks read after it are already waiting their turn. (Up
//! to [`CHUNKS_IN_FLIGHT`] per direction of a connection; beyond that the proxy reads no
//! more until one has gone, as a full TCP window would.)
//!
//! Cutting is a blackhole, not a refusal: bytes travelling a cut direction are read and
//! dropped, connections stay open, and a close does not travel across a cut, so the peers
//! learn of the partition only through their own timeouts. A connection accepted while the
//! link is cut both ways is never forwarded. When the link heals, the connections that lost
//! bytes are closed (their streams cannot resume); new connections forward again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Connections one proxy relays at once, at most; more are closed at once.
pub const MAX_CONNECTIONS_PER_PROXY: usize = 256;
/// How long the proxy waits to reach its target before it closes the incoming connection.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after a failed `accept` before the next.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(20);
/// Bytes read (and forwarded or dropped) per read.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks one direction of a connection holds during a delay, at most.
const CHUNKS_IN_FLIGHT: usize = 256;

/// Which way bytes travel through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting peer to the target.
    ToTarget,
    /// From the target back to the connecting peer.
    FromTarget,
}

/// What the link does now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LinkState {
    to_target_cut: bool,
    from_target_cut: bool,
    /// How long after it was read each chunk is forwarded.
    delay: Duration,
    /// Bumped to close every connection open now.
    generation: u64,
}

impl LinkState {
    fn is_cut(&self, direction: Direction) -> bool {
        match direction {
            Direction::ToTarget => self.to_target_cut,
            Direction::FromTarget => self.from_target_cut,
        }
    }

    fn is_fully_cut(&self) -> bool {
        self.to_target_cut && self.from_target_cut
    }

    fn is_clear(&self) -> bool {
        !self.to_target_cut && !self.from_target_cut
    }
}

pub struct FaultProxy {
    address: SocketAddr,
    link: watch::Sender<LinkState>,
    accept_task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy listener");
        let address = listener.local_addr().expect("proxy address");
        let (link, state) = watch::channel(LinkState::default());
        let accept_task = tokio::spawn(accept_connections(listener, target, state));
        FaultProxy {
            address,
            link,
            accept_task,
        }
    }

    /// Where peers connect to reach the target through this proxy.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops forwarding both ways: open connections go silent, new ones are never
    /// forwarded.
    pub fn cut(&self) {
        self.link.send_modify(|state| {
            state.to_target_cut = true;
            state.from_target_cut = true;
        });
    }

    /// Stops forwarding one way only: the other way still flows.
    pub fn cut_one_way(&self, direction: Direction) {
        self.link.send_modify(|state| match direction {
            Direction::ToTarget => state.to_target_cut = true,
            Direction::FromTarget => state.from_target_cut = true,
        });
    }

    /// Forwards every chunk this long after it was read (zero forwards at once): latency,
    /// the same for each chunk however many follow it.
    pub fn delay(&self, delay: Duration) {
        self.link.send_modify(|state| state.delay = delay);
    }

    /// Closes every connection open now, as a reset connection would; new ones forward.
    pub fn drop_connections(&self) {
        self.link.send_modify(|state| state.generation += 1);
    }

    /// Forwards again, at once, both ways; the connections that lost bytes are closed.
    pub fn heal(&self) {
        self.link.send_modify(|state| {
            state.to_target_cut = false;
            state.from_target_cut = false;
            state.delay = Duration::ZERO;
        });
    }

    /// Whether either direction is cut.
    pub fn is_cut(&self) -> bool {
        !self.link.borrow().is_clear()
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
    link: watch::Receiver<LinkState>,
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

/// Forwards one connection both ways, per the link's state, until both sides closed it,
/// the link dropped its connections, or the link healed after this connection lost bytes.
async fn relay(inbound: TcpStream, target: SocketAddr, mut link: watch::Receiver<LinkState>) {
    let state = *link.borrow_and_update();
    if state.is_fully_cut() {
        never_forward(inbound, link).await;
        return;
    }
    let connected = tokio::time::timeout(TARGET_CONNECT_TIMEOUT, TcpStream::connect(target)).await;
    let Ok(Ok(outbound)) = connected else {
        // Closing the incoming connection tells the peer the target is unreachable.
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (inbound_read, inbound_write) = inbound.into_split();
    let (outbound_read, outbound_write) = outbound.into_split();
    let lost_bytes = Arc::new(AtomicBool::new(false));
    let forward = pump(
        inbound_read,
        outbound_write,
        Direction::ToTarget,
        link.clone(),
        lost_bytes.clone(),
    );
    let backward = pump(
        outbound_read,
        inbound_write,
        Direction::FromTarget,
        link.clone(),
        lost_bytes.clone(),
    );
    let ended = link.wait_for(|now| {
        now.generation != state.generation || (now.is_clear() && lost_bytes.load(Ordering::SeqCst))
    });
    tokio::select! {
        _ = async { tokio::join!(forward, backward) } => {}
        _ = ended => {}
    }
}

/// Moves bytes one way: dropped while that way is cut, forwarded the link's delay after
/// they were read otherwise. A close is passed on, once every chunk read before it has
/// been, unless that way is cut then.
async fn pump(
    reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    direction: Direction,
    link: watch::Receiver<LinkState>,
    lost_bytes: Arc<AtomicBool>,
) {
    let (chunks, due_chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let way = Way {
        direction,
        link: link.clone(),
        lost_bytes,
    };
    tokio::join!(
        read_chunks(reader, chunks, way.clone()),
        forward_when_due(due_chunks, &mut writer, way)
    );
    if link.borrow().is_cut(direction) {
        // No close travels across a cut: the connection ends when the link heals.
        std::future::pending::<()>().await;
    }
    let _ = writer.shutdown().await;
}

/// One way of a connection: which, the link's state, and whether the connection lost
/// bytes to a cut.
#[derive(Clone)]
struct Way {
    direction: Direction,
    link: watch::Receiver<LinkState>,
    lost_bytes: Arc<AtomicBool>,
}

impl Way {
    /// Whether this way is cut now; a chunk found so is dropped, and the connection marked
    /// as having lost bytes.
    fn drops(&self) -> bool {
        let cut = self.link.borrow().is_cut(self.direction);
        if cut {
            self.lost_bytes.store(true, Ordering::SeqCst);
        }
        cut
    }
}

/// Reads chunks until the connection closes, and queues each with the time it is due;
/// chunks read while that way is cut are dropped.
async fn read_chunks(
    mut reader: OwnedReadHalf,
    chunks: mpsc::Sender<(Instant, Vec<u8>)>,
    way: Way,
) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if way.drops() {
            continue;
        }
        let due = Instant::now() + way.link.borrow().delay;
        if chunks.send((due, buffer[..read].to_vec())).await.is_err() {
            return;
        }
    }
}

/// Writes each queued chunk once it is due, in the order read, until the reading side is
/// done and every chunk is written, or a write fails. A chunk still in flight when its
/// way is cut is dropped, as a partition drops what is on the wire.
async fn forward_when_due(
    mut due_chunks: mpsc::Receiver<(Instant, Vec<u8>)>,
    writer: &mut OwnedWriteHalf,
    way: Way,
) {
    while let Some((due, chunk)) = due_chunks.recv().await {
        tokio::time::sleep_until(due).await;
        if way.drops() {
            continue;
        }
        if writer.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

/// A connection accepted while the link was cut both ways: read and dropped until its
/// peer gives up on it or the link heals (then it is closed).
async fn never_forward(mut inbound: TcpStream, mut link: watch::Receiver<LinkState>) {
    let discard = async {
        let mut buffer = vec![0u8; CHUNK_BYTES];
        while let Ok(read) = inbound.read(&mut buffer).await {
            if read == 0 {
                return;
            }
        }
    };
    tokio::select! {
        () = discard => {},
        _ = link.wait_for(|state| !state.is_fully_cut()) => {},
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    const DELAY: Duration = Duration::from_millis(300);
    const CHUNKS: usize = 20;
    const CHUNK: &[u8] = &[7u8; 1024];
    /// Between two writes, so that the proxy reads each chunk on its own.
    const WRITE_GAP: Duration = Duration::from_millis(10);
    /// Far more than one delay, far less than one delay per chunk (what a proxy that held
    /// each chunk in turn would take).
    const WELL_UNDER_A_DELAY_PER_CHUNK: Duration = Duration::from_secs(3);

    /// A delay is latency: every chunk arrives a delay after it was sent, not a delay after
    /// the chunk before it.
    #[tokio::test]
    async fn a_delay_holds_each_chunk_for_the_delay_without_queueing_them_one_after_another() {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let target_address = target.local_addr().expect("target address");
        let receiving = tokio::spawn(async move {
            let (mut connection, _) = target.accept().await.expect("accept");
            let mut received = vec![0u8; CHUNKS * CHUNK.len()];
            connection
                .read_exact(&mut received)
                .await
                .expect("every chunk arrives");
            received
        });
        let proxy = FaultProxy::start(target_address).await;
        proxy.delay(DELAY);
        let mut client = TcpStream::connect(proxy.address())
            .await
            .expect("connect to the proxy");
        let started = Instant::now();
        for _ in 0..CHUNKS {
            client.write_all(CHUNK).await.expect("write a chunk");
            tokio::time::sleep(WRITE_GAP).await;
        }
        let received = tokio::time::timeout(Duration::from_secs(30), receiving)
            .await
            .expect("the chunks arrive")
            .expect("the receiving task");
        let took = started.elapsed();
        assert!(received.iter().all(|byte| *byte == 7), "the bytes changed");
        assert!(took >= DELAY, "forwarded before the delay: {took:?}");
        assert!(
            took < WELL_UNDER_A_DELAY_PER_CHUNK,
            "{CHUNKS} chunks took {took:?}: each waited for the one before"
        );
    }
}
