//! [`replication_frame`]: bytes arriving on a replication connection, read with the codec's
//! own `read_frame` as the node reads them: requests as the replication server reads a
//! peer's (including the raw snapshot bytes that follow an `InstallSnapshot` header), or
//! responses as the client reads a peer's answers.
//!
//! The first byte chooses the side (even: requests, odd: responses); the rest is the stream.
//! Reading from memory never waits, so a decoder that asks for more than the bytes it was
//! given, or that waits at all, fails the check.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serde::de::DeserializeOwned;
use tandem_cluster::codec::read_frame;
use tandem_cluster::network::messages::{Request, Response};

use crate::{Verdict, clear};

/// Reads frames from `data[1..]` until the stream ends or a frame is refused; accepted when
/// it holds at least one frame and ends cleanly between two.
pub fn replication_frame(data: &[u8]) -> Verdict {
    let Some((side, mut stream)) = data.split_first() else {
        return Verdict::Refused;
    };
    if side % 2 == 0 {
        read_all(&mut stream, skip_snapshot_bytes)
    } else {
        read_all(&mut stream, |_: &Response, _: &mut &[u8]| Ok(()))
    }
}

fn read_all<T: DeserializeOwned>(
    stream: &mut &[u8],
    after_frame: impl Fn(&T, &mut &[u8]) -> io::Result<()>,
) -> Verdict {
    let mut frames = 0;
    loop {
        let frame = match ready(read_frame::<_, T>(stream)) {
            Ok(Some(frame)) => frame,
            Ok(None) if frames > 0 => return Verdict::Accepted,
            Ok(None) => return Verdict::Refused,
            Err(error) => return clear(&error.to_string(), "a replication frame"),
        };
        frames += 1;
        if let Err(error) = after_frame(&frame, stream) {
            return clear(&error.to_string(), "a snapshot transfer");
        }
    }
}

/// The server reads exactly `total_bytes` raw snapshot bytes after an `InstallSnapshot`
/// header; a stream that ends first is a failed transfer.
fn skip_snapshot_bytes(request: &Request, stream: &mut &[u8]) -> io::Result<()> {
    let Request::InstallSnapshot { total_bytes, .. } = request else {
        return Ok(());
    };
    match usize::try_from(*total_bytes) {
        Ok(length) if length <= stream.len() => {
            *stream = &stream[length..];
            Ok(())
        }
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the peer announced {total_bytes} snapshot bytes and sent {}",
                stream.len()
            ),
        )),
    }
}

/// Polls a future that reads only from memory: it must finish at once.
fn ready<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("reading frames from memory waited for more input"),
    }
}
