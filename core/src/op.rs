//! Datastore operations: what the application asks, what it gets back, and
//! how the reference's loose error answers map onto typed errors.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::Value;

use crate::wire::{self, ListItem, Outcome, WireError};

/// Identifies one operation from submission to its single completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// A datastore operation (PROTOCOL.md §2.1, §6).
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Read one key; an empty key reads the whole bucket as a list with content.
    Read {
        /// Key to read (empty: the whole bucket).
        key: String,
    },
    /// List the keys of a bucket.
    List {
        /// Leave `content` out (default `true`).
        keys_only: bool,
        /// Only keys starting with this prefix.
        filter: Option<String>,
    },
    /// Write a value.
    Write {
        /// Key to write; empty lets the server generate one (returned in the reply).
        key: String,
        /// The value; `None` writes a record without content.
        value: Option<Value>,
        /// Fail with [`OpError::AlreadyExists`] when the key exists.
        fail_if_exists: bool,
        /// Remove the key when this connection closes (WebSocket only).
        expire_session: bool,
    },
    /// Apply an RFC 6902 JSON patch.
    Patch {
        /// Key to patch.
        key: String,
        /// The patch document (an array of operations).
        patch: Value,
        /// Answer `{}` instead of the patched document.
        remove_data_from_reply: bool,
    },
    /// Remove a key (a missing key still succeeds).
    Remove {
        /// Key to remove.
        key: String,
    },
}

impl Operation {
    /// Whether repeating the operation cannot change the store: such an
    /// operation is retried over REST when its socket drops mid-flight.
    pub fn is_idempotent_read(&self) -> bool {
        matches!(self, Operation::Read { .. } | Operation::List { .. })
    }

    /// Short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Read { .. } => "read",
            Operation::List { .. } => "list",
            Operation::Write { .. } => "write",
            Operation::Patch { .. } => "patch",
            Operation::Remove { .. } => "remove",
        }
    }

    /// Takes the payload out (the written value, the patch document): once
    /// the request is on its way, an operation waiting for its answer needs
    /// only its kind, key and flags.
    pub fn take_payload(&mut self) -> Option<Value> {
        match self {
            Operation::Write { value, .. } => value.take(),
            Operation::Patch { patch, .. } => Some(core::mem::take(patch)),
            _ => None,
        }
    }

    /// The wire request for this operation, and the operation without its
    /// payload (moved into the request rather than cloned).
    pub fn into_wire(mut self, id: Value, bucket: &str) -> (wire::Request, Operation) {
        let payload = self.take_payload();
        let mut request = self.to_wire(id, bucket);
        match &mut request.op {
            wire::Op::Write { value, .. } => *value = payload,
            wire::Op::Patch { patch, .. } => *patch = payload,
            _ => {}
        }
        (request, self)
    }

    /// The wire request for this operation.
    pub fn to_wire(&self, id: Value, bucket: &str) -> wire::Request {
        let key = |k: &str| Some(String::from(k));
        let op = match self {
            Operation::Read { key: k } => wire::Op::Read {
                key: if k.is_empty() { None } else { key(k) },
            },
            Operation::List { keys_only, filter } => wire::Op::Filter {
                keys_only: *keys_only,
                filter: filter.clone(),
            },
            Operation::Write {
                key: k,
                value,
                fail_if_exists,
                expire_session,
            } => wire::Op::Write {
                key: if k.is_empty() { None } else { key(k) },
                value: value.clone(),
                fail_if_exists: *fail_if_exists,
                expire: expire_session.then(|| String::from(wire::EXPIRE_SESSION)),
            },
            Operation::Patch {
                key: k,
                patch,
                remove_data_from_reply,
            } => wire::Op::Patch {
                key: key(k),
                patch: Some(patch.clone()),
                remove_data_from_reply: *remove_data_from_reply,
            },
            Operation::Remove { key: k } => wire::Op::Remove { key: key(k) },
        };
        wire::Request {
            id: Some(id),
            bucket: String::from(bucket),
            op,
        }
    }
}

/// Per-operation options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpOptions {
    /// Bucket for this operation instead of the configured default.
    pub bucket: Option<String>,
    /// Always use REST, even while the WebSocket is connected.
    pub force_http: bool,
}

/// The successful result of an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A read of one key: its value, or `None` when it was stored without one.
    Value(Option<Value>),
    /// A list, or a read of a whole bucket.
    List(Vec<ListItem>),
    /// A write: the key written (the generated one for an empty key).
    Written {
        /// The key.
        key: String,
    },
    /// A patch: the patched document (`{}` with `remove_data_from_reply`).
    Patched(Value),
    /// A remove.
    Removed,
}

/// Why an operation failed. Every operation ends exactly once, in a
/// [`Reply`] or one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The key (or its bucket) does not exist.
    #[error("not found")]
    NotFound,
    /// A `fail_if_exists` write found the key already there.
    #[error("key already exists")]
    AlreadyExists,
    /// The apiKey is missing or wrong.
    #[error("not authorized (wrong or missing apiKey)")]
    NotAuthorized,
    /// The server refused the patch.
    #[error("invalid patch: {message}")]
    InvalidPatch {
        /// The server's message.
        message: String,
    },
    /// No answer within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The WebSocket closed while the request was in flight; it may or may
    /// not have been applied.
    #[error("disconnected while the request was in flight")]
    Disconnected,
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// The request cannot be sent this way (e.g. a scalar or session write over REST).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The HTTP request failed before an answer (connection refused, reset, ...).
    #[error("transport error: {message}")]
    Transport {
        /// What the driver reported.
        message: String,
    },
    /// Any other error the server reported.
    #[error("server error: {message}")]
    Server {
        /// The server's message (or its error JSON as text).
        message: String,
    },
    /// The answer could not be understood.
    #[error("protocol error: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
    },
}

/// The reference's error text for a wrong apiKey.
const NOT_AUTHORIZED: &str = "Not authorized";

/// Patch error names of the reference (json-patch library errors).
const PATCH_ERROR_NAMES: [&str; 3] = ["InvalidPatch", "PatchConflictError", "PatchTestFailed"];

/// Turns a WebSocket response into the operation's typed result.
///
/// The reference serialises most errors as `{}`, so the operation decides:
/// a failed `fail_if_exists` write means "already exists", a failed read,
/// patch or remove means "not found" unless the error says otherwise.
pub fn ws_result(op: &Operation, sent_key: &str, outcome: Outcome) -> Result<Reply, OpError> {
    match outcome {
        Outcome::Ok { value, location } => ok_result(op, sent_key, value, location.as_deref()),
        Outcome::Err(e) => Err(ws_error(op, e)),
    }
}

fn ws_error(op: &Operation, e: WireError) -> OpError {
    if let WireError::Text(t) = &e {
        if t.starts_with(NOT_AUTHORIZED) {
            return OpError::NotAuthorized;
        }
    }
    if let WireError::Object {
        message,
        name,
        code,
    } = &e
    {
        // Our server's typed codes first, then the reference's patch errors.
        match code.as_deref() {
            Some("ENOTFOUND") => return OpError::NotFound,
            Some("EEXISTS") => return OpError::AlreadyExists,
            Some("ENOTAUTHORIZED") => return OpError::NotAuthorized,
            Some("EINVALIDPATCH") => {
                return OpError::InvalidPatch {
                    message: message.clone().unwrap_or_default(),
                }
            }
            _ => {}
        }
        if name
            .as_deref()
            .is_some_and(|n| PATCH_ERROR_NAMES.contains(&n))
        {
            return OpError::InvalidPatch {
                message: message.clone().unwrap_or_default(),
            };
        }
    }
    match (op, &e) {
        (
            Operation::Write {
                fail_if_exists: true,
                ..
            },
            WireError::Empty,
        ) => OpError::AlreadyExists,
        (
            Operation::Read { .. } | Operation::Patch { .. } | Operation::Remove { .. },
            WireError::Empty,
        ) => OpError::NotFound,
        _ => OpError::Server {
            message: match e.message() {
                Some(m) => String::from(m),
                None => serde_json::to_string(&e).unwrap_or_default(),
            },
        },
    }
}

/// The reply of a successful operation from the answer's fields.
pub(crate) fn ok_result(
    op: &Operation,
    sent_key: &str,
    value: Option<Value>,
    location: Option<&str>,
) -> Result<Reply, OpError> {
    match op {
        Operation::Read { key } if key.is_empty() => list_reply(value),
        Operation::List { .. } => list_reply(value),
        Operation::Read { .. } => Ok(Reply::Value(value)),
        Operation::Write { .. } => Ok(Reply::Written {
            key: match location {
                Some(loc) => key_from_location(loc).unwrap_or(sent_key).to_string(),
                None if !sent_key.is_empty() => String::from(sent_key),
                None => {
                    return Err(OpError::Protocol {
                        message: String::from("write answer without location"),
                    })
                }
            },
        }),
        Operation::Patch { .. } => Ok(Reply::Patched(value.unwrap_or(Value::Null))),
        Operation::Remove { .. } => Ok(Reply::Removed),
    }
}

fn list_reply(value: Option<Value>) -> Result<Reply, OpError> {
    match value {
        Some(v @ Value::Array(_)) => {
            serde_json::from_value(v)
                .map(Reply::List)
                .map_err(|_| OpError::Protocol {
                    message: String::from("list items of the wrong shape"),
                })
        }
        None | Some(Value::Null) => Ok(Reply::List(Vec::new())),
        Some(_) => Err(OpError::Protocol {
            message: String::from("list answer is not an array"),
        }),
    }
}

/// The key of a `location` (`/_data/{bucket}/{key}`, not URL-encoded, so
/// the key may itself contain `/`).
pub fn key_from_location(location: &str) -> Option<&str> {
    let rest = &location[location.find("_data/")? + "_data/".len()..];
    // Buckets never contain '/' in a location the server produced for us;
    // keys may, so split at the first slash only.
    let slash = rest.find('/')?;
    Some(&rest[slash + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(k: &str) -> Operation {
        Operation::Read { key: k.into() }
    }

    #[test]
    fn location_keys() {
        assert_eq!(key_from_location("/_data/b1/k1"), Some("k1"));
        assert_eq!(key_from_location("/_data/b1/a b/c"), Some("a b/c"));
        assert_eq!(key_from_location("/api/_data/b/gen_1-2"), Some("gen_1-2"));
        assert_eq!(key_from_location("nonsense"), None);
    }

    #[test]
    fn classify_reference_errors() {
        let e = |v: Value| {
            Outcome::Err(match v {
                Value::String(s) => WireError::Text(s),
                Value::Object(o) if o.is_empty() => WireError::Empty,
                other => WireError::Other(other),
            })
        };
        assert_eq!(
            ws_result(&read("k"), "k", e(json!({}))),
            Err(OpError::NotFound)
        );
        assert_eq!(
            ws_result(&read("k"), "k", e(json!("Not authorized"))),
            Err(OpError::NotAuthorized)
        );
        let w = Operation::Write {
            key: "k".into(),
            value: None,
            fail_if_exists: true,
            expire_session: false,
        };
        assert_eq!(
            ws_result(&w, "k", e(json!({}))),
            Err(OpError::AlreadyExists)
        );
        let plain = Operation::Write {
            key: "k".into(),
            value: None,
            fail_if_exists: false,
            expire_session: false,
        };
        assert!(matches!(
            ws_result(&plain, "k", e(json!({}))),
            Err(OpError::Server { .. })
        ));
        let patch_err = Outcome::Err(WireError::Object {
            message: Some("Patch test failed".into()),
            name: Some("PatchTestFailed".into()),
            code: None,
        });
        let p = Operation::Patch {
            key: "k".into(),
            patch: json!([]),
            remove_data_from_reply: false,
        };
        assert_eq!(
            ws_result(&p, "k", patch_err),
            Err(OpError::InvalidPatch {
                message: "Patch test failed".into()
            })
        );
    }
}
