//! State shared by every task of a running server: the hub behind one lock,
//! and the send queue of each WebSocket connection.
//!
//! Every call into the hub drains its outputs under the same lock, so each
//! connection's queue receives frames in the hub's order. Delivery never
//! waits: a full queue closes that connection (a slow consumer) instead of
//! stalling the hub and everyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use async_channel::{Receiver, Sender, TrySendError};
use bytes::Bytes;
use smol::Executor;

use super::ServerConfig;
use crate::hub::{CloseReason, ConnId, ConnectError, Hub, Output, SharedText};

/// A frame waiting in a connection's send queue.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Text(SharedText),
    Binary(Bytes),
    /// A WebSocket-level ping (keepalive).
    Ping,
}

impl Outgoing {
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Text(t) => t.len(),
            Outgoing::Binary(b) => b.len(),
            Outgoing::Ping => 0,
        }
    }
}

/// What the front keeps per WebSocket connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) tx: Sender<Outgoing>,
    /// Bytes queued but not yet written (the writer subtracts).
    pub(crate) queued_bytes: Arc<AtomicUsize>,
    /// Tells the connection task to close.
    pub(crate) kill: Sender<CloseReason>,
}

struct State {
    hub: Hub,
    conns: HashMap<ConnId, ConnHandle>,
}

/// Counters kept by the network front.
#[derive(Debug, Default)]
pub(crate) struct NetCounters {
    pub(crate) oversize_closes: AtomicU64,
    pub(crate) ping_timeouts: AtomicU64,
    pub(crate) refused_upgrades: AtomicU64,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) config: ServerConfig,
    next_conn: AtomicU64,
    /// Weak: tasks hold `Arc<Shared>`, and the executor must be able to die
    /// (dropping whatever tasks remain) when its threads end.
    executor: Weak<Executor<'static>>,
    /// Closed (all senders dropped) when the server shuts down.
    pub(crate) shutdown: Receiver<()>,
    /// Tasks alive (HTTP connections and WebSocket connections).
    pub(crate) active_tasks: AtomicUsize,
    pub(crate) counters: NetCounters,
}

/// Milliseconds since the Unix epoch: the only clock read of the server.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Shared {
    pub(crate) fn new(
        hub: Hub,
        config: ServerConfig,
        executor: Weak<Executor<'static>>,
        shutdown: Receiver<()>,
    ) -> Self {
        Shared {
            state: Mutex::new(State {
                hub,
                conns: HashMap::new(),
            }),
            config,
            next_conn: AtomicU64::new(1),
            executor,
            shutdown,
            active_tasks: AtomicUsize::new(0),
            counters: NetCounters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The hub does not panic on input; if it ever did, the state is
        // still consistent enough to keep serving the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `fut` on the server's executor, counted in `active_tasks`.
    pub(crate) fn spawn<F>(self: &Arc<Self>, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some(ex) = self.executor.upgrade() else {
            return;
        };
        let guard = TaskGuard::new(self.clone());
        ex.spawn(async move {
            let _guard = guard;
            fut.await;
        })
        .detach();
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `f` on the hub, then delivers what it produced.
    pub(crate) fn with_hub<R>(&self, f: impl FnOnce(&mut Hub, u64) -> R) -> R {
        let now = now_ms();
        let mut state = self.lock();
        let r = f(&mut state.hub, now);
        dispatch(&mut state, now, self.config.send_queue_bytes);
        r
    }

    /// Registers a WebSocket connection; its greeting is queued at once.
    pub(crate) fn connect(
        &self,
        conn: ConnId,
        client_id: Option<String>,
        handle: ConnHandle,
    ) -> Result<(), ConnectError> {
        let now = now_ms();
        let mut state = self.lock();
        state.conns.insert(conn, handle);
        let r = state.hub.connect(conn, client_id, now);
        if r.is_err() {
            state.conns.remove(&conn);
        }
        dispatch(&mut state, now, self.config.send_queue_bytes);
        r
    }

    /// The connection's socket is gone.
    pub(crate) fn disconnect(&self, conn: ConnId) {
        let now = now_ms();
        let mut state = self.lock();
        state.conns.remove(&conn);
        state.hub.disconnect(conn, now);
        dispatch(&mut state, now, self.config.send_queue_bytes);
    }

    /// The hub's counters.
    pub(crate) fn hub_stats(&self) -> crate::hub::HubStats {
        self.lock().hub.stats()
    }
}

/// Delivers the hub's outputs to the connections' queues without waiting.
fn dispatch(state: &mut State, now: u64, max_queued_bytes: usize) {
    while let Some(out) = state.hub.poll_output() {
        let (conn, msg) = match out {
            Output::Text { conn, text } => (conn, Outgoing::Text(text)),
            Output::Binary { conn, bytes } => (conn, Outgoing::Binary(bytes)),
            Output::Close { conn, reason } => {
                if let Some(h) = state.conns.remove(&conn) {
                    // A full kill queue means a close is already on its way.
                    let _ = h.kill.try_send(reason);
                }
                continue;
            }
        };
        let Some(h) = state.conns.get(&conn) else {
            continue;
        };
        let len = msg.len();
        let queued = h.queued_bytes.load(Ordering::Acquire);
        // A single frame may always be queued on an empty queue, however big.
        let too_many_bytes = queued > 0 && queued.saturating_add(len) > max_queued_bytes;
        let full = too_many_bytes
            || match h.tx.try_send(msg) {
                Ok(()) => {
                    h.queued_bytes.fetch_add(len, Ordering::AcqRel);
                    false
                }
                Err(TrySendError::Full(_)) => true,
                // The connection task is ending; it disconnects by itself.
                Err(TrySendError::Closed(_)) => false,
            };
        if full {
            tracing::warn!(
                conn,
                queued_bytes = queued,
                "closing a WebSocket connection that does not keep up (send queue full)"
            );
            state.hub.close(conn, CloseReason::SlowConsumer, now);
        }
    }
}

/// Counts a live task; decrements on drop, whatever ends the task.
struct TaskGuard(Arc<Shared>);

impl TaskGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.active_tasks.fetch_add(1, Ordering::AcqRel);
        TaskGuard(shared)
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.active_tasks.fetch_sub(1, Ordering::AcqRel);
    }
}
