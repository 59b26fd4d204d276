//! Raw WebSocket clients (async-tungstenite, no client library): the echo
//! baseline and the server-alone figure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use cachearoo::BoxedIo;
use futures_lite::StreamExt;
use futures_util::{FutureExt, SinkExt};

use crate::rt::Rt;

/// A raw client connection.
pub type Ws = WebSocketStream<BoxedIo>;

/// The configuration of the baseline's WebSocket ends (raw clients and the
/// tiny servers): tungstenite's defaults, but an 8 KiB read buffer.
/// tungstenite zero-fills its whole read buffer (128 KiB by default) before
/// every read, about 2.3 µs each on this machine; the limit should not pay
/// that. Our client and server still use the default (see BENCHMARKS.md).
pub fn baseline_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Opens a WebSocket to `addr`; with `greeted`, waits for (and swallows)
/// the Cachearoo greeting first.
pub async fn connect(rt: Rt, addr: SocketAddr, greeted: bool) -> Ws {
    let tcp = rt.tcp(addr).await.expect("dial the server");
    let (mut ws, _) = async_tungstenite::client_async_with_config(
        format!("ws://{addr}/"),
        tcp,
        Some(baseline_config()),
    )
    .await
    .expect("WebSocket handshake");
    if greeted {
        match ws.next().await {
            Some(Ok(Message::Text(_))) => {}
            other => panic!("expected the server's greeting, got {other:?}"),
        }
    }
    ws
}

/// How long (or how many operations) a load loop runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Stop issuing after this long (measured from the first send).
    Time(Duration),
    /// Stop issuing after this many operations.
    Count(u64),
}

/// Sends `frame` and awaits one answer per frame, keeping `window` frames
/// in flight, until the budget is spent; returns (operations, elapsed).
///
/// Answers that arrive together are counted together and their
/// replacements go out with one flush, as a batching client would.
pub async fn pipelined(mut ws: Ws, frame: &str, window: usize, budget: Budget) -> (u64, Duration) {
    // One task does both directions, so the stream is not split (a split
    // stream takes a lock on every call).
    let start = Instant::now();
    let mut sent = 0u64;
    let mut done = 0u64;
    let may_send = |sent: u64| match budget {
        Budget::Time(d) => start.elapsed() < d,
        Budget::Count(n) => sent < n,
    };
    while sent < window as u64 && may_send(sent) {
        ws.feed(Message::text(frame)).await.expect("send a frame");
        sent += 1;
    }
    ws.flush().await.expect("flush");
    while done < sent {
        let mut answered = 0;
        match ws.next().await {
            Some(Ok(Message::Text(_) | Message::Binary(_))) => answered += 1,
            Some(Ok(_)) => continue,
            other => panic!("connection ended early: {other:?}"),
        }
        // Take whatever else is already here without waiting.
        while let Some(Some(Ok(m))) = ws.next().now_or_never() {
            if matches!(m, Message::Text(_) | Message::Binary(_)) {
                answered += 1;
            }
        }
        done += answered;
        let mut refill = 0;
        while refill < answered && may_send(sent) {
            ws.feed(Message::text(frame)).await.expect("send a frame");
            sent += 1;
            refill += 1;
        }
        if refill > 0 {
            ws.flush().await.expect("flush");
        }
    }
    let elapsed = start.elapsed();
    let _ = ws.close(None).await;
    (done, elapsed)
}

/// The frame our client sends for `read` of `key` in `bucket` (the
/// server echoes the id, so one fixed id serves every request).
pub fn read_frame(bucket: &str, key: &str) -> String {
    format!(
        r#"{{"msg":"datastore-operation","request":{{"op":"read","id":"1","bucket":"{bucket}","key":"{key}"}}}}"#
    )
}

/// A write of `value` (JSON text) to `key` in `bucket`.
pub fn write_frame(bucket: &str, key: &str, value: &str) -> String {
    format!(
        r#"{{"msg":"datastore-operation","request":{{"op":"write","id":"1","bucket":"{bucket}","key":"{key}","value":{value}}}}}"#
    )
}
