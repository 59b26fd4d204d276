//! What the client state machine asks of its driver ([`Transmit`]) and
//! tells its application ([`Event`]).

use alloc::string::String;
use alloc::vec::Vec;

use super::listeners::ListenerId;
use crate::op::{OpError, OpId, Reply};
use crate::rest::HttpRequest;
use crate::wire::{BinaryHeader, BinaryHeaderError, ChangeEvent, DecodeError};

/// Identifies one WebSocket connection attempt. I/O facts about an older
/// socket than the current one are ignored, so a driver may report them late.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(pub u64);

/// An I/O action for the driver, drained with `Client::poll_transmit`.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// Dial and upgrade a WebSocket to `url`; report `handle_socket_opened`
    /// or `handle_socket_closed` for `socket`.
    Connect {
        /// The new socket.
        socket: SocketId,
        /// `ws://` or `wss://` URL.
        url: String,
        /// Host to dial.
        host: String,
        /// Port to dial.
        port: u16,
        /// Use TLS.
        secure: bool,
    },
    /// Send a text frame.
    Text {
        /// On this socket.
        socket: SocketId,
        /// The frame.
        text: String,
    },
    /// Send a binary frame.
    Binary {
        /// On this socket.
        socket: SocketId,
        /// The whole frame, header included.
        bytes: Vec<u8>,
    },
    /// Close the socket (then or later report `handle_socket_closed`, or not:
    /// the core has already forgotten it).
    Close {
        /// The socket.
        socket: SocketId,
    },
    /// Perform an HTTP request and report `handle_http_response` or
    /// `handle_http_failed` with `op`.
    Http {
        /// The operation this request performs.
        op: OpId,
        /// The request.
        request: HttpRequest,
    },
    /// Abandon the HTTP request of `op` (it timed out or the client closed).
    CancelHttp {
        /// The operation.
        op: OpId,
    },
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The driver reported the socket closed.
    SocketClosed,
    /// Too many pings went unanswered.
    PongTimeout,
    /// `close()` was called.
    ClientClosed,
}

/// Something the application should know, drained with `Client::poll_event`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The greeting arrived: the connection is usable.
    Connected {
        /// The server's id.
        server_id: String,
    },
    /// A connection that had been `Connected` ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// An operation ended (exactly once per [`OpId`]).
    Completed {
        /// The operation.
        op: OpId,
        /// Its result.
        result: Result<Reply, OpError>,
    },
    /// A change, delete or signal event for these listeners.
    ///
    /// One frame from the server gives at most two of these, back to back:
    /// one for the matching listeners that asked for values (the event as
    /// received) and one for those that did not (its `value` removed).
    Change {
        /// The matching local listeners this copy is for, in id order.
        listeners: Vec<ListenerId>,
        /// The event.
        event: ChangeEvent,
    },
    /// A binary event.
    Binary {
        /// Every local listener whose bucket/key matches the header.
        listeners: Vec<ListenerId>,
        /// The frame's header.
        header: BinaryHeader,
        /// The payload after the header.
        payload: Vec<u8>,
    },
    /// The server answered a ping.
    Pong {
        /// The server's time.
        time: String,
    },
    /// The server reported an error not tied to a request (e.g. `Not
    /// authorized to send event`, `Message is not valid JSON`).
    ServerError {
        /// The server's message.
        message: String,
    },
    /// A frame from the server could not be understood; the connection goes on.
    ProtocolError(ProtocolError),
    /// Request–reply and competing-consumer events.
    Messaging(super::messaging::MessagingEvent),
}

/// A frame from the server the client could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A text frame that did not decode.
    #[error("undecodable text frame: {0}")]
    Text(DecodeError),
    /// A binary frame with a bad header.
    #[error("bad binary frame: {0}")]
    Binary(BinaryHeaderError),
    /// A response whose id matches nothing and is not a number we issued.
    #[error("response with an unknown id")]
    UnknownResponseId,
}

/// Why a fire-and-forget message (signal, binary event, ping) was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// There is no connected WebSocket (these messages have no REST form).
    #[error("not connected")]
    NotConnected,
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// The binary header could not be encoded.
    #[error(transparent)]
    BinaryHeader(#[from] BinaryHeaderError),
}
