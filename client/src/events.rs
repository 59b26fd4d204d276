//! Events delivered to the application: change events of listeners, binary
//! events, and the connection's state.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::Stream;

pub use cachearoo_core::wire::ChangeEvent;
pub use cachearoo_core::{DisconnectReason, ListenerId, ProtocolError};

use crate::queue::{LagReceiver, Lagged};
use crate::shared::Shared;

/// A binary event received from another client (PROTOCOL.md §2.5).
///
/// The sender's apiKey, which the server relays in the frame header, is
/// deliberately left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryEvent {
    /// Application-defined type byte.
    pub kind: u8,
    /// Bucket the event was sent to.
    pub bucket: String,
    /// Key the event was sent to.
    pub key: String,
    /// The payload after the 128-byte header.
    pub payload: Vec<u8>,
}

/// A change in the connection's state, or a message from the server not
/// tied to an operation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The server greeted: the WebSocket is usable (JS `onConnect`).
    Connected {
        /// The server's id.
        server_id: String,
    },
    /// A connected WebSocket ended (JS `onDisconnect`); the client reconnects
    /// by itself unless it was closed.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// The server answered a ping (JS `onPong`).
    Pong {
        /// The server's time (ISO 8601).
        time: String,
    },
    /// The server reported an error not tied to an operation (for example
    /// `Not authorized to send event` after a signal with a wrong apiKey).
    ServerError {
        /// The server's message.
        message: String,
    },
    /// A frame from the server could not be understood; the connection goes on.
    ProtocolError(ProtocolError),
}

/// Unregisters a listener when its stream is dropped.
struct DropGuard {
    id: ListenerId,
    shared: Arc<Shared>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.shared.listener_dropped(self.id);
    }
}

/// The change events of one listener, as a [`Stream`]; from
/// [`Connection::add_listener`](crate::Connection::add_listener).
///
/// Items are `Ok(event)`, or `Err(Lagged(n))` when this stream fell more
/// than [`Options::listener_capacity`](crate::Options::listener_capacity)
/// events behind and the `n` oldest were dropped (the driver never waits for
/// a slow listener). Dropping the stream removes the listener (and the
/// server subscription, when no other listener needs it). The stream ends
/// when the client is closed or the listener is removed.
pub struct Listener {
    rx: LagReceiver<ChangeEvent>,
    guard: DropGuard,
}

impl Listener {
    pub(crate) fn new(id: ListenerId, rx: LagReceiver<ChangeEvent>, shared: Arc<Shared>) -> Self {
        Listener {
            rx,
            guard: DropGuard { id, shared },
        }
    }

    /// The listener's id (for [`Connection::remove_listener`](crate::Connection::remove_listener)).
    pub fn id(&self) -> ListenerId {
        self.guard.id
    }
}

impl Stream for Listener {
    type Item = Result<ChangeEvent, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("id", &self.guard.id)
            .finish()
    }
}

/// The binary events sent to one bucket/key, as a [`Stream`]; from
/// [`Connection::add_binary_listener`](crate::Connection::add_binary_listener).
/// Same queueing, lag and drop rules as [`Listener`].
pub struct BinaryListener {
    rx: LagReceiver<BinaryEvent>,
    guard: DropGuard,
}

impl BinaryListener {
    pub(crate) fn new(id: ListenerId, rx: LagReceiver<BinaryEvent>, shared: Arc<Shared>) -> Self {
        BinaryListener {
            rx,
            guard: DropGuard { id, shared },
        }
    }

    /// The listener's id.
    pub fn id(&self) -> ListenerId {
        self.guard.id
    }
}

impl Stream for BinaryListener {
    type Item = Result<BinaryEvent, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

impl std::fmt::Debug for BinaryListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryListener")
            .field("id", &self.guard.id)
            .finish()
    }
}

/// The connection's state changes as a [`Stream`]; from
/// [`Connection::events`](crate::Connection::events). It starts with
/// `Connected` when the client is connected at subscription time. Same
/// queueing and lag rules as [`Listener`]; ends when the client is closed.
pub struct ConnectionEvents {
    rx: LagReceiver<ConnectionEvent>,
}

impl ConnectionEvents {
    pub(crate) fn new(rx: LagReceiver<ConnectionEvent>) -> Self {
        ConnectionEvents { rx }
    }
}

impl Stream for ConnectionEvents {
    type Item = Result<ConnectionEvent, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

impl std::fmt::Debug for ConnectionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionEvents")
    }
}
