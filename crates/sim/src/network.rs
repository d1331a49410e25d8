//! The cluster's replication network on turmoil's simulated TCP: the same framing and
//! timeouts as a node's, over links the simulation can delay, drop, hold or cut.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_util::future::BoxFuture;
use tandem_cluster::network::{BoxedConnection, Connection, Listener, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil::net::{TcpListener, TcpStream};

/// Dials peers over the simulated network.
#[derive(Debug)]
pub struct SimTransport;

impl Transport for SimTransport {
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<BoxedConnection>> {
        Box::pin(async move {
            let stream = TcpStream::connect(address).await?;
            Ok(Box::new(SimConnection(stream)) as BoxedConnection)
        })
    }
}

/// Accepts peers on the simulated network.
pub struct SimListener(pub TcpListener);

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxedConnection>> {
        Box::pin(async move {
            let (stream, _peer) = self.0.accept().await?;
            Ok(Box::new(SimConnection(stream)) as BoxedConnection)
        })
    }
}

/// A simulated TCP connection.
pub struct SimConnection(pub TcpStream);

impl fmt::Debug for SimConnection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SimConnection")
    }
}

impl Connection for SimConnection {
    /// Open while nothing is waiting to be read: no end of stream, no unasked bytes.
    fn is_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let mut buffer = ReadBuf::new(&mut probe);
        let mut context = Context::from_waker(Waker::noop());
        matches!(self.0.poll_peek(&mut context, &mut buffer), Poll::Pending)
    }
}

impl AsyncRead for SimConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl AsyncWrite for SimConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buffer)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}
