//! The network front: one TCP port serving the WebSocket upgrade and the
//! REST API, on its own smol executor and threads.

mod http;
mod shared;
mod ws;

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use smol::{Async, Executor, Timer};

use crate::hub::{Hub, HubConfig};
use crate::store::MemoryStore;
use shared::Shared;

/// How to run a server. Build it with [`ServerConfig::default`] and the
/// chained setters.
///
/// `Debug` never shows the apiKey.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to bind (default `127.0.0.1`).
    pub host: String,
    /// Port to bind (default 4300; 0 picks a free one).
    pub port: u16,
    /// Require this apiKey on every message and REST request.
    pub api_key: Option<String>,
    /// With an apiKey: let reads, lists and registrations through without it.
    pub public_read: bool,
    /// The server id (default: a fresh random uuid-like id).
    pub server_id: Option<String>,
    /// Largest WebSocket frame and message accepted (default 128 MiB, like
    /// the reference); a bigger one closes the connection.
    pub max_frame_bytes: usize,
    /// Largest REST body accepted (default 128 MiB); bigger ones get 413.
    pub max_body_bytes: usize,
    /// Frames a connection may have queued for sending (default 1024); one
    /// more closes it as a slow consumer.
    pub send_queue_frames: usize,
    /// Bytes a connection may have queued for sending (default 256 MiB; a
    /// single frame is always accepted on an empty queue).
    pub send_queue_bytes: usize,
    /// Interval of WebSocket-level pings (default 20 s; `None` sends none).
    pub ping_interval: Option<Duration>,
    /// A connection that shows no sign of life this long after a ping is
    /// dropped (default 10 s). Signs of life: any frame received (a pong
    /// included), or a data frame of ours written to it.
    pub ping_timeout: Duration,
    /// How long a close frame may take to go out before the socket is
    /// dropped anyway (default 1 s).
    pub close_timeout: Duration,
    /// How long [`RunningServer::shutdown`] waits for connections to close
    /// gracefully before dropping them (default 2 s).
    pub shutdown_grace: Duration,
    /// Threads running the server's executor (default 1).
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: String::from("127.0.0.1"),
            port: 4300,
            api_key: None,
            public_read: false,
            server_id: None,
            max_frame_bytes: 128 << 20,
            max_body_bytes: 128 << 20,
            send_queue_frames: 1024,
            send_queue_bytes: 256 << 20,
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(2),
            threads: 1,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("public_read", &self.public_read)
            .field("server_id", &self.server_id)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("send_queue_frames", &self.send_queue_frames)
            .field("send_queue_bytes", &self.send_queue_bytes)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("threads", &self.threads)
            .finish()
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::host`].
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Sets [`ServerConfig::port`] (0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets [`ServerConfig::api_key`].
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sets [`ServerConfig::public_read`].
    pub fn public_read(mut self, on: bool) -> Self {
        self.public_read = on;
        self
    }

    /// Sets [`ServerConfig::server_id`].
    pub fn server_id(mut self, id: impl Into<String>) -> Self {
        self.server_id = Some(id.into());
        self
    }

    /// Sets [`ServerConfig::max_frame_bytes`].
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n;
        self
    }

    /// Sets [`ServerConfig::max_body_bytes`].
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Sets the send queue limits ([`ServerConfig::send_queue_frames`],
    /// [`ServerConfig::send_queue_bytes`]).
    pub fn send_queue(mut self, frames: usize, bytes: usize) -> Self {
        self.send_queue_frames = frames;
        self.send_queue_bytes = bytes;
        self
    }

    /// Sets the WebSocket keepalive ([`ServerConfig::ping_interval`],
    /// [`ServerConfig::ping_timeout`]).
    pub fn ping(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.ping_interval = interval;
        self.ping_timeout = timeout;
        self
    }

    /// Sets [`ServerConfig::threads`] (at least 1).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `host:port` does not resolve to an address.
    #[error("cannot resolve {host}:{port}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// Binding the port failed (in use, no permission, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Preparing the listening socket or starting a thread failed.
    #[error("cannot start the server: {0}")]
    Io(#[from] std::io::Error),
}

/// Counters of a running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// WebSocket connections open now.
    pub connections: usize,
    /// WebSocket connections accepted since start.
    pub connections_total: u64,
    /// Connections closed because their send queue overflowed.
    pub slow_consumer_closes: u64,
    /// Connections closed because a frame exceeded the size limit.
    pub oversize_closes: u64,
    /// Connections dropped for not answering pings.
    pub ping_timeouts: u64,
    /// Upgrades refused because the client id was the server id.
    pub refused_upgrades: u64,
    /// REST requests answered.
    pub rest_requests: u64,
}

/// A server running in-process on its own threads; [`RunningServer::shutdown`]
/// (or dropping it) closes every connection and releases the port.
pub struct RunningServer {
    addr: SocketAddr,
    server_id: String,
    shared: Arc<Shared>,
    /// Dropping it tells every task to stop.
    shutdown_tx: Option<async_channel::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// The address the server listens on (the actual port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server id sent in greetings.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// `ws://addr/` — append `?id=<clientId>` as needed.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// `http://addr` (no trailing slash).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        let hub = self.shared.hub_stats();
        let c = &self.shared.counters;
        ServerStats {
            connections: hub.connections,
            connections_total: hub.connections_total,
            slow_consumer_closes: hub.slow_consumer_closes,
            oversize_closes: c.oversize_closes.load(Ordering::Relaxed),
            ping_timeouts: c.ping_timeouts.load(Ordering::Relaxed),
            refused_upgrades: c.refused_upgrades.load(Ordering::Relaxed),
            rest_requests: hub.rest_requests,
        }
    }

    /// Stops accepting, closes every connection (WebSocket clients get a
    /// close frame, 1001), releases the port, and waits for the server's
    /// threads to end (at most about `shutdown_grace` plus `close_timeout`).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shutdown_tx.take();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a server thread panicked");
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh uuid-shaped server id from the process's random hasher keys.
fn random_server_id() -> String {
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    };
    let (a, b) = (word(), word());
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Starts a server in-process: binds `host:port` now (so errors come back
/// here and [`RunningServer::addr`] is known), then serves on background
/// threads with their own smol executor. Works from any async runtime or
/// from plain synchronous code.
pub fn start(config: ServerConfig) -> Result<RunningServer, Error> {
    let addr = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|source| Error::Resolve {
            host: config.host.clone(),
            port: config.port,
            source,
        })?
        .next()
        .ok_or_else(|| Error::Resolve {
            host: config.host.clone(),
            port: config.port,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })?;
    // std's bind sets SO_REUSEADDR on Unix, so a restart on the same port
    // is not blocked by connections of the previous run in TIME_WAIT.
    let listener = TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
    let addr = listener.local_addr()?;
    let listener = Async::new(listener)?;

    let server_id = config.server_id.clone().unwrap_or_else(random_server_id);
    let mut hub_config = HubConfig::new(server_id.clone());
    hub_config.api_key = config.api_key.clone();
    hub_config.public_read = config.public_read;
    let hub = Hub::new(hub_config, MemoryStore::new());

    let executor = Arc::new(Executor::new());
    let (shutdown_tx, shutdown_rx) = async_channel::bounded::<()>(1);
    let threads_wanted = config.threads.max(1);
    let grace = config.shutdown_grace;
    let shared = Arc::new(Shared::new(
        hub,
        config,
        Arc::downgrade(&executor),
        shutdown_rx,
    ));

    let mut threads = Vec::with_capacity(threads_wanted);
    let main_shared = shared.clone();
    let main_ex = executor.clone();
    threads.push(
        std::thread::Builder::new()
            .name(String::from("cachearoo-server"))
            .spawn(move || {
                let ex = main_ex.clone();
                smol::block_on(main_ex.run(async move {
                    // A task of its own: as the future `block_on` drives,
                    // the accept loop was polled (and `accept4` tried) on
                    // every wake-up of this thread, once per round trip.
                    let accept_shared = main_shared.clone();
                    ex.spawn(async move { accept_loop(&accept_shared, listener).await })
                        .await;
                    drain_tasks(&main_shared, grace).await;
                }));
                // `main_ex` is dropped here; with the other threads gone it
                // drops whatever tasks remain, closing their sockets.
            })?,
    );
    for i in 1..threads_wanted {
        let ex = executor.clone();
        let stop = shared.shutdown.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("cachearoo-server-{i}"))
                .spawn(move || {
                    smol::block_on(ex.run(async move {
                        let _ = stop.recv().await;
                    }))
                })?,
        );
    }
    drop(executor);
    tracing::info!(%addr, server_id = %server_id, "cachearoo server listening");
    Ok(RunningServer {
        addr,
        server_id,
        shared,
        shutdown_tx: Some(shutdown_tx),
        threads,
    })
}

/// Accepts connections until shutdown; the listener is dropped (the port
/// released) when it returns.
async fn accept_loop(shared: &Arc<Shared>, listener: Async<TcpListener>) {
    enum Next {
        Conn(std::io::Result<(Async<std::net::TcpStream>, SocketAddr)>),
        Stop,
    }
    loop {
        let next = async { Next::Conn(listener.accept().await) }
            .or(async {
                let _ = shared.shutdown.recv().await;
                Next::Stop
            })
            .await;
        match next {
            Next::Stop => break,
            Next::Conn(Ok((stream, peer))) => {
                // Small frames (responses, events) should not wait for Nagle.
                let _ = stream.get_ref().set_nodelay(true);
                let stream = smol::net::TcpStream::from(stream);
                shared.spawn(http::serve(shared.clone(), stream, peer));
            }
            Next::Conn(Err(e)) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracing::info!("cachearoo server stopped accepting");
}

/// Waits (at most `grace`) for the connection tasks to finish closing.
async fn drain_tasks(shared: &Arc<Shared>, grace: Duration) {
    let deadline = Instant::now() + grace;
    while shared.active_tasks.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        Timer::after(Duration::from_millis(5)).await;
    }
}
