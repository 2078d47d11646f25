//! The one wire codec between nodes: a two-byte version, then the message
//! in bincode 2 (serde), bounded in size.
//!
//! Rolling upgrades: a node decodes every version from
//! [`OLDEST_VERSION`] to [`VERSION`]. Within one version, enums only grow
//! at the end and structs never change; a change that breaks that bumps
//! [`VERSION`], and the node keeps decoding the previous one until no
//! node of that release is left. An undecodable message is an error for
//! the caller to count and drop, never a panic.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The wire version this node writes.
pub const VERSION: u16 = 1;
/// The oldest wire version this node still reads.
pub const OLDEST_VERSION: u16 = 1;
/// The largest message body, in bytes, either way.
pub const MAX_MESSAGE: usize = 1 << 20;

type Config = Configuration<LittleEndian, Varint, Limit<MAX_MESSAGE>>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE>()
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("message too short for its version header ({0} bytes)")]
    Truncated(usize),
    #[error("wire version {0}; this node reads {OLDEST_VERSION} to {VERSION}")]
    Version(u16),
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("{0} bytes left over after the message")]
    Trailing(usize),
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// `message` as it goes on the wire.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = VERSION.to_le_bytes().to_vec();
    let body = bincode::serde::encode_to_vec(message, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if body.len() > MAX_MESSAGE {
        return Err(CodecError::TooLarge(body.len()));
    }
    out.extend_from_slice(&body);
    Ok(out)
}

/// A message from the wire, with the version it was written in.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(u16, T), CodecError> {
    let (head, body) = match bytes {
        [a, b, body @ ..] => (u16::from_le_bytes([*a, *b]), body),
        _ => return Err(CodecError::Truncated(bytes.len())),
    };
    if !(OLDEST_VERSION..=VERSION).contains(&head) {
        return Err(CodecError::Version(head));
    }
    if body.len() > MAX_MESSAGE {
        return Err(CodecError::TooLarge(body.len()));
    }
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(body, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok((head, value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping { seq: u64, from: String },
        Names(Vec<String>),
        Empty,
    }

    #[test]
    fn round_trips() {
        let m = Msg::Ping {
            seq: 7,
            from: "a".into(),
        };
        let bytes = encode(&m).unwrap();
        assert_eq!(&bytes[..2], &VERSION.to_le_bytes());
        assert_eq!(decode::<Msg>(&bytes).unwrap(), (VERSION, m));
    }

    #[test]
    fn refuses_other_versions_short_input_and_leftovers() {
        let mut bytes = encode(&Msg::Empty).unwrap();
        assert_eq!(decode::<Msg>(&bytes[..1]), Err(CodecError::Truncated(1)));
        bytes[0] = 9;
        assert_eq!(decode::<Msg>(&bytes), Err(CodecError::Version(9)));
        let mut bytes = encode(&Msg::Empty).unwrap();
        bytes.push(0);
        assert_eq!(decode::<Msg>(&bytes), Err(CodecError::Trailing(1)));
        // An enum variant this release does not know.
        let mut bytes = encode(&Msg::Empty).unwrap();
        bytes[2] = 40;
        assert!(matches!(decode::<Msg>(&bytes), Err(CodecError::Decode(_))));
    }

    #[test]
    fn bounds_sizes_both_ways() {
        let big = Msg::Names(vec!["x".repeat(1 << 16); 20]);
        assert!(matches!(
            encode(&big),
            Err(CodecError::Encode(_)) | Err(CodecError::TooLarge(_))
        ));
        // A length prefix claiming far more than the limit.
        let mut bytes = VERSION.to_le_bytes().to_vec();
        bytes.push(1); // Names
        bytes.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(decode::<Msg>(&bytes), Err(CodecError::Decode(_))));
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Msg>(&bytes);
        }

        #[test]
        fn any_message_round_trips(seq in any::<u64>(), from in ".{0,40}") {
            let m = Msg::Ping { seq, from };
            prop_assert_eq!(decode::<Msg>(&encode(&m).unwrap()).unwrap().1, m);
        }
    }
}
