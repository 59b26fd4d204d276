//! The [smol] runtime for the Cachearoo client.
//!
//! This crate only implements [`cachearoo::Runtime`] on smol (spawn on the
//! global executor, `smol::Timer`, `smol::net::TcpStream`) and re-exports
//! the whole client API from [`cachearoo`], so `cachearoo_smol::Cachearoo`
//! is the client. Start one with [`connect`]:
//!
//! ```no_run
//! use cachearoo_smol::{connect, Options};
//!
//! smol::block_on(async {
//!     let client = connect(Options::new().host("127.0.0.1").port(4300));
//!     client.write("k1", &serde_json::json!({"hello": "world"})).await?;
//!     let value: serde_json::Value = client.read("k1").await?;
//!     println!("{value}");
//!     client.close().await;
//!     Ok::<_, cachearoo_smol::Error>(())
//! })
//! .unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::time::{Duration, Instant};

pub use cachearoo::*;

/// [`Runtime`] on smol's global executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl Runtime for SmolRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        // The driver task ends by itself when the client closes.
        smol::spawn(future).detach();
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::after(duration).await;
        })
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }

    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxedIo>> {
        let host = host.to_owned();
        Box::pin(async move {
            let stream = smol::net::TcpStream::connect((host.as_str(), port)).await?;
            // Small frames (requests, events) should leave at once.
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}

/// Creates a client on smol and starts connecting in the background;
/// returns at once. Same as `Cachearoo::new(options, SmolRuntime)`.
pub fn connect(options: Options) -> Cachearoo {
    Cachearoo::new(options, SmolRuntime)
}
