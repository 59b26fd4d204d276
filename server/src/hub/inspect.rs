//! Read-only views of the hub's per-connection state, for tests and
//! simulations that check a client's registration against the server's.

use cachearoo_core::wire::Subscription;

use super::{ConnId, Hub};
use crate::store::Store;

impl<S: Store> Hub<S> {
    /// The subscriptions `conn` holds now (sorted) and whether its events
    /// carry values; `None` for an unknown connection.
    pub fn registration(&self, conn: ConnId) -> Option<(Vec<Subscription>, bool)> {
        self.conns
            .get(&conn)
            .map(|c| (c.subscriptions.iter().cloned().collect(), c.send_values))
    }

    /// The connections open now, in id order.
    pub fn connections(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }
}
