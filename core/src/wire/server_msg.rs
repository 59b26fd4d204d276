//! Server → client text frames (PROTOCOL.md §3).
//!
//! Decoding routes on the envelope's fields in one pass (no intermediate
//! `Value` for the envelope; the payload `value` is parsed once).

use alloc::string::String;
use alloc::vec::Vec;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json::{lenient_string, present};
use super::list::ListItem;
use super::DecodeError;

/// One text frame a server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `{"id":"<serverId>"}`: sent once right after the upgrade.
    Greeting {
        /// The server's id.
        server_id: String,
    },
    /// `{"response":{..}}`: the answer to a request, or an error not tied to
    /// one (then `id` is `None`).
    Response(Response),
    /// `{"pong":"<ISO time>"}`.
    Pong {
        /// Server time of the pong.
        time: String,
    },
    /// A change, delete or signal event.
    Event(ChangeEvent),
    /// `{"bucket":..,"data":[..]}`: replication dump (replication clients only).
    ReplicationDump {
        /// The bucket dumped.
        bucket: String,
        /// Its items with content.
        data: Vec<ListItem>,
    },
}

/// A `response` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's id with its JSON type; `None` when absent.
    pub id: Option<Value>,
    /// Success or failure.
    pub outcome: Outcome,
}

/// Success or failure of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No `error` field.
    Ok {
        /// `value`, when present (may be `Value::Null`).
        value: Option<Value>,
        /// `location` of a write.
        location: Option<String>,
    },
    /// An `error` field was present.
    Err(WireError),
}

/// The `error` of a response, in the shapes the reference produces.
#[derive(Debug, Clone, PartialEq)]
pub enum WireError {
    /// `{}`: the reference's serialisation of almost every error.
    Empty,
    /// A string, e.g. `"Not authorized"`.
    Text(String),
    /// An object with (some of) `message`, `name`, `code`.
    Object {
        /// Human-readable message.
        message: Option<String>,
        /// Error class, e.g. `InvalidPatch`.
        name: Option<String>,
        /// Machine code, e.g. `ENOTFOUND` (our server).
        code: Option<String>,
    },
    /// Anything else (kept verbatim).
    Other(Value),
}

impl WireError {
    /// The message or text carried by the error, if any.
    pub fn message(&self) -> Option<&str> {
        match self {
            WireError::Text(t) => Some(t),
            WireError::Object { message, .. } => message.as_deref(),
            _ => None,
        }
    }

    fn from_value(v: Value) -> WireError {
        match v {
            Value::String(s) => WireError::Text(s),
            Value::Object(o) if o.is_empty() => WireError::Empty,
            Value::Object(o) => {
                let field = |n: &str| o.get(n).and_then(super::json::coerce_string);
                let (message, name, code) = (field("message"), field("name"), field("code"));
                if message.is_none() && name.is_none() && code.is_none() {
                    WireError::Other(Value::Object(o))
                } else {
                    WireError::Object {
                        message,
                        name,
                        code,
                    }
                }
            }
            other => WireError::Other(other),
        }
    }
}

/// A change event (write, patch, signal) or delete event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// Bucket of the change.
    pub bucket: String,
    /// Key of the change (a numeric key is turned into its text).
    pub key: String,
    /// ISO time for writes and signals; `None` (`null`) for patches and removes.
    pub timestamp: Option<String>,
    /// The writer's request id: `None` = absent, `Some(Value::Null)` = null.
    pub origin_request_id: Option<Value>,
    /// The writer's client id (our server sends it; the reference never does).
    pub client_id: Option<String>,
    /// `true` on deletes.
    pub is_deleted: bool,
    /// The value: `None` = absent (no `sendValues`, or no value written);
    /// `Some(Value::Null)` on deletes.
    pub value: Option<Value>,
}

/// The envelope of every server frame, read in one pass.
#[derive(Deserialize)]
struct RawServerFrame {
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default)]
    response: Option<RawResponse>,
    #[serde(default, deserialize_with = "present")]
    pong: Option<Value>,
    #[serde(default, deserialize_with = "lenient_string")]
    bucket: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    key: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    timestamp: Option<String>,
    #[serde(default, rename = "originRequestId", deserialize_with = "present")]
    origin_request_id: Option<Value>,
    #[serde(default, rename = "clientId", deserialize_with = "lenient_string")]
    client_id: Option<String>,
    #[serde(default, rename = "isDeleted")]
    is_deleted: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
    #[serde(default)]
    data: Option<Vec<ListItem>>,
}

#[derive(Deserialize)]
struct RawResponse {
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
    #[serde(default, deserialize_with = "lenient_string")]
    location: Option<String>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
}

impl ServerMessage {
    /// Decodes one server text frame.
    pub fn decode(text: &str) -> Result<ServerMessage, DecodeError> {
        Self::decode_slice(text.as_bytes())
    }

    /// Decodes one server text frame from bytes.
    pub fn decode_slice(bytes: &[u8]) -> Result<ServerMessage, DecodeError> {
        let raw: RawServerFrame = match serde_json::from_slice(bytes) {
            Ok(raw) => raw,
            Err(e) if e.is_syntax() || e.is_eof() => return Err(DecodeError::NotJson),
            Err(_) => {
                // Valid JSON of the wrong shape: say which.
                return Err(match serde_json::from_slice::<Value>(bytes) {
                    Ok(Value::Object(_)) => DecodeError::WrongShape,
                    Ok(_) => DecodeError::NotAnObject,
                    Err(_) => DecodeError::NotJson,
                });
            }
        };
        if let Some(r) = raw.response {
            let outcome = match r.error {
                Some(e) => Outcome::Err(WireError::from_value(e)),
                None => Outcome::Ok {
                    value: r.value,
                    location: r.location,
                },
            };
            return Ok(ServerMessage::Response(Response { id: r.id, outcome }));
        }
        if let Some(p) = raw.pong {
            let time = super::json::coerce_string(&p).unwrap_or_default();
            return Ok(ServerMessage::Pong { time });
        }
        if let Some(bucket) = raw.bucket {
            if let Some(data) = raw.data {
                return Ok(ServerMessage::ReplicationDump { bucket, data });
            }
            let Some(key) = raw.key else {
                return Err(DecodeError::WrongShape);
            };
            return Ok(ServerMessage::Event(ChangeEvent {
                bucket,
                key,
                timestamp: raw.timestamp,
                origin_request_id: raw.origin_request_id,
                client_id: raw.client_id,
                is_deleted: super::json::truthy(raw.is_deleted.as_ref()),
                value: raw.value,
            }));
        }
        if let Some(id) = raw.id {
            let server_id = super::json::coerce_string(&id).ok_or(DecodeError::WrongShape)?;
            return Ok(ServerMessage::Greeting { server_id });
        }
        Err(DecodeError::WrongShape)
    }

    /// Encodes the message as one JSON text frame, in the reference's field order.
    pub fn encode(&self) -> String {
        // Cannot fail: string keys only, no failing Serialize impl.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for ServerMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            ServerMessage::Greeting { server_id } => m.serialize_entry("id", server_id)?,
            ServerMessage::Response(r) => m.serialize_entry("response", r)?,
            ServerMessage::Pong { time } => m.serialize_entry("pong", time)?,
            ServerMessage::Event(e) => {
                m.serialize_entry("bucket", &e.bucket)?;
                m.serialize_entry("key", &e.key)?;
                m.serialize_entry("timestamp", &e.timestamp)?;
                if let Some(o) = &e.origin_request_id {
                    m.serialize_entry("originRequestId", o)?;
                }
                if let Some(c) = &e.client_id {
                    m.serialize_entry("clientId", c)?;
                }
                if e.is_deleted {
                    m.serialize_entry("isDeleted", &true)?;
                }
                if let Some(v) = &e.value {
                    m.serialize_entry("value", v)?;
                }
            }
            ServerMessage::ReplicationDump { bucket, data } => {
                m.serialize_entry("bucket", bucket)?;
                m.serialize_entry("data", data)?;
            }
        }
        m.end()
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(id) = &self.id {
            m.serialize_entry("id", id)?;
        }
        match &self.outcome {
            Outcome::Ok { value, location } => {
                if let Some(v) = value {
                    m.serialize_entry("value", v)?;
                }
                if let Some(l) = location {
                    m.serialize_entry("location", l)?;
                }
            }
            Outcome::Err(e) => m.serialize_entry("error", e)?,
        }
        m.end()
    }
}

impl Serialize for WireError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WireError::Empty => s.serialize_map(Some(0))?.end(),
            WireError::Text(t) => s.serialize_str(t),
            WireError::Object {
                message,
                name,
                code,
            } => {
                let mut m = s.serialize_map(None)?;
                if let Some(v) = message {
                    m.serialize_entry("message", v)?;
                }
                if let Some(v) = name {
                    m.serialize_entry("name", v)?;
                }
                if let Some(v) = code {
                    m.serialize_entry("code", v)?;
                }
                m.end()
            }
            WireError::Other(v) => v.serialize(s),
        }
    }
}
