//! smol runtime adapter for the Cachearoo client.
//!
//! **Not implemented yet** (tracked by the async-client issue): it will
//! implement the client's `Runtime` trait (spawn, timer, dial TCP) on smol
//! and re-export the API with a convenience constructor. Exports nothing today.
