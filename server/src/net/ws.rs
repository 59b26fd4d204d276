//! One WebSocket connection: read frames into the hub, write its queue out,
//! keep it alive with pings, and close it when told.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::{future, FutureExt, StreamExt};
use futures_util::SinkExt;
use hyper::upgrade::OnUpgrade;
use smol::Timer;

use smol::net::TcpStream;
use smol_hyper::rt::FuturesIo;

use super::shared::{Outgoing, Shared};
use crate::hub::{CloseReason, ConnId};

/// Size of each read from the socket.
const READ_BUFFER: usize = 8 * 1024;

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed, or the socket hit end of file.
    ClientClosed,
    /// Reading failed (includes frames over the size limit).
    ReadError(WsError),
    /// Writing failed.
    WriteError(WsError),
    /// No pong (nor any frame) within the ping timeout.
    PingTimeout,
    /// The hub dropped the connection (slow consumer, ...).
    Killed(CloseReason),
    /// The server is shutting down.
    Shutdown,
}

/// The parts the HTTP handler prepared for the connection task.
pub(crate) struct Pending {
    pub(crate) conn: ConnId,
    pub(crate) on_upgrade: OnUpgrade,
    pub(crate) out_tx: Sender<Outgoing>,
    pub(crate) out_rx: Receiver<Outgoing>,
    pub(crate) kill_rx: Receiver<CloseReason>,
    pub(crate) queued_bytes: Arc<AtomicUsize>,
}

/// Runs the connection until it ends, then tells the hub.
pub(crate) async fn run(shared: Arc<Shared>, p: Pending) {
    let conn = p.conn;
    let upgraded = match p.on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(conn, error = %e, "WebSocket upgrade did not complete");
            shared.disconnect(conn);
            return;
        }
    };
    let max = shared.config.max_frame_bytes;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // tungstenite zero-fills its whole read buffer before every read
        // (even one that would block); at the default 128 KiB that was 70 %
        // of a round trip's instructions (BENCHMARKS.md). Frames larger than
        // this still arrive whole: the buffer is per read, not per frame.
        .read_buffer_size(READ_BUFFER);
    // Take the TCP stream back from hyper (with any bytes it read past the
    // upgrade request): reading through hyper's adapter zero-filled another
    // buffer on every read.
    let parts = match upgraded.downcast::<FuturesIo<TcpStream>>() {
        Ok(parts) => parts,
        Err(_) => {
            tracing::error!(conn, "upgraded connection is not a TCP stream");
            shared.disconnect(conn);
            return;
        }
    };
    let ws = WebSocketStream::from_partially_read(
        parts.io.into_inner(),
        parts.read_buf.to_vec(),
        Role::Server,
        Some(ws_config),
    )
    .await;
    let (mut sink, mut stream) = ws.split();
    // Set by every frame received and by every data frame written (a peer
    // busy reading a long backlog is alive even if our ping waits behind
    // it); the keepalive clears it with each ping.
    let alive = AtomicBool::new(true);

    let reader = async {
        loop {
            match stream.next().await {
                None => return End::ClientClosed,
                Some(Err(e)) => return End::ReadError(e),
                Some(Ok(msg)) => {
                    alive.store(true, Ordering::Release);
                    match msg {
                        Message::Text(t) => {
                            shared.with_hub(|hub, now| hub.handle_text(conn, t.as_str(), now))
                        }
                        Message::Binary(b) => {
                            shared.with_hub(|hub, now| hub.handle_binary_bytes(conn, b, now))
                        }
                        // tungstenite answers pings by itself.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                        Message::Close(_) => return End::ClientClosed,
                    }
                }
            }
        }
    };

    let writer = async {
        while let Ok(out) = p.out_rx.recv().await {
            let len = out.len();
            let is_data = !matches!(out, Outgoing::Ping);
            let msg = match out {
                Outgoing::Text(t) => Message::text(String::from(&*t)),
                Outgoing::Binary(b) => Message::Binary(b),
                Outgoing::Ping => Message::Ping(Default::default()),
            };
            // While more frames wait, only queue this one in the socket's
            // write buffer; the last of a burst flushes them all (one
            // write instead of one per frame under fan-out and pipelining).
            let sent = if p.out_rx.is_empty() {
                sink.send(msg).await
            } else {
                SinkExt::feed(&mut sink, msg).await
            };
            p.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            if let Err(e) = sent {
                return End::WriteError(e);
            }
            if is_data {
                alive.store(true, Ordering::Release);
            }
        }
        // Unreachable while this task holds a sender; kept total.
        End::Shutdown
    };

    let keepalive = async {
        let Some(interval) = shared.config.ping_interval else {
            return future::pending::<End>().await;
        };
        loop {
            Timer::after(interval).await;
            alive.store(false, Ordering::Release);
            // A full queue is the slow-consumer rule's business.
            let _ = p.out_tx.try_send(Outgoing::Ping);
            Timer::after(shared.config.ping_timeout).await;
            if !alive.load(Ordering::Acquire) {
                return End::PingTimeout;
            }
        }
    };

    let killed = async {
        match p.kill_rx.recv().await {
            Ok(reason) => End::Killed(reason),
            Err(_) => End::Shutdown,
        }
    };
    let shutdown = async {
        // Resolves when the server's shutdown sender is dropped.
        let _ = shared.shutdown.recv().await;
        End::Shutdown
    };

    let end = reader
        .or(writer)
        .or(keepalive)
        .or(killed)
        .or(shutdown)
        .await;

    // What to send before dropping the socket: `None` nothing (it is
    // broken), `Some(None)` the reply to the client's close frame (queued by
    // tungstenite, flushed by `close`), `Some(Some(frame))` our own close.
    let close: Option<Option<(CloseCode, &str)>> = match &end {
        End::ClientClosed => Some(None),
        End::ReadError(WsError::Capacity(e)) => {
            shared
                .counters
                .oversize_closes
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(conn, error = %e, "closing a WebSocket connection: frame over the size limit");
            Some(Some((CloseCode::Size, "frame too big")))
        }
        End::ReadError(e) => {
            tracing::debug!(conn, error = %e, "WebSocket read failed");
            Some(Some((CloseCode::Protocol, "protocol error")))
        }
        End::WriteError(e) => {
            tracing::debug!(conn, error = %e, "WebSocket write failed");
            None
        }
        End::PingTimeout => {
            shared
                .counters
                .ping_timeouts
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                conn,
                "closing a WebSocket connection that stopped answering pings"
            );
            Some(Some((CloseCode::Away, "ping timeout")))
        }
        End::Killed(CloseReason::SlowConsumer) => {
            Some(Some((CloseCode::Policy, "send queue overflow")))
        }
        End::Killed(CloseReason::PingTimeout) => Some(Some((CloseCode::Away, "ping timeout"))),
        End::Killed(CloseReason::ProtocolViolation) => {
            Some(Some((CloseCode::Protocol, "protocol error")))
        }
        End::Killed(CloseReason::Shutdown) | End::Shutdown => {
            Some(Some((CloseCode::Away, "server shutting down")))
        }
    };
    if !matches!(end, End::Killed(_)) {
        shared.disconnect(conn);
    }
    if let Some(frame) = close {
        let frame = frame.map(|(code, reason)| CloseFrame {
            code,
            reason: reason.into(),
        });
        // Best effort: a peer that does not read must not hold us up.
        let _ = sink
            .close(frame)
            .or(async {
                Timer::after(shared.config.close_timeout).await;
                Ok(())
            })
            .await;
    }
    tracing::debug!(conn, ?end, "WebSocket connection ended");
}
