//! Binary event frames (PROTOCOL.md §2.5).
//!
//! ```text
//! byte 0      type (application-defined)
//! bytes 1..4  lengths B, K, A of bucket, key, apiKey
//! bytes 4..   bucket, key, apiKey (UTF-8), zero padding up to byte 127
//! bytes 128.. payload
//! ```

use alloc::string::String;
use alloc::vec::Vec;

/// Size of the fixed header in front of every binary frame.
pub const HEADER_LEN: usize = 128;

/// Longest bucket, key or apiKey an encoder may write (4 + 3·36 ≤ 128).
pub const MAX_NAME_LEN: usize = 36;

/// Why a binary header could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryHeaderError {
    /// The frame is shorter than the 128-byte header (the server drops these).
    #[error("binary frame of {0} bytes is shorter than the 128-byte header")]
    TooShort(usize),
    /// The declared lengths run past the header.
    #[error("binary header lengths {bucket}+{key}+{api_key} overrun the 128-byte header")]
    Overrun {
        /// Declared bucket length.
        bucket: u8,
        /// Declared key length.
        key: u8,
        /// Declared apiKey length.
        api_key: u8,
    },
    /// A name in the header is not valid UTF-8.
    #[error("binary header {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// A name is too long to encode.
    #[error("binary header {field} is {len} bytes long; at most 36 fit")]
    NameTooLong {
        /// Which name: `bucket`, `key` or `apiKey`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

/// The decoded header of a binary frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryHeader {
    /// Application-defined type byte.
    pub kind: u8,
    /// Bucket the event is addressed to.
    pub bucket: String,
    /// Key the event is addressed to.
    pub key: String,
    /// The sender's apiKey (empty when none). **Quirk:** the server relays it
    /// to every subscriber.
    pub api_key: String,
}

impl BinaryHeader {
    /// Decodes the header of `frame` and returns it with the payload.
    pub fn decode(frame: &[u8]) -> Result<(BinaryHeader, &[u8]), BinaryHeaderError> {
        if frame.len() < HEADER_LEN {
            return Err(BinaryHeaderError::TooShort(frame.len()));
        }
        let (b, k, a) = (frame[1], frame[2], frame[3]);
        let end = 4 + usize::from(b) + usize::from(k) + usize::from(a);
        if end > HEADER_LEN {
            return Err(BinaryHeaderError::Overrun {
                bucket: b,
                key: k,
                api_key: a,
            });
        }
        let bucket_end = 4 + usize::from(b);
        let key_end = bucket_end + usize::from(k);
        let text = |field, bytes: &[u8]| {
            core::str::from_utf8(bytes)
                .map(String::from)
                .map_err(|_| BinaryHeaderError::NotUtf8(field))
        };
        let header = BinaryHeader {
            kind: frame[0],
            bucket: text("bucket", &frame[4..bucket_end])?,
            key: text("key", &frame[bucket_end..key_end])?,
            api_key: text("apiKey", &frame[key_end..end])?,
        };
        Ok((header, &frame[HEADER_LEN..]))
    }

    /// Encodes this header followed by `payload` into one frame.
    pub fn encode(&self, payload: &[u8]) -> Result<Vec<u8>, BinaryHeaderError> {
        let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
        self.encode_into(&mut frame)?;
        frame.extend_from_slice(payload);
        Ok(frame)
    }

    /// Appends the 128-byte header to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), BinaryHeaderError> {
        let len = |field, s: &str| {
            if s.len() > MAX_NAME_LEN {
                Err(BinaryHeaderError::NameTooLong {
                    field,
                    len: s.len(),
                })
            } else {
                Ok(s.len() as u8)
            }
        };
        let b = len("bucket", &self.bucket)?;
        let k = len("key", &self.key)?;
        let a = len("apiKey", &self.api_key)?;
        let start = out.len();
        out.extend_from_slice(&[self.kind, b, k, a]);
        out.extend_from_slice(self.bucket.as_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(self.api_key.as_bytes());
        out.resize(start + HEADER_LEN, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_transcript_frame_ws1_step51() {
        let mut h = String::from("01020400623162696e31");
        h.push_str(&"0".repeat(2 * (128 - 10)));
        h.push_str("5041594c4f414421");
        let frame = hex(&h);
        assert_eq!(frame.len(), 136);
        let (hdr, payload) = BinaryHeader::decode(&frame).unwrap();
        assert_eq!(hdr.kind, 1);
        assert_eq!(hdr.bucket, "b1");
        assert_eq!(hdr.key, "bin1");
        assert_eq!(hdr.api_key, "");
        assert_eq!(payload, b"PAYLOAD!");
        assert_eq!(hdr.encode(payload).unwrap(), frame);
    }

    #[test]
    fn rejects_short_overrun_and_bad_utf8() {
        assert_eq!(
            BinaryHeader::decode(&[0u8; 127]),
            Err(BinaryHeaderError::TooShort(127))
        );
        let mut f = [0u8; 128];
        f[1] = 100;
        f[2] = 20;
        f[3] = 5;
        assert!(matches!(
            BinaryHeader::decode(&f),
            Err(BinaryHeaderError::Overrun { .. })
        ));
        let mut f = [0u8; 128];
        f[1] = 1;
        f[4] = 0xff;
        assert_eq!(
            BinaryHeader::decode(&f),
            Err(BinaryHeaderError::NotUtf8("bucket"))
        );
    }

    #[test]
    fn refuses_long_names() {
        let h = BinaryHeader {
            kind: 0,
            bucket: "b".repeat(37),
            key: String::new(),
            api_key: String::new(),
        };
        assert_eq!(
            h.encode(b""),
            Err(BinaryHeaderError::NameTooLong {
                field: "bucket",
                len: 37
            })
        );
    }
}
