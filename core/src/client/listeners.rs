//! The listener registry: local listeners, the deduplicated subscription
//! set sent to the server, and routing of incoming events to listener ids.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

use crate::wire::Subscription;

/// Identifies one listener from `add_listener` to `remove_listener`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(pub u64);

/// Who a listener's events go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The application: events surface as [`super::Event::Change`].
    App,
    /// A messaging state machine of this client: events are consumed inside.
    Messaging(super::messaging::Endpoint),
}

#[derive(Debug, Clone)]
struct Listener {
    subscription: Subscription,
    send_values: bool,
    owner: Owner,
}

/// What the server must hold for this client: the subscription set and
/// whether values are wanted (by any listener).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Registration {
    /// Deduplicated, sorted subscriptions.
    pub events: Vec<Subscription>,
    /// `true` when any listener wants values.
    pub send_values: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Listeners {
    next_id: u64,
    by_id: BTreeMap<ListenerId, Listener>,
}

impl Listeners {
    pub(crate) fn add(
        &mut self,
        bucket: String,
        key: String,
        send_values: bool,
        owner: Owner,
    ) -> ListenerId {
        self.next_id += 1;
        let id = ListenerId(self.next_id);
        self.by_id.insert(
            id,
            Listener {
                subscription: Subscription { bucket, key },
                send_values,
                owner,
            },
        );
        id
    }

    pub(crate) fn remove(&mut self, id: ListenerId) -> bool {
        self.by_id.remove(&id).is_some()
    }

    /// Number of the application's listeners.
    pub(crate) fn app_len(&self) -> usize {
        self.by_id
            .values()
            .filter(|l| l.owner == Owner::App)
            .count()
    }

    pub(crate) fn registration(&self) -> Registration {
        let events: BTreeSet<&Subscription> =
            self.by_id.values().map(|l| &l.subscription).collect();
        Registration {
            events: events.into_iter().cloned().collect(),
            send_values: self.by_id.values().any(|l| l.send_values),
        }
    }

    /// Ids of the application's listeners an event on `bucket`/`key` is
    /// for, in id order.
    pub(crate) fn matching(&self, bucket: &str, key: &str) -> Vec<ListenerId> {
        self.by_id
            .iter()
            .filter(|(_, l)| l.owner == Owner::App && l.subscription.matches(bucket, key))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The application's listeners an event on `bucket`/`key` is for, in
    /// id order, split into those that asked for values and those that
    /// did not.
    pub(crate) fn matching_by_values(
        &self,
        bucket: &str,
        key: &str,
    ) -> (Vec<ListenerId>, Vec<ListenerId>) {
        let mut with = Vec::new();
        let mut without = Vec::new();
        for (id, l) in &self.by_id {
            if l.owner == Owner::App && l.subscription.matches(bucket, key) {
                if l.send_values {
                    with.push(*id);
                } else {
                    without.push(*id);
                }
            }
        }
        (with, without)
    }

    /// The messaging endpoints an event on `bucket`/`key` is for.
    pub(crate) fn matching_internal(
        &self,
        bucket: &str,
        key: &str,
    ) -> Vec<super::messaging::Endpoint> {
        let mut out = Vec::new();
        for l in self.by_id.values() {
            if let Owner::Messaging(e) = l.owner {
                if l.subscription.matches(bucket, key) && !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_is_deduplicated_and_routes_wildcards() {
        let mut l = Listeners::default();
        let a = l.add("b1".into(), "*".into(), false, Owner::App);
        let b = l.add("b1".into(), "*".into(), true, Owner::App);
        let c = l.add("*".into(), "k1".into(), false, Owner::App);
        let r = l.registration();
        assert_eq!(r.events.len(), 2);
        assert!(r.send_values);
        assert_eq!(l.matching("b1", "k1"), vec![a, b, c]);
        assert_eq!(l.matching("b2", "k1"), vec![c]);
        assert_eq!(l.matching("b2", "k2"), vec![]);
        assert!(l.remove(b));
        assert!(!l.remove(b));
        assert!(!l.registration().send_values);
    }
}
