//! A [`Store`] that records every change it applies, so the simulation can
//! check that each successful operation was applied exactly once, and never
//! after it resolved.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use cachearoo_core::wire::ListItem;
use cachearoo_server::store::{MemoryStore, Record, Store, StoreError, WriteOptions};
use serde_json::Value;

/// One change applied to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Simulated wall-clock time of the change (ms).
    pub at_ms: u64,
    /// `write`, `patch` or `remove`.
    pub kind: &'static str,
    /// Bucket.
    pub bucket: String,
    /// Key (the generated one for generated writes).
    pub key: String,
    /// The written value, or the patch operations as JSON.
    pub value: Option<Value>,
}

#[derive(Debug, Default)]
struct Shared {
    log: Vec<Applied>,
    clock_ms: Cell<u64>,
}

/// A [`MemoryStore`] with a log of applied changes. Clones share the log
/// (and, with [`RecordingStore::share_data`], the data).
#[derive(Debug, Clone)]
pub struct RecordingStore {
    data: Rc<RefCell<MemoryStore>>,
    shared: Rc<RefCell<Shared>>,
}

impl Default for RecordingStore {
    fn default() -> Self {
        RecordingStore {
            data: Rc::new(RefCell::new(MemoryStore::new())),
            shared: Rc::new(RefCell::new(Shared::default())),
        }
    }
}

impl RecordingStore {
    /// A handle on the same data and log (a server restart that keeps data).
    pub fn share_data(&self) -> RecordingStore {
        self.clone()
    }

    /// Empty data, same log (a server restart that loses data).
    pub fn fresh_data(&self) -> RecordingStore {
        RecordingStore {
            data: Rc::new(RefCell::new(MemoryStore::new())),
            shared: self.shared.clone(),
        }
    }

    /// Sets the time stamped on removes (which carry none).
    pub fn set_clock(&self, now_ms: u64) {
        self.shared.borrow().clock_ms.set(now_ms);
    }

    /// Every change applied so far.
    pub fn log(&self) -> Vec<Applied> {
        self.shared.borrow().log.clone()
    }

    fn record(
        &self,
        kind: &'static str,
        bucket: &str,
        key: &str,
        value: Option<Value>,
        at_ms: Option<u64>,
    ) {
        let mut s = self.shared.borrow_mut();
        let at_ms = at_ms.unwrap_or_else(|| s.clock_ms.get());
        s.log.push(Applied {
            at_ms,
            kind,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            value,
        });
    }
}

impl Store for RecordingStore {
    fn get(&self, bucket: &str, key: &str) -> Result<Record, StoreError> {
        self.data.borrow().get(bucket, key)
    }

    fn list(&self, bucket: &str, prefix: Option<&str>, keys_only: bool) -> Vec<ListItem> {
        self.data.borrow().list(bucket, prefix, keys_only)
    }

    fn write(
        &mut self,
        bucket: &str,
        key: Option<&str>,
        value: Option<Value>,
        options: WriteOptions,
        now_ms: u64,
    ) -> Result<String, StoreError> {
        let logged = value.clone();
        let key = self
            .data
            .borrow_mut()
            .write(bucket, key, value, options, now_ms)?;
        self.record("write", bucket, &key, logged, Some(now_ms));
        Ok(key)
    }

    fn patch(
        &mut self,
        bucket: &str,
        key: &str,
        ops: &[json_patch::PatchOperation],
        now_ms: u64,
    ) -> Result<Value, StoreError> {
        let v = self.data.borrow_mut().patch(bucket, key, ops, now_ms)?;
        self.record(
            "patch",
            bucket,
            key,
            serde_json::to_value(ops).ok(),
            Some(now_ms),
        );
        Ok(v)
    }

    fn remove(&mut self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        let r = self.data.borrow_mut().remove(bucket, key)?;
        self.record("remove", bucket, key, None, None);
        Ok(r)
    }

    fn remove_bucket(&mut self, bucket: &str) -> bool {
        let r = self.data.borrow_mut().remove_bucket(bucket);
        self.record("remove", bucket, "", None, None);
        r
    }

    fn buckets(&self) -> Vec<String> {
        self.data.borrow().buckets()
    }
}
