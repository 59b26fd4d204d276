//! The in-memory store: one `BTreeMap` per bucket, so listings come out
//! sorted by key and a prefix filter is a range scan.

use std::collections::BTreeMap;

use cachearoo_core::wire::ListItem;
use json_patch::PatchOperation;
use serde_json::Value;

use super::{
    is_invalid_bucket_name, json_size, PatchFailure, Record, Store, StoreError, WriteOptions,
};
use crate::time::iso8601;

/// A [`Store`] held in memory; everything is lost when it is dropped.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    buckets: BTreeMap<String, BTreeMap<String, Record>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn bucket(&self, bucket: &str) -> Result<&BTreeMap<String, Record>, StoreError> {
        self.buckets
            .get(bucket)
            .ok_or_else(|| StoreError::BucketNotFound {
                bucket: bucket.to_owned(),
            })
    }

    fn bucket_mut(&mut self, bucket: &str) -> Result<&mut BTreeMap<String, Record>, StoreError> {
        self.buckets
            .get_mut(bucket)
            .ok_or_else(|| StoreError::BucketNotFound {
                bucket: bucket.to_owned(),
            })
    }
}

/// `gen_<now_ms>`, or the first of `gen_<now_ms>-1`, `-2`, ... not taken.
fn generate_key(records: &BTreeMap<String, Record>, now_ms: u64) -> String {
    let base = format!("gen_{now_ms}");
    if !records.contains_key(&base) {
        return base;
    }
    // Keys `gen_<ms>-<n>` that are taken are few (one per write in the same
    // millisecond), so counting up is cheap.
    let mut n: u64 = 1;
    loop {
        let candidate = format!("{base}-{n}");
        if !records.contains_key(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

fn list_item(key: &str, r: &Record, keys_only: bool) -> ListItem {
    ListItem {
        key: key.to_owned(),
        timestamp: Some(iso8601(r.written_ms)),
        size: r.size,
        expire: r.expire.clone(),
        content: if keys_only { None } else { r.value.clone() },
    }
}

impl Store for MemoryStore {
    fn get(&self, bucket: &str, key: &str) -> Result<Record, StoreError> {
        self.bucket(bucket)?
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::KeyNotFound {
                key: key.to_owned(),
            })
    }

    fn list(&self, bucket: &str, prefix: Option<&str>, keys_only: bool) -> Vec<ListItem> {
        let Some(records) = self.buckets.get(bucket) else {
            return Vec::new();
        };
        match prefix {
            None | Some("") => records
                .iter()
                .map(|(k, r)| list_item(k, r, keys_only))
                .collect(),
            Some(p) => records
                .range::<str, _>((std::ops::Bound::Included(p), std::ops::Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(p))
                .map(|(k, r)| list_item(k, r, keys_only))
                .collect(),
        }
    }

    fn write(
        &mut self,
        bucket: &str,
        key: Option<&str>,
        value: Option<Value>,
        options: WriteOptions,
        now_ms: u64,
    ) -> Result<String, StoreError> {
        if is_invalid_bucket_name(bucket) {
            return Err(StoreError::InvalidBucket {
                bucket: bucket.to_owned(),
            });
        }
        let records = self.buckets.entry(bucket.to_owned()).or_default();
        let key = match key {
            Some(k) if !k.is_empty() => k.to_owned(),
            _ => generate_key(records, now_ms),
        };
        if options.fail_if_exists && records.contains_key(&key) {
            return Err(StoreError::AlreadyExists { key });
        }
        let record = Record {
            size: json_size(value.as_ref()),
            value,
            written_ms: now_ms,
            expire: options.expire,
        };
        records.insert(key.clone(), record);
        Ok(key)
    }

    fn patch(
        &mut self,
        bucket: &str,
        key: &str,
        ops: &[PatchOperation],
        now_ms: u64,
    ) -> Result<Value, StoreError> {
        let record =
            self.bucket_mut(bucket)?
                .get_mut(key)
                .ok_or_else(|| StoreError::KeyNotFound {
                    key: key.to_owned(),
                })?;
        let was_empty = record.value.is_none();
        let doc = record.value.get_or_insert(Value::Null);
        // json_patch::patch undoes the operations already applied when a
        // later one fails, so the stored document is never half-patched.
        if let Err(e) = json_patch::patch(doc, ops) {
            if was_empty {
                // A failed patch leaves a value-less record value-less.
                record.value = None;
            }
            return Err(PatchFailure::from_apply(&e).into());
        }
        record.size = json_size(record.value.as_ref());
        record.written_ms = now_ms;
        Ok(record.value.clone().unwrap_or(Value::Null))
    }

    fn remove(&mut self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        Ok(self.bucket_mut(bucket)?.remove(key).is_some())
    }

    fn remove_bucket(&mut self, bucket: &str) -> bool {
        self.buckets.remove(bucket).is_some()
    }

    fn buckets(&self) -> Vec<String> {
        self.buckets.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{parse_patch, PatchFailureKind};
    use cachearoo_core::wire::Expire;
    use serde_json::json;

    const T0: u64 = 1_796_313_875_834;

    fn write(
        s: &mut MemoryStore,
        b: &str,
        k: Option<&str>,
        v: Value,
    ) -> Result<String, StoreError> {
        s.write(b, k, Some(v), WriteOptions::default(), T0)
    }

    #[test]
    fn writes_reads_and_lists_sorted() {
        let mut s = MemoryStore::new();
        assert_eq!(
            write(&mut s, "b1", Some("k2"), json!([1, 2, 3])),
            Ok("k2".into())
        );
        assert_eq!(
            write(&mut s, "b1", Some("k1"), json!({"name":"x","n":1})),
            Ok("k1".into())
        );
        let r = s.get("b1", "k1").unwrap();
        assert_eq!(r.value, Some(json!({"name":"x","n":1})));
        assert_eq!(r.size, 18);
        let keys: Vec<_> = s
            .list("b1", None, true)
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(keys, ["k1", "k2"]);
        let items = s.list("b1", None, false);
        assert_eq!(items[1].content, Some(json!([1, 2, 3])));
        assert_eq!(
            items[1].timestamp.as_deref(),
            Some("2026-12-03T16:04:35.834Z")
        );
        assert!(s.list("b1", None, true)[0].content.is_none());
        assert_eq!(s.list("nob", None, false), Vec::new());
        assert_eq!(
            s.get("nob", "k"),
            Err(StoreError::BucketNotFound {
                bucket: "nob".into()
            })
        );
        assert_eq!(
            s.get("b1", "missing"),
            Err(StoreError::KeyNotFound {
                key: "missing".into()
            })
        );
    }

    #[test]
    fn prefix_filter_is_inclusive() {
        let mut s = MemoryStore::new();
        for k in ["a", "k", "k1", "k10", "k2", "l"] {
            write(&mut s, "b", Some(k), json!(1)).unwrap();
        }
        let keys = |p| -> Vec<String> {
            s.list("b", Some(p), true)
                .into_iter()
                .map(|i| i.key)
                .collect()
        };
        assert_eq!(keys("k1"), ["k1", "k10"]);
        assert_eq!(keys("k"), ["k", "k1", "k10", "k2"]);
        assert_eq!(keys("z"), Vec::<String>::new());
        assert_eq!(keys("").len(), 6);
    }

    #[test]
    fn generated_keys_count_up_on_collision() {
        let mut s = MemoryStore::new();
        assert_eq!(write(&mut s, "b", None, json!(1)), Ok(format!("gen_{T0}")));
        assert_eq!(
            write(&mut s, "b", Some(""), json!(2)),
            Ok(format!("gen_{T0}-1"))
        );
        assert_eq!(
            write(&mut s, "b", None, json!(3)),
            Ok(format!("gen_{T0}-2"))
        );
        assert_eq!(
            write(&mut s, "other", None, json!(3)),
            Ok(format!("gen_{T0}"))
        );
    }

    #[test]
    fn fail_if_exists_and_expire() {
        let mut s = MemoryStore::new();
        let opts = WriteOptions {
            fail_if_exists: true,
            expire: Expire::Text("session".into()),
        };
        assert!(s.write("b", Some("k"), None, opts.clone(), T0).is_ok());
        assert_eq!(
            s.write("b", Some("k"), Some(json!(1)), opts, T0),
            Err(StoreError::AlreadyExists { key: "k".into() })
        );
        let item = &s.list("b", None, false)[0];
        assert!(item.expire.is_session());
        assert_eq!((item.size, item.content.clone()), (0, None));
    }

    #[test]
    fn invalid_buckets_are_refused() {
        let mut s = MemoryStore::new();
        assert_eq!(
            write(&mut s, "CON", Some("k"), json!(1)),
            Err(StoreError::InvalidBucket {
                bucket: "CON".into()
            })
        );
        assert!(s.buckets().is_empty());
    }

    #[test]
    fn patches_atomically() {
        let mut s = MemoryStore::new();
        write(&mut s, "b", Some("k"), json!({"name":"x","n":1})).unwrap();
        let ops = parse_patch(
            &json!([{"op":"replace","path":"/n","value":2},{"op":"add","path":"/t","value":["a"]}]),
        )
        .unwrap();
        assert_eq!(
            s.patch("b", "k", &ops, T0 + 5),
            Ok(json!({"name":"x","n":2,"t":["a"]}))
        );
        let r = s.get("b", "k").unwrap();
        assert_eq!((r.written_ms, r.size), (T0 + 5, 28));
        // The second op fails: the first is undone.
        let ops = parse_patch(&json!([{"op":"replace","path":"/n","value":9},{"op":"replace","path":"/nope/deeper","value":1}])).unwrap();
        match s.patch("b", "k", &ops, T0 + 6) {
            Err(StoreError::Patch(PatchFailure {
                kind: PatchFailureKind::Conflict,
                ..
            })) => {}
            other => panic!("unexpected {other:?}"),
        }
        let ops = parse_patch(&json!([{"op":"test","path":"/n","value":999}])).unwrap();
        match s.patch("b", "k", &ops, T0 + 7) {
            Err(StoreError::Patch(PatchFailure {
                kind: PatchFailureKind::TestFailed,
                message,
            })) => {
                assert_eq!(message, "Patch test failed")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            s.get("b", "k").unwrap().value,
            Some(json!({"name":"x","n":2,"t":["a"]}))
        );
        assert_eq!(s.get("b", "k").unwrap().written_ms, T0 + 5);
        assert!(matches!(
            s.patch("b", "missing", &ops, T0),
            Err(StoreError::KeyNotFound { .. })
        ));
        assert!(matches!(
            s.patch("nob", "k", &ops, T0),
            Err(StoreError::BucketNotFound { .. })
        ));
    }

    #[test]
    fn removes() {
        let mut s = MemoryStore::new();
        write(&mut s, "b", Some("k"), json!(1)).unwrap();
        assert_eq!(s.remove("b", "k"), Ok(true));
        assert_eq!(s.remove("b", "k"), Ok(false));
        assert!(matches!(
            s.remove("nob", "k"),
            Err(StoreError::BucketNotFound { .. })
        ));
        assert!(s.remove_bucket("b"));
        assert!(!s.remove_bucket("b"));
        assert_eq!(s.buckets(), Vec::<String>::new());
    }
}
