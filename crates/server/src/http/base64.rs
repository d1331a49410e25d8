//! Standard base64 (RFC 4648, `+` and `/`, `=` padding) for message bodies in JSON. The
//! decoder also accepts unpadded text and names the offset of the first bad character.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const PADDING: u8 = b'=';
/// Padding characters a valid text ends with at most.
const MAX_PADDING: usize = 2;

pub fn encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte_at = |index: usize| u32::from(chunk.get(index).copied().unwrap_or(0));
        let group = (byte_at(0) << 16) | (byte_at(1) << 8) | byte_at(2);
        for position in 0..4 {
            if position <= chunk.len() {
                let sextet = (group >> (18 - 6 * position)) & 0x3f;
                text.push(char::from(ALPHABET[sextet as usize]));
            } else {
                text.push(char::from(PADDING));
            }
        }
    }
    text
}

pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let data = strip_padding(bytes)?;
    let mut decoded = Vec::with_capacity(data.len() / 4 * 3 + 2);
    let mut buffer: u32 = 0;
    let mut buffered_bits = 0;
    for (offset, &character) in data.iter().enumerate() {
        let sextet = sextet(character).ok_or_else(|| {
            format!(
                "invalid character {:?} at offset {offset}",
                char::from(character)
            )
        })?;
        buffer = (buffer << 6) | u32::from(sextet);
        buffered_bits += 6;
        if buffered_bits >= 8 {
            buffered_bits -= 8;
            decoded.push((buffer >> buffered_bits) as u8);
            buffer &= (1 << buffered_bits) - 1;
        }
    }
    if data.len() % 4 == 1 {
        return Err(format!("{} characters cannot be base64", data.len()));
    }
    Ok(decoded)
}

fn strip_padding(bytes: &[u8]) -> Result<&[u8], String> {
    let data_length = bytes.len()
        - bytes
            .iter()
            .rev()
            .take_while(|&&byte| byte == PADDING)
            .count();
    let padding = bytes.len() - data_length;
    if padding == 0 {
        return Ok(bytes);
    }
    if padding > MAX_PADDING || !bytes.len().is_multiple_of(4) {
        return Err(format!("misplaced '=' padding at offset {data_length}"));
    }
    Ok(&bytes[..data_length])
}

fn sextet(character: u8) -> Option<u8> {
    match character {
        b'A'..=b'Z' => Some(character - b'A'),
        b'a'..=b'z' => Some(character - b'a' + 26),
        b'0'..=b'9' => Some(character - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_round_trip() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(decode(encoded).as_deref(), Ok(plain.as_bytes()));
        }
    }

    #[test]
    fn every_byte_value_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&bytes)), Ok(bytes));
    }

    #[test]
    fn unpadded_text_is_accepted() {
        assert_eq!(decode("Zm8").as_deref(), Ok(&b"fo"[..]));
    }

    #[test]
    fn bad_text_names_the_offset() {
        assert!(decode("Zm9v!").unwrap_err().contains("offset 4"));
        assert!(decode("Z").is_err());
        assert!(decode("Zg===").is_err());
        assert!(decode("Zg=").is_err());
    }
}
