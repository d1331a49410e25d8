//! The binary encoding of log entries, snapshots' metadata and replication messages
//! (MessagePack: self-describing, so every serde shape core uses round-trips), and
//! length-prefixed frames on a byte stream, bounded by [`MAX_REPLICATION_FRAME_BYTES`] (a
//! connection reuses one [`FrameBuffer`] for its frames).

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tandem_core::limits::MAX_REPLICATION_FRAME_BYTES;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    rmp_serde::to_vec(value).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    rmp_serde::from_slice(bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// A connection keeps the buffer of a frame up to this size for its next frame; a larger
/// one is freed after use.
const RETAINED_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// A connection's frame buffer, reused from frame to frame, so that a multi-megabyte
/// AppendEntries neither allocates nor faults in freshly zeroed pages every time.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    bytes: Vec<u8>,
}

impl FrameBuffer {
    fn release_if_large(&mut self) {
        if self.bytes.capacity() > RETAINED_FRAME_BYTES {
            self.bytes = Vec::new();
        }
    }
}

/// Writes one frame: a 4-byte big-endian length, then the encoded value.
pub async fn write_frame<W, T>(writer: &mut W, value: &T) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    write_frame_with(writer, value, &mut FrameBuffer::default()).await
}

/// [`write_frame`], encoding into `buffer`.
pub async fn write_frame_with<W, T>(
    writer: &mut W,
    value: &T,
    buffer: &mut FrameBuffer,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let written = write_encoded(writer, value, &mut buffer.bytes).await;
    buffer.release_if_large();
    written
}

async fn write_encoded<W, T>(writer: &mut W, value: &T, bytes: &mut Vec<u8>) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    bytes.clear();
    bytes.extend_from_slice(&[0; 4]);
    rmp_serde::encode::write(bytes, value)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    let length = bytes.len() - 4;
    if length > MAX_REPLICATION_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {length} bytes exceeds {MAX_REPLICATION_FRAME_BYTES}"),
        ));
    }
    bytes[..4].copy_from_slice(&(length as u32).to_be_bytes());
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` when the peer closed the stream between frames.
pub async fn read_frame<R, T>(reader: &mut R) -> io::Result<Option<T>>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    read_frame_with(reader, &mut FrameBuffer::default()).await
}

/// [`read_frame`], reading into `buffer`.
pub async fn read_frame_with<R, T>(
    reader: &mut R,
    buffer: &mut FrameBuffer,
) -> io::Result<Option<T>>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let read = read_into(reader, &mut buffer.bytes).await;
    buffer.release_if_large();
    read
}

async fn read_into<R, T>(reader: &mut R, bytes: &mut Vec<u8>) -> io::Result<Option<T>>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_REPLICATION_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer sent a frame of {length} bytes, more than {MAX_REPLICATION_FRAME_BYTES}"),
        ));
    }
    // The buffer keeps its length from frame to frame: only bytes never used before are
    // zeroed.
    if bytes.len() < length {
        bytes.resize(length, 0);
    }
    let frame = &mut bytes[..length];
    reader.read_exact(frame).await?;
    decode(frame).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::value::Value;

    #[test]
    fn adjacently_tagged_values_round_trip() {
        let values = vec![Value::Int(7), Value::String("x".into()), Value::Bool(true)];
        let bytes = encode(&values).unwrap();
        let back: Vec<Value> = decode(&bytes).unwrap();
        assert_eq!(back, values);
    }

    #[tokio::test]
    async fn frames_round_trip_and_refuse_oversized_lengths() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, &"hello".to_string())
            .await
            .unwrap();
        let mut reader = &buffer[..];
        let text: Option<String> = read_frame(&mut reader).await.unwrap();
        assert_eq!(text.as_deref(), Some("hello"));
        let empty: Option<String> = read_frame(&mut reader).await.unwrap();
        assert!(empty.is_none());
        let huge = (u32::MAX).to_be_bytes();
        let error = read_frame::<_, String>(&mut &huge[..]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_reused_frame_buffer_gives_back_each_frame_whatever_came_before() {
        let frames = [
            "x".repeat(100_000),
            "short".to_string(),
            String::new(),
            "y".repeat(5_000),
        ];
        let mut stream = Vec::new();
        let mut buffer = FrameBuffer::default();
        for frame in &frames {
            write_frame_with(&mut stream, frame, &mut buffer)
                .await
                .unwrap();
        }
        assert!(buffer.bytes.capacity() >= 100_000, "the buffer is kept");
        let mut reader = &stream[..];
        let mut buffer = FrameBuffer::default();
        for frame in &frames {
            let read: Option<String> = read_frame_with(&mut reader, &mut buffer).await.unwrap();
            assert_eq!(read.as_ref(), Some(frame));
        }
        let end: Option<String> = read_frame_with(&mut reader, &mut buffer).await.unwrap();
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn a_frame_buffer_larger_than_the_retained_size_is_freed_after_use() {
        let large = "z".repeat(RETAINED_FRAME_BYTES + 1);
        let mut stream = Vec::new();
        let mut buffer = FrameBuffer::default();
        write_frame_with(&mut stream, &large, &mut buffer)
            .await
            .unwrap();
        assert_eq!(buffer.bytes.capacity(), 0);
        let read: Option<String> = read_frame_with(&mut &stream[..], &mut buffer)
            .await
            .unwrap();
        assert_eq!(read.map(|text| text.len()), Some(large.len()));
        assert_eq!(buffer.bytes.capacity(), 0);
    }
}
