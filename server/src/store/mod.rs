//! The datastore behind the hub: a small [`Store`] trait and the in-memory
//! [`MemoryStore`].
//!
//! The store knows nothing of connections, events or apiKeys; it keeps
//! records in buckets sorted by key and applies writes, patches and removes.
//! Time is handed in (`now_ms`, milliseconds since the Unix epoch), so a
//! store is as deterministic as its caller.

mod memory;
mod patch;

pub use memory::MemoryStore;
pub use patch::{parse_patch, PatchFailure, PatchFailureKind};

use cachearoo_core::wire::{Expire, ListItem};
use serde_json::Value;

/// One stored value with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The value; `None` for a record written without one.
    pub value: Option<Value>,
    /// Time of the last write or patch, in milliseconds since the Unix epoch.
    pub written_ms: u64,
    /// Expiry marker as list items show it.
    pub expire: Expire,
    /// Length of the value's JSON text (0 without a value).
    pub size: u64,
}

/// How a write behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Fail with [`StoreError::AlreadyExists`] when the key is there.
    pub fail_if_exists: bool,
    /// The expiry marker to store (`Expire::Text("session")` for session keys).
    pub expire: Expire,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The bucket does not exist.
    #[error("Bucket {bucket} not found")]
    BucketNotFound {
        /// The bucket asked for.
        bucket: String,
    },
    /// The key does not exist in an existing bucket.
    #[error("Key {key} not found")]
    KeyNotFound {
        /// The key asked for.
        key: String,
    },
    /// A `fail_if_exists` write found the key.
    #[error("Key {key} already exists")]
    AlreadyExists {
        /// The key written.
        key: String,
    },
    /// The bucket name is not allowed (empty, or refused like the reference).
    #[error("Invalid bucket name")]
    InvalidBucket {
        /// The bucket name.
        bucket: String,
    },
    /// The JSON patch is malformed or does not apply.
    #[error(transparent)]
    Patch(#[from] PatchFailure),
}

/// A datastore of buckets of keyed JSON records.
///
/// Buckets spring into existence on their first write and list their keys
/// in sorted order.
pub trait Store {
    /// The record at `bucket`/`key`.
    fn get(&self, bucket: &str, key: &str) -> Result<Record, StoreError>;

    /// The items of `bucket` (empty for a missing bucket) whose keys start
    /// with `prefix` (inclusive: the prefix itself matches), sorted by key;
    /// `content` is left out with `keys_only`.
    fn list(&self, bucket: &str, prefix: Option<&str>, keys_only: bool) -> Vec<ListItem>;

    /// Writes `value` at `bucket`/`key`, creating the bucket if needed. A
    /// `None` or empty key is generated (`gen_<now_ms>`, then
    /// `gen_<now_ms>-1`, `-2`, ... while taken). Returns the key written.
    fn write(
        &mut self,
        bucket: &str,
        key: Option<&str>,
        value: Option<Value>,
        options: WriteOptions,
        now_ms: u64,
    ) -> Result<String, StoreError>;

    /// Applies an RFC 6902 patch atomically (all operations or none) and
    /// returns the patched document. A record without a value is patched as
    /// `null`.
    fn patch(
        &mut self,
        bucket: &str,
        key: &str,
        ops: &[json_patch::PatchOperation],
        now_ms: u64,
    ) -> Result<Value, StoreError>;

    /// Removes a key; `Ok(false)` when it was not there. Fails only for a
    /// missing bucket.
    fn remove(&mut self, bucket: &str, key: &str) -> Result<bool, StoreError>;

    /// Drops a whole bucket; `false` when there was none.
    fn remove_bucket(&mut self, bucket: &str) -> bool;

    /// The names of all buckets, sorted.
    fn buckets(&self) -> Vec<String>;
}

/// Whether the reference would refuse `bucket` as a bucket name.
///
/// The reference stores each bucket in a folder and refuses names Windows
/// reserves (`CON`, `PRN`, `AUX`, `NUL`, `COM1`..`COM9`, `LPT1`..`LPT9`, in
/// any case) and names with a leading or trailing space or dot. We refuse
/// the same (and the empty name) so that data written here could live on the
/// reference too.
pub fn is_invalid_bucket_name(bucket: &str) -> bool {
    if bucket.is_empty() {
        return true;
    }
    let edge = |c: char| c == ' ' || c == '.';
    if bucket.starts_with(edge) || bucket.ends_with(edge) {
        return true;
    }
    let upper = bucket.to_ascii_uppercase();
    if matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL") {
        return true;
    }
    let b = upper.as_bytes();
    b.len() == 4
        && (upper.starts_with("COM") || upper.starts_with("LPT"))
        && (b'1'..=b'9').contains(&b[3])
}

/// Length of the JSON text of `value` as JavaScript counts it
/// (`JSON.stringify(v).length`, in UTF-16 code units), 0 without a value.
pub fn json_size(value: Option<&Value>) -> u64 {
    match value {
        None => 0,
        Some(v) => {
            // Serialising a Value into a String cannot fail.
            let text = serde_json::to_string(v).unwrap_or_default();
            text.encode_utf16().count() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bucket_names_like_the_reference() {
        for bad in [
            "", "CON", "con", "Nul", "COM1", "lpt9", " b", "b ", ".b", "b.",
        ] {
            assert!(is_invalid_bucket_name(bad), "{bad:?}");
        }
        for good in [
            "b1",
            "COM0",
            "COM10",
            "CONS",
            "a b",
            "_bucket_config",
            "#reqrep/C",
        ] {
            assert!(!is_invalid_bucket_name(good), "{good:?}");
        }
    }

    #[test]
    fn sizes_count_utf16_units() {
        assert_eq!(json_size(None), 0);
        assert_eq!(json_size(Some(&json!({"name":"x","n":1}))), 18);
        assert_eq!(json_size(Some(&json!(null))), 4);
        assert_eq!(json_size(Some(&json!("é"))), 3);
        assert_eq!(json_size(Some(&json!("😀"))), 4);
    }
}
