//! How a message's context is stored: a compact binary encoding (format version 4 on).
//!
//! The committer encodes every published message's context and decodes it again for every
//! lease; as JSON that was about 8 % of its time in an end-to-end load. The encoding:
//!
//! ```text
//! context  = 0x01 (the encoding's version), varint property count, property*
//! property = varint name length, name (UTF-8), tag, payload
//! tag      = value type (1 string, 2 int, 3 float, 4 bool, 5 timestamp) | 0x80 if promoted
//! payload  = string: varint length, UTF-8 bytes
//!          | int, timestamp: 8 bytes little endian (two's complement)
//!          | float: 8 bytes little endian (IEEE 754 bits)
//!          | bool: one byte, 0 or 1
//! ```
//!
//! Properties are written in name order; a name that appears twice is refused. Stores
//! written before version 4 hold JSON text; [`decode_stored`] reads both, so that no upgrade
//! has to re-encode them.

use tandem_core::context::{Context, Property};
use tandem_core::value::Value;

const ENCODING_VERSION: u8 = 1;
const PROMOTED: u8 = 0x80;
const STRING: u8 = 1;
const INT: u8 = 2;
const FLOAT: u8 = 3;
const BOOL: u8 = 4;
const TIMESTAMP: u8 = 5;

/// The binary encoding of `context`.
pub fn encode(context: &Context) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64);
    bytes.push(ENCODING_VERSION);
    put_varint(&mut bytes, context.len() as u64);
    for (name, value, promoted) in context.entries() {
        put_bytes(&mut bytes, name.as_bytes());
        let promoted = if promoted { PROMOTED } else { 0 };
        match value {
            Value::String(text) => {
                bytes.push(STRING | promoted);
                put_bytes(&mut bytes, text.as_bytes());
            }
            Value::Int(number) => {
                bytes.push(INT | promoted);
                bytes.extend_from_slice(&number.to_le_bytes());
            }
            Value::Float(number) => {
                bytes.push(FLOAT | promoted);
                bytes.extend_from_slice(&number.to_bits().to_le_bytes());
            }
            Value::Bool(flag) => {
                bytes.push(BOOL | promoted);
                bytes.push(u8::from(*flag));
            }
            Value::Timestamp(millis) => {
                bytes.push(TIMESTAMP | promoted);
                bytes.extend_from_slice(&millis.to_le_bytes());
            }
        }
    }
    bytes
}

/// A stored context: binary (format 4 on) or JSON text (written by earlier formats).
pub fn decode_stored(stored: rusqlite::types::ValueRef<'_>) -> Result<Context, String> {
    match stored {
        rusqlite::types::ValueRef::Blob(bytes) => decode(bytes),
        rusqlite::types::ValueRef::Text(text) => {
            serde_json::from_slice(text).map_err(|error| format!("context JSON: {error}"))
        }
        other => Err(format!(
            "a context is a blob or text, not {}",
            other.data_type()
        )),
    }
}

/// Decodes [`encode`]'s output; any other input is an error, never a panic.
pub fn decode(bytes: &[u8]) -> Result<Context, String> {
    let mut reader = Reader { bytes, at: 0 };
    let version = reader.byte()?;
    if version != ENCODING_VERSION {
        return Err(format!("unknown context encoding {version}"));
    }
    let count = reader.varint()?;
    let mut context = Context::new();
    for _ in 0..count {
        let name = reader.text()?;
        let tag = reader.byte()?;
        let value = match tag & !PROMOTED {
            STRING => Value::String(reader.text()?),
            INT => Value::Int(i64::from_le_bytes(reader.array()?)),
            FLOAT => Value::Float(f64::from_bits(u64::from_le_bytes(reader.array()?))),
            BOOL => match reader.byte()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => return Err(format!("a bool is 0 or 1, not {other}")),
            },
            TIMESTAMP => Value::Timestamp(i64::from_le_bytes(reader.array()?)),
            other => return Err(format!("unknown context value type {other}")),
        };
        let before = context.len();
        context.insert(Property {
            name,
            value,
            promoted: tag & PROMOTED != 0,
        });
        if context.len() == before {
            return Err("a context property appears twice".to_string());
        }
    }
    if reader.at != bytes.len() {
        return Err(format!(
            "{} bytes after the context's last property",
            bytes.len() - reader.at
        ));
    }
    Ok(context)
}

fn put_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

fn put_bytes(bytes: &mut Vec<u8>, data: &[u8]) {
    put_varint(bytes, data.len() as u64);
    bytes.extend_from_slice(data);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| "the context ends early".to_string())?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("a length in the context is too long".to_string())
    }

    fn text(&mut self) -> Result<String, String> {
        let length = usize::try_from(self.varint()?).map_err(|error| error.to_string())?;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "context text is not UTF-8".to_string())
    }
}
