//! Subscription index: which connections want events of `(bucket, key)`.
//!
//! Patterns are exact names or `*`, so an event on `(b, k)` can only match
//! the four patterns `(b,k)`, `(b,*)`, `(*,k)`, `(*,*)`: a lookup costs four
//! map probes plus the size of the answer, whatever the number of
//! connections.

use std::collections::{BTreeMap, BTreeSet};

use cachearoo_core::wire::Subscription;

use super::ConnId;

const WILDCARD: &str = Subscription::WILDCARD;

/// Connections by bucket pattern, then key pattern.
#[derive(Debug, Default)]
pub(crate) struct SubIndex {
    by_pattern: BTreeMap<String, BTreeMap<String, BTreeSet<ConnId>>>,
}

impl SubIndex {
    pub(crate) fn insert(&mut self, conn: ConnId, sub: &Subscription) {
        self.by_pattern
            .entry(sub.bucket.clone())
            .or_default()
            .entry(sub.key.clone())
            .or_default()
            .insert(conn);
    }

    pub(crate) fn remove(&mut self, conn: ConnId, sub: &Subscription) {
        let Some(keys) = self.by_pattern.get_mut(&sub.bucket) else {
            return;
        };
        if let Some(conns) = keys.get_mut(&sub.key) {
            conns.remove(&conn);
            if conns.is_empty() {
                keys.remove(&sub.key);
            }
        }
        if keys.is_empty() {
            self.by_pattern.remove(&sub.bucket);
        }
    }

    /// The connections subscribed to `(bucket, key)`, in id order, each once.
    pub(crate) fn matching(&self, bucket: &str, key: &str) -> BTreeSet<ConnId> {
        let mut out = BTreeSet::new();
        let buckets: &[&str] = if bucket == WILDCARD {
            &[WILDCARD]
        } else {
            &[bucket, WILDCARD]
        };
        let keys: &[&str] = if key == WILDCARD {
            &[WILDCARD]
        } else {
            &[key, WILDCARD]
        };
        for b in buckets {
            let Some(by_key) = self.by_pattern.get(*b) else {
                continue;
            };
            for k in keys {
                if let Some(conns) = by_key.get(*k) {
                    out.extend(conns.iter().copied());
                }
            }
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_pattern.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(b: &str, k: &str) -> Subscription {
        Subscription {
            bucket: b.into(),
            key: k.into(),
        }
    }

    #[test]
    fn matches_exact_and_whole_wildcards_only() {
        let mut idx = SubIndex::default();
        idx.insert(1, &sub("b1", "*"));
        idx.insert(2, &sub("*", "k1"));
        idx.insert(3, &sub("b2", "x"));
        idx.insert(4, &sub("b1", "k*"));
        idx.insert(5, &sub("*", "*"));
        let m = |b, k| idx.matching(b, k).into_iter().collect::<Vec<_>>();
        assert_eq!(m("b1", "k1"), [1, 2, 5]);
        assert_eq!(m("b2", "k1"), [2, 5]);
        assert_eq!(m("b2", "x"), [3, 5]);
        assert_eq!(m("b1", "k3"), [1, 5]);
        assert_eq!(m("b1", "k*"), [1, 4, 5]);
        assert_eq!(m("b9", "z"), [5]);
        for (c, s) in [
            (1, sub("b1", "*")),
            (2, sub("*", "k1")),
            (3, sub("b2", "x")),
            (4, sub("b1", "k*")),
            (5, sub("*", "*")),
        ] {
            idx.remove(c, &s);
        }
        assert!(idx.is_empty());
    }
}
