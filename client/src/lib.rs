//! The async Cachearoo client, for any async runtime.
//!
//! This crate holds the whole client above "dial a TCP stream": the
//! [`Cachearoo`] handle and its operations, listeners as [`Stream`]s, the
//! driver task that runs the sans-IO [`cachearoo_core`] state machine, TLS
//! ([futures-rustls]), the WebSocket ([async-tungstenite]) and the REST
//! fallback ([hyper] 1). A runtime only supplies spawn, timers and TCP
//! through the small [`Runtime`] trait: use `cachearoo-smol` or
//! `cachearoo-async-std`, or implement it yourself.
//!
//! [`Stream`]: futures_lite::Stream
//! [futures-rustls]: futures_rustls
//! [async-tungstenite]: async_tungstenite
//!
//! # Example
//!
//! ```
//! # use std::time::Duration;
//! # use cachearoo::{BoxFuture, BoxedIo, Runtime};
//! # struct Smol;
//! # impl Runtime for Smol {
//! #     fn spawn(&self, f: BoxFuture<'static, ()>) { smol::spawn(f).detach(); }
//! #     fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
//! #         Box::pin(async move { smol::Timer::after(d).await; })
//! #     }
//! #     fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<BoxedIo>> {
//! #         let host = host.to_owned();
//! #         Box::pin(async move {
//! #             Ok(Box::new(smol::net::TcpStream::connect((host.as_str(), port)).await?) as BoxedIo)
//! #         })
//! #     }
//! # }
//! use cachearoo::{Cachearoo, Options};
//! use futures_lite::StreamExt;
//! use serde::{Deserialize, Serialize};
//! use serde_json::json;
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Car {
//!     make: String,
//!     year: u16,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A server to talk to (the embedded test server; use your own address).
//! let server = cachearoo_server::start(cachearoo_server::ServerConfig::default().port(0))?;
//!
//! smol::block_on(async {
//!     // `Smol` implements `Runtime` (as `cachearoo_smol::SmolRuntime` does).
//!     let client = Cachearoo::new(Options::new().address(server.addr()).bucket("cars"), Smol);
//!     let connection = client.connection();
//!     connection.wait_connected().await?;
//!
//!     // Listen to every key of the bucket, with values.
//!     let mut changes = connection.add_listener("cars", "*", true).await?;
//!
//!     // Write and read back, typed through serde. (Once a request of
//!     // this client is answered, the server also has its listener.)
//!     let car = Car { make: "Saab".into(), year: 1987 };
//!     client.write("saab", &car).await?;
//!     assert_eq!(client.read::<Car>("saab").await?, car);
//!
//!     // Another client changes it; we see the change (not our own).
//!     let other = Cachearoo::new(Options::new().address(server.addr()).bucket("cars"), Smol);
//!     other.connection().wait_connected().await?;
//!     let patch = json!([{"op": "replace", "path": "/year", "value": 1988}]);
//!     other.patch("saab", patch).await?;
//!     let event = changes.next().await.expect("stream open")?;
//!     assert_eq!(event.key, "saab");
//!     assert_eq!(event.value, Some(json!({"make": "Saab", "year": 1988})));
//!
//!     // Per-call options are builder methods.
//!     let err = client.write("saab", &car).fail_if_exists().await.unwrap_err();
//!     assert!(err.is_already_exists());
//!     let keys = client.list().filter("sa").await?;
//!     assert_eq!(keys.len(), 1);
//!
//!     other.close().await;
//!     client.close().await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! server.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! # Queues and slow consumers
//!
//! Handles talk to the driver over a bounded command queue (callers wait
//! while it is full). Every listener and event stream has a bounded queue
//! of [`Options::listener_capacity`] events; the driver never waits for a
//! consumer: when a queue is full the **oldest** event is dropped, and the
//! stream yields `Err(Lagged(n))` with the number dropped before the next
//! event. Frames waiting for the socket are bounded too (new commands wait).
//!
//! # Messaging
//!
//! Request–reply ([`Requestor`], [`Replier`]) and competing consumers
//! ([`Producer`], [`CompetingConsumer`]) work with the JS and C++ clients'
//! endpoints on the same channels; see the [`messaging`] module for the
//! delivery guarantees.
//!
//! # Logging
//!
//! The driver emits [`tracing`] events for connection attempts,
//! reconnects, connects, disconnects, timeouts and REST requests. The
//! apiKey is never logged.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod connection;
mod driver;
mod error;
mod events;
pub mod messaging;
mod options;
mod queue;
mod runtime;
mod shared;
mod transport;

pub use client::{Cachearoo, IntoPatch, List, Patch, Read, Remove, Write};
pub use connection::Connection;
pub use error::{Error, Result};
pub use events::{
    BinaryEvent, BinaryListener, ChangeEvent, ConnectionEvent, ConnectionEvents, DisconnectReason,
    Listener, ListenerId, ProtocolError,
};
pub use messaging::{
    CompetingConsumer, InFlight, IncomingRequest, JobDone, JobProgress, JobQueryCallback,
    MessagingError, Overflow, Producer, Replier, ReplierOptions, Reply, ReplyProgress, Requestor,
    Worker, JOB_NOT_SUPPORTED, NO_WORKER_AVAILABLE, REPLIER_OVERLOADED,
};
pub use options::{Options, TlsOptions};
pub use queue::Lagged;
pub use runtime::{AsyncStream, BoxFuture, BoxedIo, Runtime};

pub use cachearoo_core::wire::{Expire, ListItem};
pub use cachearoo_core::{Backoff, HttpRequest, HttpResponse, Method, OpError, SendError};
/// The stream trait of listeners, and its combinators (`next()`, ...).
pub use futures_lite::{Stream, StreamExt};
/// Certificate types for [`TlsOptions`].
pub use futures_rustls::pki_types;
/// The rustls version used for TLS (for [`TlsOptions::client_config`]).
pub use futures_rustls::rustls;
/// The JSON patch types [`Cachearoo::patch`] accepts.
pub use json_patch;
