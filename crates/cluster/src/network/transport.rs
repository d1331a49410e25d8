//! How replication connections are made: a [`Transport`] dials a peer's address, a
//! [`Listener`] accepts peers. A node uses TCP ([`TcpTransport`], [`TcpPeerListener`]); the
//! deterministic simulation plugs in its simulated network through the same two traits.

use std::fmt::Debug;
use std::io;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// One replication connection, either direction.
pub trait Connection: AsyncRead + AsyncWrite + Debug + Unpin + Send + Sync + 'static {
    /// Whether a connection kept between RPCs is still usable: the peer has neither closed
    /// it nor sent anything unasked. Must not block or consume anything.
    fn is_open(&mut self) -> bool;
}

pub type BoxedConnection = Box<dyn Connection>;

/// Dials peers.
pub trait Transport: Debug + Send + Sync + 'static {
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<BoxedConnection>>;
}

/// Accepts peers' connections.
pub trait Listener: Send + 'static {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxedConnection>>;
}

/// TCP with Nagle's algorithm off: replication sends small frames and waits for the answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTransport;

impl Transport for TcpTransport {
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<BoxedConnection>> {
        Box::pin(async move {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedConnection)
        })
    }
}

/// A bound TCP listener.
pub struct TcpPeerListener(pub TcpListener);

impl Listener for TcpPeerListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxedConnection>> {
        Box::pin(async move {
            let (stream, _peer_address) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedConnection)
        })
    }
}

impl Connection for TcpStream {
    fn is_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        matches!(
            self.try_read(&mut probe),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock
        )
    }
}
