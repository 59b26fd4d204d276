//! Client → server text frames (PROTOCOL.md §2).
//!
//! Encoding writes exactly the shapes the reference accepts; decoding (used by
//! the server) accepts every shape the reference accepts, coercing the way it
//! does (numeric bucket/key become strings, flags are JavaScript-truthy).

use alloc::string::String;
use alloc::vec::Vec;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use super::json::{coerce_string, truthy};
use super::DecodeError;

/// One text frame a client sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `datastore-operation`: one request, answered by a response with its id.
    DatastoreOperation {
        /// Top-level `apiKey` (one inside `request` is not honoured).
        api_key: Option<String>,
        /// The request; `None` when the frame had no `request` object.
        request: Option<Request>,
    },
    /// `register-events`: replaces the connection's subscription list.
    RegisterEvents {
        /// Top-level `apiKey`.
        api_key: Option<String>,
        /// The subscriptions; `None` when `events` was missing or not an
        /// array (the reference breaks on that; our server rejects it).
        events: Option<Vec<Subscription>>,
        /// Whether change events carry values (absent means `false`).
        send_values: bool,
    },
    /// `event-broadcast` (signalEvent): relayed, never stored.
    EventBroadcast {
        /// Top-level `apiKey`.
        api_key: Option<String>,
        /// The event; `None` when the frame had no usable `event` object.
        event: Option<SignalEvent>,
    },
    /// `ping`: answered with a pong.
    Ping,
    /// `register-replication-client` (server-to-server replication).
    RegisterReplicationClient {
        /// Top-level `apiKey`.
        api_key: Option<String>,
        /// The buckets to replicate.
        events: Option<Vec<Subscription>>,
    },
    /// Any other `msg` (or none): the reference does not answer.
    Unknown {
        /// The `msg` field, when it was a string.
        msg: Option<String>,
    },
}

/// A `(bucket, key)` subscription; `"*"` alone matches anything.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subscription {
    /// Bucket name or `"*"`.
    pub bucket: String,
    /// Key or `"*"`.
    pub key: String,
}

impl Subscription {
    /// Wildcard that matches any bucket or any key (no partial wildcards).
    pub const WILDCARD: &'static str = "*";

    /// Whether an event on `bucket`/`key` matches this subscription.
    pub fn matches(&self, bucket: &str, key: &str) -> bool {
        (self.bucket == Self::WILDCARD || self.bucket == bucket)
            && (self.key == Self::WILDCARD || self.key == key)
    }
}

/// The `event` of an `event-broadcast`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalEvent {
    /// Bucket (coerced to a string, as the reference does).
    pub bucket: String,
    /// Key (coerced to a string; the reference relays a numeric key as a number).
    pub key: String,
    /// Payload; `None` when absent.
    pub value: Option<Value>,
}

/// A `datastore-operation` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Client-chosen id, echoed with its JSON type. `None` = no id (then the
    /// response carries none either).
    pub id: Option<Value>,
    /// Bucket (coerced to a string; empty when absent).
    pub bucket: String,
    /// What to do.
    pub op: Op,
}

/// The operation of a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `read`: one key, or the whole bucket as a list when `key` is `None`/empty.
    Read {
        /// Key to read.
        key: Option<String>,
    },
    /// `filter`: list the bucket.
    Filter {
        /// Omit `content` from the items.
        keys_only: bool,
        /// Key prefix.
        filter: Option<String>,
    },
    /// `write`.
    Write {
        /// Key; `None`/empty lets the server generate `gen_<millis>[-n]`.
        key: Option<String>,
        /// Value; `None` writes a record without content.
        value: Option<Value>,
        /// Fail when the key exists.
        fail_if_exists: bool,
        /// `Some("session")` removes the key when the writing connection closes.
        expire: Option<String>,
    },
    /// `patch` with an RFC 6902 document.
    Patch {
        /// Key to patch.
        key: Option<String>,
        /// The patch (an array, or a single operation object).
        patch: Option<Value>,
        /// Answer `{}` instead of the patched document.
        remove_data_from_reply: bool,
    },
    /// `remove` (a missing key still succeeds).
    Remove {
        /// Key to remove.
        key: Option<String>,
    },
    /// Any other `op`: the reference never answers it.
    Unknown {
        /// The `op` text.
        op: String,
    },
}

impl Op {
    /// The wire name of the operation.
    pub fn name(&self) -> &str {
        match self {
            Op::Read { .. } => "read",
            Op::Filter { .. } => "filter",
            Op::Write { .. } => "write",
            Op::Patch { .. } => "patch",
            Op::Remove { .. } => "remove",
            Op::Unknown { op } => op,
        }
    }
}

/// The value of `expire` that makes a key session-bound.
pub const EXPIRE_SESSION: &str = "session";

impl ClientMessage {
    /// Encodes the message as one JSON text frame.
    pub fn encode(&self) -> String {
        // Serializing our own types into a String cannot fail: every map key
        // is a string and no custom Serialize impl returns an error.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a text frame the way the reference server reads it.
    ///
    /// Errors are what the reference answers with
    /// `{"response":{"error":"Message is not valid JSON"}}`: text that is not
    /// JSON, or JSON that is not an object.
    pub fn decode(text: &str) -> Result<ClientMessage, DecodeError> {
        // Well-typed frames (nearly all) are read straight into their fields
        // in one pass; anything unusual (a field of an unexpected type, a
        // duplicate field, not JSON) takes the tolerant path, which gives
        // the same result for the frames both accept.
        // Only an object may take the fast path: serde would also read a
        // struct from a JSON array.
        if !text.trim_start().starts_with('{') {
            return Self::decode_tolerant(text);
        }
        match serde_json::from_str::<fast::Frame<'_>>(text) {
            Ok(frame) => Ok(frame.into_message()),
            Err(_) => Self::decode_tolerant(text),
        }
    }

    /// The tolerant decoder through a JSON tree: the reference behaviour
    /// for every input. Public for the fuzz target that checks the fast path
    /// against it; use [`ClientMessage::decode`].
    #[doc(hidden)]
    pub fn decode_tolerant(text: &str) -> Result<ClientMessage, DecodeError> {
        let value: Value = serde_json::from_str(text).map_err(|_| DecodeError::NotJson)?;
        let Value::Object(mut obj) = value else {
            return Err(DecodeError::NotAnObject);
        };
        let api_key = obj.get("apiKey").and_then(coerce_string);
        let msg = match obj.get("msg") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Ok(ClientMessage::Unknown { msg: None }),
        };
        Ok(match msg {
            "datastore-operation" => ClientMessage::DatastoreOperation {
                api_key,
                request: match obj.remove("request") {
                    Some(Value::Object(r)) => Some(Request::from_object(r)),
                    _ => None,
                },
            },
            "register-events" => ClientMessage::RegisterEvents {
                api_key,
                events: obj.get("events").and_then(subscriptions),
                send_values: truthy(obj.get("sendValues")),
            },
            "event-broadcast" => ClientMessage::EventBroadcast {
                api_key,
                event: match obj.remove("event") {
                    Some(Value::Object(mut e)) => Some(SignalEvent {
                        bucket: e.get("bucket").and_then(coerce_string).unwrap_or_default(),
                        key: e.get("key").and_then(coerce_string).unwrap_or_default(),
                        value: e.remove("value"),
                    }),
                    _ => None,
                },
            },
            "ping" => ClientMessage::Ping,
            "register-replication-client" => ClientMessage::RegisterReplicationClient {
                api_key,
                events: obj.get("events").and_then(subscriptions),
            },
            other => ClientMessage::Unknown {
                msg: Some(String::from(other)),
            },
        })
    }
}

fn subscriptions(v: &Value) -> Option<Vec<Subscription>> {
    let items = v.as_array()?;
    Some(
        items
            .iter()
            .filter_map(|e| {
                Some(Subscription {
                    bucket: coerce_string(e.get("bucket")?)?,
                    key: coerce_string(e.get("key")?)?,
                })
            })
            .collect(),
    )
}

impl Request {
    fn from_object(mut r: Map<String, Value>) -> Request {
        let id = r.remove("id");
        let bucket = r.get("bucket").and_then(coerce_string).unwrap_or_default();
        let key = r.get("key").and_then(coerce_string);
        let flag = |r: &Map<String, Value>, name| truthy(r.get(name));
        let op = match r.get("op").and_then(Value::as_str).unwrap_or("") {
            "read" => Op::Read { key },
            "filter" => Op::Filter {
                keys_only: flag(&r, "keysOnly"),
                filter: r.get("filter").and_then(coerce_string),
            },
            "write" => Op::Write {
                key,
                fail_if_exists: flag(&r, "failIfExists"),
                expire: r.get("expire").and_then(coerce_string),
                value: r.remove("value"),
            },
            "patch" => Op::Patch {
                key,
                remove_data_from_reply: flag(&r, "removeDataFromReply"),
                patch: r.remove("patch"),
            },
            "remove" => Op::Remove { key },
            other => Op::Unknown {
                op: String::from(other),
            },
        };
        Request { id, bucket, op }
    }
}

impl Serialize for ClientMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            ClientMessage::DatastoreOperation { api_key, request } => {
                m.serialize_entry("msg", "datastore-operation")?;
                if let Some(k) = api_key {
                    m.serialize_entry("apiKey", k)?;
                }
                if let Some(r) = request {
                    m.serialize_entry("request", r)?;
                }
            }
            ClientMessage::RegisterEvents {
                api_key,
                events,
                send_values,
            } => {
                m.serialize_entry("msg", "register-events")?;
                // Always an array: without one the reference breaks broadcasting.
                m.serialize_entry("events", events.as_deref().unwrap_or(&[]))?;
                m.serialize_entry("sendValues", send_values)?;
                if let Some(k) = api_key {
                    m.serialize_entry("apiKey", k)?;
                }
            }
            ClientMessage::EventBroadcast { api_key, event } => {
                m.serialize_entry("msg", "event-broadcast")?;
                if let Some(k) = api_key {
                    m.serialize_entry("apiKey", k)?;
                }
                if let Some(e) = event {
                    m.serialize_entry("event", e)?;
                }
            }
            ClientMessage::Ping => m.serialize_entry("msg", "ping")?,
            ClientMessage::RegisterReplicationClient { api_key, events } => {
                m.serialize_entry("msg", "register-replication-client")?;
                if let Some(k) = api_key {
                    m.serialize_entry("apiKey", k)?;
                }
                m.serialize_entry("events", events.as_deref().unwrap_or(&[]))?;
            }
            ClientMessage::Unknown { msg } => {
                if let Some(msg) = msg {
                    m.serialize_entry("msg", msg)?;
                }
            }
        }
        m.end()
    }
}

impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("bucket", &self.bucket)?;
        m.serialize_entry("key", &self.key)?;
        m.end()
    }
}

impl Serialize for SignalEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("bucket", &self.bucket)?;
        m.serialize_entry("key", &self.key)?;
        if let Some(v) = &self.value {
            m.serialize_entry("value", v)?;
        }
        m.end()
    }
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("op", self.op.name())?;
        if let Some(id) = &self.id {
            m.serialize_entry("id", id)?;
        }
        m.serialize_entry("bucket", &self.bucket)?;
        match &self.op {
            Op::Read { key } | Op::Remove { key } => {
                if let Some(k) = key {
                    m.serialize_entry("key", k)?;
                }
            }
            Op::Filter { keys_only, filter } => {
                if let Some(f) = filter {
                    m.serialize_entry("filter", f)?;
                }
                m.serialize_entry("keysOnly", keys_only)?;
            }
            Op::Write {
                key,
                value,
                fail_if_exists,
                expire,
            } => {
                if let Some(k) = key {
                    m.serialize_entry("key", k)?;
                }
                if let Some(v) = value {
                    m.serialize_entry("value", v)?;
                }
                if *fail_if_exists {
                    m.serialize_entry("failIfExists", &true)?;
                }
                if let Some(e) = expire {
                    m.serialize_entry("expire", e)?;
                }
            }
            Op::Patch {
                key,
                patch,
                remove_data_from_reply,
            } => {
                if let Some(k) = key {
                    m.serialize_entry("key", k)?;
                }
                if let Some(p) = patch {
                    m.serialize_entry("patch", p)?;
                }
                if *remove_data_from_reply {
                    m.serialize_entry("removeDataFromReply", &true)?;
                }
            }
            Op::Unknown { .. } => {}
        }
        m.end()
    }
}

/// The one-pass decoder of well-typed client frames.
mod fast {
    use alloc::borrow::Cow;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::marker::PhantomData;
    use serde::de::value::MapAccessDeserializer;
    use serde::de::{MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use super::{ClientMessage, Op, Request, SignalEvent, Subscription};
    use crate::wire::json::{coerce_string, present, truthy};

    /// `T` read from a JSON object only: derived structs would also accept
    /// an array (fields by position), which the tolerant path does not.
    /// (Likewise every struct here denies unknown fields: ignoring one would
    /// skip over content the tolerant path parses, e.g. an out-of-range
    /// number, and the two would disagree. Frames with extra fields take the
    /// tolerant path.)
    struct ObjectOnly<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = ObjectOnly<T>;
                fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                    T::deserialize(MapAccessDeserializer::new(map)).map(ObjectOnly)
                }
            }
            d.deserialize_map(V(PhantomData))
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Frame<'a> {
        #[serde(default, borrow)]
        msg: Option<Cow<'a, str>>,
        #[serde(default, rename = "apiKey")]
        api_key: Option<Value>,
        #[serde(default, borrow)]
        request: Option<ObjectOnly<RawRequest<'a>>>,
        #[serde(default)]
        events: Option<Vec<ObjectOnly<RawSubscription>>>,
        #[serde(default, rename = "sendValues")]
        send_values: Option<Value>,
        #[serde(default)]
        event: Option<ObjectOnly<RawEvent>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawRequest<'a> {
        #[serde(default, deserialize_with = "present")]
        id: Option<Value>,
        #[serde(default, borrow)]
        op: Option<Cow<'a, str>>,
        #[serde(default)]
        bucket: Option<Value>,
        #[serde(default)]
        key: Option<Value>,
        #[serde(default, deserialize_with = "present")]
        value: Option<Value>,
        #[serde(default, deserialize_with = "present")]
        patch: Option<Value>,
        #[serde(default)]
        filter: Option<Value>,
        #[serde(default)]
        expire: Option<Value>,
        #[serde(default, rename = "keysOnly")]
        keys_only: Option<Value>,
        #[serde(default, rename = "failIfExists")]
        fail_if_exists: Option<Value>,
        #[serde(default, rename = "removeDataFromReply")]
        remove_data_from_reply: Option<Value>,
    }

    /// An entry of `events`; one that the tolerant path would skip (a
    /// missing or non-scalar bucket/key) makes the fast path give up.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawSubscription {
        bucket: Value,
        key: Value,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawEvent {
        #[serde(default)]
        bucket: Option<Value>,
        #[serde(default)]
        key: Option<Value>,
        #[serde(default, deserialize_with = "present")]
        value: Option<Value>,
    }

    fn text(v: Option<&Value>) -> Option<String> {
        v.and_then(coerce_string)
    }

    impl Frame<'_> {
        pub(super) fn into_message(self) -> ClientMessage {
            let api_key = text(self.api_key.as_ref());
            let Some(msg) = self.msg else {
                return ClientMessage::Unknown { msg: None };
            };
            match msg.as_ref() {
                "datastore-operation" => ClientMessage::DatastoreOperation {
                    api_key,
                    request: self.request.map(|r| r.0.into_request()),
                },
                "register-events" => ClientMessage::RegisterEvents {
                    api_key,
                    events: self.events.map(subscriptions),
                    send_values: truthy(self.send_values.as_ref()),
                },
                "event-broadcast" => ClientMessage::EventBroadcast {
                    api_key,
                    event: self.event.map(|ObjectOnly(e)| SignalEvent {
                        bucket: text(e.bucket.as_ref()).unwrap_or_default(),
                        key: text(e.key.as_ref()).unwrap_or_default(),
                        value: e.value,
                    }),
                },
                "ping" => ClientMessage::Ping,
                "register-replication-client" => ClientMessage::RegisterReplicationClient {
                    api_key,
                    events: self.events.map(subscriptions),
                },
                other => ClientMessage::Unknown {
                    msg: Some(String::from(other)),
                },
            }
        }
    }

    fn subscriptions(raw: Vec<ObjectOnly<RawSubscription>>) -> Vec<Subscription> {
        raw.into_iter()
            .filter_map(|ObjectOnly(s)| {
                Some(Subscription {
                    bucket: coerce_string(&s.bucket)?,
                    key: coerce_string(&s.key)?,
                })
            })
            .collect()
    }

    impl RawRequest<'_> {
        fn into_request(self) -> Request {
            let key = text(self.key.as_ref());
            let bucket = text(self.bucket.as_ref()).unwrap_or_default();
            let op = match self.op.as_deref().unwrap_or("") {
                "read" => Op::Read { key },
                "filter" => Op::Filter {
                    keys_only: truthy(self.keys_only.as_ref()),
                    filter: text(self.filter.as_ref()),
                },
                "write" => Op::Write {
                    key,
                    value: self.value,
                    fail_if_exists: truthy(self.fail_if_exists.as_ref()),
                    expire: text(self.expire.as_ref()),
                },
                "patch" => Op::Patch {
                    key,
                    patch: self.patch,
                    remove_data_from_reply: truthy(self.remove_data_from_reply.as_ref()),
                },
                "remove" => Op::Remove { key },
                other => Op::Unknown {
                    op: String::from(other),
                },
            };
            Request {
                id: self.id,
                bucket,
                op,
            }
        }
    }
}
