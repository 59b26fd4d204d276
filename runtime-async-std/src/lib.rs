//! async-std runtime adapter for the Cachearoo client.
//!
//! **Not implemented yet** (tracked by the async-client issue): it will
//! implement the client's `Runtime` trait on async-std. async-std is
//! discontinued upstream; smol is recommended for new code. Exports nothing today.
