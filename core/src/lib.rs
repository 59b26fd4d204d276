//! Sans-IO core of the Cachearoo client.
//!
//! Pure state machines and the wire codec: no async, no sockets, no clock, no
//! randomness source. Time comes in as [`Instant`] on every call; randomness
//! from a seed given at construction. The async client (`cachearoo`) and the
//! deterministic simulation tests drive the same [`Client`].
//!
//! # Example: one read over a (pretend) WebSocket
//!
//! ```
//! use cachearoo_core::{Client, Config, Event, Instant, Operation, OpOptions, Reply, Transmit};
//!
//! let now = Instant::ZERO;
//! let mut client = Client::new(Config::default(), 7, now);
//!
//! // The driver is told to open a socket...
//! let Some(Transmit::Connect { socket, url, .. }) = client.poll_transmit() else { panic!() };
//! assert_eq!(url, "ws://127.0.0.1:4300/");
//! // ...opens it, and the server greets.
//! client.handle_socket_opened(now, socket);
//! client.handle_text(now, socket, r#"{"id":"server-1"}"#);
//! assert_eq!(client.poll_event(), Some(Event::Connected { server_id: "server-1".into() }));
//!
//! // A read becomes a frame...
//! let op = client.submit(now, Operation::Read { key: "k1".into() }, OpOptions::default());
//! let Some(Transmit::Text { text, .. }) = client.poll_transmit() else { panic!() };
//! assert_eq!(
//!     text,
//!     r#"{"msg":"datastore-operation","request":{"op":"read","id":"1","bucket":"default","key":"k1"}}"#
//! );
//! // ...and the server's answer completes it.
//! client.handle_text(now, socket, r#"{"response":{"id":"1","value":{"n":1}}}"#);
//! assert_eq!(
//!     client.poll_event(),
//!     Some(Event::Completed { op, result: Ok(Reply::Value(Some(serde_json::json!({"n": 1})))) })
//! );
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod client;
pub mod config;
pub mod op;
pub mod rest;
pub mod rng;
pub mod time;
pub mod wire;

pub use client::{
    Client, ConsumerId, DisconnectReason, Event, IncomingId, JobAnswer, JobId, ListenerId,
    MessagingError, MessagingEvent, ProducerId, ProtocolError, Registration, ReplierId, RequestId,
    RequestorId, SendError, SocketId, TaskId, Transmit, JOB_NOT_SUPPORTED, NO_WORKER_AVAILABLE,
};
pub use config::{Backoff, Config};
pub use op::{OpError, OpId, OpOptions, Operation, Reply};
pub use rest::{HttpRequest, HttpResponse, Method};
pub use time::Instant;
