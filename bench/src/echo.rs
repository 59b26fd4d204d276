//! Tiny WebSocket servers written with async-tungstenite alone: the
//! physical limit our server is compared with, and a silent peer for the
//! memory figure.
//!
//! They run like `cachearoo-server` does (one thread, a smol executor, one
//! task per connection, every frame sent with its own flush), so a ratio
//! against them isolates what the protocol, the hub and the store cost.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use smol::{Async, Executor};

/// What the server does with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send every text or binary frame straight back.
    Echo,
    /// Greet like a Cachearoo server (`{"id":..}`), then read and count
    /// every frame and never answer: operations sent to it stay pending.
    Silent,
}

/// A running tiny server; stopped (port released) when dropped.
pub struct TinyServer {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TinyServer {
    /// Binds a free loopback port and serves on a thread of its own.
    pub fn start(mode: Mode) -> TinyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("local address of the listener");
        let listener = Async::new(listener).expect("non-blocking listener");
        let received = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let counter = received.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tiny-{mode:?}").to_lowercase())
            .spawn(move || {
                // The accept loop is a task of its own, polled only when the
                // listener is readable; as the `block_on` future it would be
                // polled (one failed accept4 each) on every wakeup.
                let ex = Arc::new(Executor::new());
                let weak = Arc::downgrade(&ex);
                let accept = ex.spawn(async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = stream.get_ref().set_nodelay(true);
                        let Some(ex) = weak.upgrade() else {
                            return;
                        };
                        let conn = serve(smol::net::TcpStream::from(stream), mode, counter.clone());
                        ex.spawn(conn).detach();
                    }
                });
                smol::block_on(ex.run(async {
                    let _ = stop_rx.recv().await;
                }));
                drop(accept);
                // Dropping the executor drops (and closes) every connection.
            })
            .expect("spawn the tiny server thread");
        TinyServer {
            addr,
            received,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Frames received so far (all connections).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(stream: smol::net::TcpStream, mode: Mode, received: Arc<AtomicU64>) {
    let config = Some(crate::raw::baseline_config());
    let Ok(mut ws) = async_tungstenite::accept_async_with_config(stream, config).await else {
        return;
    };
    if mode == Mode::Silent
        && ws
            .send(Message::text(r#"{"id":"silent-bench-server"}"#))
            .await
            .is_err()
    {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        received.fetch_add(1, Ordering::AcqRel);
        let reply = match msg {
            Message::Close(_) => return,
            m @ (Message::Text(_) | Message::Binary(_)) if mode == Mode::Echo => m,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}
