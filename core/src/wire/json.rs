//! Small serde helpers for the reference's loose typing.
//!
//! The reference server is written in JavaScript: fields may be absent,
//! `null`, or of an unexpected scalar type. These helpers keep those
//! distinctions where they carry meaning and coerce where the reference does.

use alloc::string::{String, ToString};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `Some(v)` for a present field (even `null`, kept as `Value::Null`);
/// used with `#[serde(default)]` so an absent field stays `None`.
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A string the way JavaScript would coerce it: strings as they are,
/// numbers and booleans as their text, `null` as absent.
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        other => coerce_string(&other)
            .map(Some)
            .ok_or_else(|| D::Error::custom("expected a string")),
    }
}

/// The text of a scalar as JavaScript's `String(x)` gives it; `None` for
/// null, arrays and objects.
pub fn coerce_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// JavaScript truthiness of an optional field (absent is falsy).
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_)) | Some(Value::Object(_)) => true,
    }
}
