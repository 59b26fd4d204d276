//! A Cachearoo-compatible server.
//!
//! Three layers:
//! - [`hub`]: the sans-IO hub — connections, subscriptions, session keys,
//!   apiKey and public-read rules, the binary relay and the REST API. No
//!   sockets, no clock, no randomness; the simulation tests drive it.
//! - [`store`]: the [`Store`](store::Store) trait and the in-memory
//!   [`MemoryStore`](store::MemoryStore).
//! - the network front: one TCP port serving the WebSocket upgrade and the
//!   REST API (hyper 1 + async-tungstenite on smol), started in-process with
//!   [`start`].
//!
//! ```no_run
//! let server = cachearoo_server::start(cachearoo_server::ServerConfig::default().port(0))?;
//! println!("ws://{}/?id=me  (server id {})", server.addr(), server.server_id());
//! server.shutdown();
//! # Ok::<(), cachearoo_server::Error>(())
//! ```
//!
//! The differences from the reference server are listed in the crate's
//! README.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hub;
mod net;
pub mod store;
pub mod time;

pub use hub::{Hub, HubConfig};
pub use net::{start, Error, RunningServer, ServerConfig, ServerStats};
