//! List items (PROTOCOL.md §4): the answer of `filter`, and of `read`
//! without a key.

use alloc::string::String;
use serde::de::Deserializer;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json::present;

/// How a stored key expires, as list items show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Expire {
    /// Field absent (WebSocket writes without `expire`).
    #[default]
    Absent,
    /// `"expire":null` (REST writes).
    Null,
    /// Any text; `"session"` is the only meaningful one.
    Text(String),
}

impl Expire {
    /// Whether the key is removed when its writer's connection closes.
    pub fn is_session(&self) -> bool {
        matches!(self, Expire::Text(t) if t == super::EXPIRE_SESSION)
    }
}

/// One entry of a bucket listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListItem {
    /// The key.
    pub key: String,
    /// ISO-8601 time of the last write (`None` if the server sent none).
    pub timestamp: Option<String>,
    /// Length of the value's JSON text.
    pub size: u64,
    /// Expiry marker.
    pub expire: Expire,
    /// The value: only without `keysOnly`, and only when one was stored.
    pub content: Option<Value>,
}

#[derive(Deserialize)]
struct RawListItem {
    #[serde(default, deserialize_with = "super::json::lenient_string")]
    key: Option<String>,
    #[serde(default, deserialize_with = "super::json::lenient_string")]
    timestamp: Option<String>,
    #[serde(default)]
    size: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    expire: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    content: Option<Value>,
}

impl<'de> Deserialize<'de> for ListItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawListItem::deserialize(d)?;
        Ok(ListItem {
            key: raw.key.unwrap_or_default(),
            timestamp: raw.timestamp,
            size: raw.size.as_ref().and_then(Value::as_u64).unwrap_or(0),
            expire: match raw.expire {
                None => Expire::Absent,
                Some(Value::Null) => Expire::Null,
                Some(v) => super::json::coerce_string(&v).map_or(Expire::Null, Expire::Text),
            },
            content: raw.content,
        })
    }
}

impl Serialize for ListItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("key", &self.key)?;
        m.serialize_entry("timestamp", &self.timestamp)?;
        m.serialize_entry("size", &self.size)?;
        match &self.expire {
            Expire::Absent => {}
            Expire::Null => m.serialize_entry("expire", &())?,
            Expire::Text(t) => m.serialize_entry("expire", t)?,
        }
        if let Some(c) = &self.content {
            m.serialize_entry("content", c)?;
        }
        m.end()
    }
}
