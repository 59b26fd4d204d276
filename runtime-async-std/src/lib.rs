//! The [async-std] runtime for the Cachearoo client.
//!
//! **async-std is discontinued upstream** (RUSTSEC-2025-0052); this adapter
//! exists for applications that already run on it. For new code use
//! `cachearoo-smol`: the client API is the same.
//!
//! This crate only implements [`cachearoo::Runtime`] on async-std (spawn,
//! `async_std::task::sleep`, `async_std::net::TcpStream`) and re-exports the
//! whole client API from [`cachearoo`]. Start a client with [`connect`]:
//!
//! ```no_run
//! use cachearoo_async_std::{connect, Options};
//!
//! async_std::task::block_on(async {
//!     let client = connect(Options::new().host("127.0.0.1").port(4300));
//!     client.write("k1", &serde_json::json!({"hello": "world"})).await?;
//!     client.close().await;
//!     Ok::<_, cachearoo_async_std::Error>(())
//! })
//! .unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::time::Duration;

pub use cachearoo::*;

/// [`Runtime`] on async-std.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStdRuntime;

impl Runtime for AsyncStdRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        // Dropping the JoinHandle detaches the task; the driver task ends
        // by itself when the client closes.
        drop(async_std::task::spawn(future));
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::sleep(duration))
    }

    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxedIo>> {
        let host = host.to_owned();
        Box::pin(async move {
            let stream = async_std::net::TcpStream::connect((host.as_str(), port)).await?;
            // Small frames (requests, events) should leave at once.
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}

/// Creates a client on async-std and starts connecting in the background;
/// returns at once. Same as `Cachearoo::new(options, AsyncStdRuntime)`.
pub fn connect(options: Options) -> Cachearoo {
    Cachearoo::new(options, AsyncStdRuntime)
}
