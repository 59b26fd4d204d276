//! The client's error type.

use cachearoo_core::{OpError, SendError};

use crate::messaging::MessagingError;

/// Everything a client call can fail with.
///
/// Operation failures from the protocol (not found, already exists, not
/// authorized, timeout, ...) come as [`Error::Op`]; messages without an
/// answer (signals, binary events, pings) as [`Error::Send`]. A client that
/// was closed, or whose driver has ended, fails with `Op(OpError::Closed)`
/// or `Send(SendError::Closed)`: see [`Error::is_closed`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A datastore operation failed.
    #[error(transparent)]
    Op(#[from] OpError),
    /// A signal, binary event or ping could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The value to send could not be turned into JSON.
    #[error("could not serialize the value: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The value received does not fit the requested type.
    #[error("could not deserialize the value: {0}")]
    Deserialize(#[source] serde_json::Error),
    /// A certificate given in the TLS options could not be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// A request, job or other messaging call failed (see [`crate::messaging`]).
    #[error(transparent)]
    Messaging(#[from] MessagingError),
}

impl Error {
    /// The operation error, if this is one.
    pub fn op_error(&self) -> Option<&OpError> {
        match self {
            Error::Op(e) => Some(e),
            _ => None,
        }
    }

    /// The key (or its bucket) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Op(OpError::NotFound))
    }

    /// A `fail_if_exists` write found the key already there.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Op(OpError::AlreadyExists))
    }

    /// The apiKey is wrong or missing.
    pub fn is_not_authorized(&self) -> bool {
        matches!(self, Error::Op(OpError::NotAuthorized))
    }

    /// The operation got no answer within the request timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Op(OpError::Timeout))
    }

    /// The client was closed (or all its handles dropped) before an answer.
    pub fn is_closed(&self) -> bool {
        matches!(
            self,
            Error::Op(OpError::Closed)
                | Error::Send(SendError::Closed)
                | Error::Messaging(MessagingError::Closed)
        )
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
