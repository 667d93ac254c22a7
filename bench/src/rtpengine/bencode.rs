//! Bencode, the encoding of rtpengine's ng control protocol: byte strings
//! (`4:spam`), integers (`i42e`), lists (`l…e`) and dictionaries (`d…e`,
//! keys are byte strings in sorted order).
//!
//! [`Value::encode`] writes into the caller's buffer; [`decode`] parses one
//! complete value and refuses trailing bytes. Decoding is bounded in depth
//! and never panics on any input: it is fed what comes off a socket.

use std::collections::BTreeMap;

/// Nesting deeper than this is refused (ng replies nest two or three).
const MAX_DEPTH: usize = 32;

/// One bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A byte string (usually UTF-8 text in ng messages).
    Bytes(Vec<u8>),
    /// An integer.
    Int(i64),
    /// A list.
    List(Vec<Self>),
    /// A dictionary; `BTreeMap` keeps the keys in the sorted order bencode
    /// requires.
    Dict(BTreeMap<Vec<u8>, Self>),
}

/// Why bytes are not one bencoded value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input ended inside a value.
    #[error("bencode ends early at byte {at}")]
    Truncated {
        /// Offset where more input was needed.
        at: usize,
    },
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte {byte:#04x} at {at} in bencode")]
    Unexpected {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// An integer or string length that is not a valid number.
    #[error("bad number at byte {at} in bencode")]
    BadNumber {
        /// Offset of the number.
        at: usize,
    },
    /// A dictionary key that is not a byte string.
    #[error("dictionary key at byte {at} is not a string")]
    KeyNotString {
        /// Offset of the key.
        at: usize,
    },
    /// Deeper nesting than the decoder allows (32 levels).
    #[error("bencode nests deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Bytes after the value.
    #[error("{count} bytes after the bencoded value")]
    Trailing {
        /// How many.
        count: usize,
    },
}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Self {
        Self::Bytes(s.as_bytes().to_vec())
    }

    /// A list of byte strings from text.
    pub fn str_list(items: &[&str]) -> Self {
        Self::List(items.iter().map(|s| Self::str(s)).collect())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Self)>) -> Self {
        Self::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The value under `key`, if this is a dictionary holding it.
    pub fn field(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Dict(map) => map.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The text of a byte string (`None`: not a string, or not UTF-8).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Self::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Self::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            Self::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    Self::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Parses `input` as exactly one bencoded value.
pub fn decode(input: &[u8]) -> Result<Value, BencodeError> {
    let mut parser = Parser { input, at: 0 };
    let value = parser.value(0)?;
    match input.len() - parser.at {
        0 => Ok(value),
        count => Err(BencodeError::Trailing { count }),
    }
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.at)
            .copied()
            .ok_or(BencodeError::Truncated { at: self.at })
    }

    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        match self.peek()? {
            b'i' => {
                self.at += 1;
                let start = self.at;
                let text = self.until(b'e')?;
                // Bencode forbids "-0", leading zeros and an empty number.
                let canonical = matches!(text, b"0" | [b'-', b'1'..=b'9', ..] | [b'1'..=b'9', ..]);
                let n = std::str::from_utf8(text)
                    .ok()
                    .filter(|_| canonical)
                    .and_then(|s| s.parse().ok())
                    .ok_or(BencodeError::BadNumber { at: start })?;
                Ok(Value::Int(n))
            }
            b'l' => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.at += 1;
                let mut map = BTreeMap::new();
                while self.peek()? != b'e' {
                    let key_at = self.at;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotString { at: key_at });
                    }
                    let key = self.bytes()?;
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                }
                self.at += 1;
                Ok(Value::Dict(map))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            byte => Err(BencodeError::Unexpected { byte, at: self.at }),
        }
    }

    /// A `<len>:<bytes>` string.
    fn bytes(&mut self) -> Result<Vec<u8>, BencodeError> {
        let start = self.at;
        let digits = self.until(b':')?;
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(BencodeError::BadNumber { at: start })?;
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or(BencodeError::Truncated {
                at: self.input.len(),
            })?;
        let bytes = self.input[self.at..end].to_vec();
        self.at = end;
        Ok(bytes)
    }

    /// The bytes up to `stop`, consuming `stop` too.
    fn until(&mut self, stop: u8) -> Result<&[u8], BencodeError> {
        let rest = &self.input[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == stop)
            .ok_or(BencodeError::Truncated {
                at: self.input.len(),
            })?;
        let text = &rest[..len];
        self.at += len + 1;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn encodes_the_four_kinds() {
        assert_eq!(encoded(&Value::str("spam")), b"4:spam");
        assert_eq!(encoded(&Value::Int(-3)), b"i-3e");
        assert_eq!(encoded(&Value::str_list(&["a", "bc"])), b"l1:a2:bce");
        let d = Value::dict([("z", Value::Int(1)), ("a", Value::str(""))]);
        assert_eq!(encoded(&d), b"d1:a0:1:zi1ee");
    }

    #[test]
    fn round_trips_a_nested_ng_message() {
        let msg = Value::dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("c1")),
            (
                "replace",
                Value::str_list(&["origin", "session-connection"]),
            ),
            ("sdp", Value::str("v=0\r\nm=audio 1 RTP/SAVP 111\r\n")),
            ("n", Value::Int(i64::MIN)),
            (
                "nested",
                Value::List(vec![Value::dict([("x", Value::Int(0))])]),
            ),
        ]);
        let bytes = encoded(&msg);
        assert_eq!(decode(&bytes), Ok(msg.clone()));
        assert_eq!(msg.field("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(msg.field("missing"), None);
    }

    #[test]
    fn decodes_a_real_rtpengine_reply() {
        let v = decode(b"d6:result4:ponge").unwrap();
        assert_eq!(v.field("result").and_then(Value::as_str), Some("pong"));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b"i12",
            b"ie",
            b"i-0e",
            b"i03e",
            b"i1x2e",
            b"i99999999999999999999e",
            b"5:abc",
            b"99999999999999999999999:a",
            b"-1:a",
            b":a",
            b"l",
            b"l1:a",
            b"d1:a",
            b"di1ei2ee",
            b"d1:ae",
            b"x",
            b"4:spamX",
            b"le1",
        ];
        for case in cases {
            assert!(
                decode(case).is_err(),
                "{:?} decoded",
                String::from_utf8_lossy(case)
            );
        }
        assert_eq!(decode(b"d1:a"), Err(BencodeError::Truncated { at: 4 }));
        assert_eq!(
            decode(b"d1:ae"),
            Err(BencodeError::Unexpected { byte: b'e', at: 4 })
        );
        assert_eq!(decode(b"i1ei2e"), Err(BencodeError::Trailing { count: 3 }));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut deep = vec![b'l'; 100_000];
        deep.extend(std::iter::repeat_n(b'e', 100_000));
        assert_eq!(decode(&deep), Err(BencodeError::TooDeep));
    }

    #[test]
    fn no_prefix_of_a_message_panics_or_decodes() {
        let msg = Value::dict([
            ("result", Value::str("ok")),
            ("list", Value::List(vec![Value::Int(7), Value::str("x")])),
        ]);
        let bytes = encoded(&msg);
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_err());
        }
        // Every single-byte corruption either errors or decodes; none panics.
        for i in 0..bytes.len() {
            for b in [0u8, b'e', b'i', b'l', b'd', b':', b'9', 0xff] {
                let mut m = bytes.clone();
                m[i] = b;
                let _ = decode(&m);
            }
        }
    }
}
