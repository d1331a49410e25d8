//! The binary encoding of log entries, snapshots' metadata and replication messages
//! (MessagePack: self-describing, so every serde shape core uses round-trips), and
//! length-prefixed frames on a byte stream, bounded by [`MAX_REPLICATION_FRAME_BYTES`].

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

/// Writes one frame: a 4-byte big-endian length, then the encoded value.
pub async fn write_frame<W, T>(writer: &mut W, value: &T) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = encode(value)?;
    if bytes.len() > MAX_REPLICATION_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes exceeds {MAX_REPLICATION_FRAME_BYTES}",
                bytes.len()
            ),
        ));
    }
    writer
        .write_all(&(bytes.len() as u32).to_be_bytes())
        .await?;
    writer.write_all(&bytes).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` when the peer closed the stream between frames.
pub async fn read_frame<R, T>(reader: &mut R) -> io::Result<Option<T>>
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
    let mut bytes = vec![0u8; length];
    reader.read_exact(&mut bytes).await?;
    decode(&bytes).map(Some)
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
}
