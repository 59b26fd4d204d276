//! What the handles and the driver task share: the command type, and the
//! little state that handles read without asking the driver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_channel::Sender;
use cachearoo_core::{ListenerId, OpError, OpOptions, Operation, Reply, SendError};
use futures_util::task::AtomicWaker;
use serde_json::Value;

use crate::events::{BinaryEvent, ChangeEvent, ConnectionEvent, DisconnectReason};
use crate::queue::LagSender;

/// A callback for change events.
pub(crate) type ChangeCallback = Box<dyn FnMut(&ChangeEvent) + Send>;
/// A callback taking a string (server id, pong time).
pub(crate) type TextCallback = Box<dyn FnMut(&str) + Send>;
/// A callback for disconnects.
pub(crate) type DisconnectCallback = Box<dyn FnMut(DisconnectReason) + Send>;

/// Where the events of one listener go.
pub(crate) enum ListenerSink {
    /// A [`Listener`](crate::Listener) stream.
    Changes(LagSender<ChangeEvent>),
    /// A [`BinaryListener`](crate::BinaryListener) stream.
    Binary(LagSender<BinaryEvent>),
    /// A callback run on the driver task.
    Callback(ChangeCallback),
}

/// A listener's sink and whether it asked for values.
pub(crate) struct ListenerEntry {
    pub(crate) sink: ListenerSink,
    /// The server sends values to a connection when *any* of its listeners
    /// wants them; listeners that did not ask get events without.
    pub(crate) send_values: bool,
}

/// A request from a handle to the driver task. Replies travel on
/// one-shot (capacity 1) channels; a dropped reply sender means the driver
/// ended.
pub(crate) enum Command {
    Submit {
        op: Operation,
        options: OpOptions,
        reply: Sender<Result<Reply, OpError>>,
    },
    AddListener {
        bucket: String,
        key: String,
        send_values: bool,
        sink: ListenerSink,
        reply: Sender<ListenerId>,
    },
    RemoveListener {
        id: ListenerId,
        reply: Sender<bool>,
    },
    Signal {
        bucket: String,
        key: String,
        value: Option<Value>,
        reply: Sender<Result<(), SendError>>,
    },
    Binary {
        kind: u8,
        bucket: String,
        key: String,
        payload: Vec<u8>,
        reply: Sender<Result<(), SendError>>,
    },
    Ping {
        reply: Sender<Result<(), SendError>>,
    },
    OnConnect(TextCallback),
    OnDisconnect(DisconnectCallback),
    OnPong(TextCallback),
    Subscribe(LagSender<ConnectionEvent>),
    Close,
}

/// State shared by the handles, the listener streams and the driver.
#[derive(Default)]
pub(crate) struct Shared {
    connected: AtomicBool,
    server_id: Mutex<Option<String>>,
    /// Listeners whose stream was dropped, for the driver to unregister.
    dropped_listeners: Mutex<Vec<ListenerId>>,
    /// Wakes the driver when a listener stream is dropped.
    pub(crate) driver_waker: AtomicWaker,
}

/// Locks a mutex, ignoring poisoning: the data guarded here stays
/// consistent even if a holder panicked (plain pushes and replacements).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn server_id(&self) -> Option<String> {
        lock(&self.server_id).clone()
    }

    pub(crate) fn set_connected(&self, server_id: Option<String>) {
        self.connected.store(server_id.is_some(), Ordering::Release);
        *lock(&self.server_id) = server_id;
    }

    pub(crate) fn listener_dropped(&self, id: ListenerId) {
        lock(&self.dropped_listeners).push(id);
        self.driver_waker.wake();
    }

    pub(crate) fn take_dropped_listeners(&self) -> Vec<ListenerId> {
        std::mem::take(&mut *lock(&self.dropped_listeners))
    }
}
