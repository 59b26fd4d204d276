//! The wire codec: every frame of PROTOCOL.md in both directions.
//!
//! Shared by the client state machine and by `cachearoo-server`, so that
//! there is exactly one codec. Decoding is tolerant where the reference is
//! loose (ids of any JSON type, `null` or absent fields, errors as `{}`,
//! objects or strings) and strict where it must be (binary headers).

mod binary;
mod client_msg;
pub(crate) mod json;
mod list;
mod server_msg;

pub use binary::{BinaryHeader, BinaryHeaderError, HEADER_LEN, MAX_NAME_LEN};
pub use client_msg::{ClientMessage, Op, Request, SignalEvent, Subscription, EXPIRE_SESSION};
pub use json::{coerce_string, truthy};
pub use list::{Expire, ListItem};
pub use server_msg::{ChangeEvent, Outcome, Response, ServerMessage, WireError};

/// Why a text frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The text is not JSON.
    #[error("frame is not valid JSON")]
    NotJson,
    /// The JSON is not an object.
    #[error("frame is not a JSON object")]
    NotAnObject,
    /// A JSON object of no known kind, or with a field of the wrong type.
    #[error("frame has an unknown shape")]
    WrongShape,
}
