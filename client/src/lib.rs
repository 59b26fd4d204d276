//! The async Cachearoo client.
//!
//! **Not implemented yet** (tracked by the async-client issue): this crate
//! will hold the runtime-agnostic async API (`Cachearoo`, listeners as
//! streams, request–reply, competing consumers) driving `cachearoo-core`
//! over a small `Runtime` trait. Today it exports nothing.
