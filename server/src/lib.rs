//! A Cachearoo-compatible server.
//!
//! **Not implemented yet** (tracked by the server issue): a sans-IO hub,
//! an in-memory store and a WebSocket + REST front on smol. Exports nothing today.
