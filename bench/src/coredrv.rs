//! A minimal driver of the sans-IO core over one raw WebSocket, written in
//! the bench itself.
//!
//! Two uses:
//! - the messaging figures (request–reply, competing consumers): the async
//!   client does not expose the core's messaging state machines yet, so
//!   these drive them directly, with the real server in between; what they
//!   leave out is the async layer (handles, channels, driver task);
//! - a core-driven sequential `read`, next to the async client's, which
//!   splits the client's overhead into "core + socket" and "async layer".
//!
//! It is a plain loop — write what the core wants sent, wait for a frame
//! or the core's deadline, feed it in — with no reconnects and no REST:
//! anything of that kind is a harness failure and panics with a message.

use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use cachearoo_core::{Client, Config, Event, Instant, SocketId, Transmit};
use futures_lite::{FutureExt, StreamExt};
use futures_util::{FutureExt as _, SinkExt};

use crate::raw::Ws;
use crate::rt::Rt;

/// One core client on one connected WebSocket.
pub struct CoreConn {
    /// The state machine; callers use its API between [`CoreConn::pump`]s.
    pub core: Client,
    rt: Rt,
    ws: Ws,
    socket: SocketId,
    epoch: std::time::Instant,
}

impl CoreConn {
    /// Dials `addr` and waits for the greeting.
    pub async fn connect(rt: Rt, addr: SocketAddr, seed: u64) -> CoreConn {
        let config = Config {
            host: addr.ip().to_string(),
            port: addr.port(),
            bucket: String::from("bench"),
            // Application pings would only add frames to the measurement.
            enable_ping: false,
            request_timeout: Duration::from_secs(30),
            ..Config::default()
        };
        let epoch = std::time::Instant::now();
        let mut core = Client::new(config, seed, Instant::ZERO);
        let Some(Transmit::Connect { socket, url, .. }) = core.poll_transmit() else {
            panic!("core did not ask to connect first");
        };
        let tcp = rt.tcp(addr).await.expect("dial the server");
        // tungstenite's default configuration, like the client's transport
        // (only its size limits differ), so that core-driven and client
        // figures differ by the async layer alone.
        let (ws, _) = async_tungstenite::client_async(url, tcp)
            .await
            .expect("WebSocket handshake");
        let now = Instant::from_since_epoch(epoch.elapsed());
        core.handle_socket_opened(now, socket);
        let mut conn = CoreConn {
            core,
            rt,
            ws,
            socket,
            epoch,
        };
        loop {
            conn.pump().await;
            let mut connected = false;
            while let Some(event) = conn.core.poll_event() {
                connected |= matches!(event, Event::Connected { .. });
            }
            if connected {
                return conn;
            }
        }
    }

    /// Now, on the core's clock.
    pub fn now(&self) -> Instant {
        Instant::from_since_epoch(self.epoch.elapsed())
    }

    /// Sends everything the core queued, then waits for at least one frame
    /// (taking any others already there) or the core's next deadline, and
    /// feeds it in. Events are left for the caller's `poll_event`.
    pub async fn pump(&mut self) {
        self.flush().await;
        enum Next {
            Frame(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
            Deadline,
        }
        let sleep = match self.core.poll_timeout() {
            Some(at) => {
                let left = at.since_epoch().saturating_sub(self.epoch.elapsed());
                self.rt.sleep(left)
            }
            None => Box::pin(futures_lite::future::pending()),
        };
        let next = async { Next::Frame(self.ws.next().await) }
            .or(async {
                sleep.await;
                Next::Deadline
            })
            .await;
        match next {
            Next::Frame(frame) => {
                self.feed(frame);
                while let Some(frame) = self.ws.next().now_or_never() {
                    self.feed(frame);
                }
            }
            Next::Deadline => {
                let now = self.now();
                self.core.handle_timeout(now);
            }
        }
    }

    fn feed(&mut self, frame: Option<Result<Message, async_tungstenite::tungstenite::Error>>) {
        let now = self.now();
        match frame {
            Some(Ok(Message::Text(t))) => self.core.handle_text(now, self.socket, t.as_str()),
            Some(Ok(Message::Binary(b))) => self.core.handle_binary(now, self.socket, &b),
            Some(Ok(_)) => {}
            other => panic!("bench connection ended: {other:?}"),
        }
    }

    /// Writes every frame the core queued, with one flush.
    pub async fn flush(&mut self) {
        let mut any = false;
        while let Some(t) = self.core.poll_transmit() {
            match t {
                Transmit::Text { text, .. } => {
                    self.ws.feed(Message::text(text)).await.expect("send");
                    any = true;
                }
                Transmit::Binary { bytes, .. } => {
                    self.ws.feed(Message::binary(bytes)).await.expect("send");
                    any = true;
                }
                other => panic!("bench core driver cannot do {other:?}"),
            }
        }
        if any {
            self.ws.flush().await.expect("flush");
        }
    }

    /// Waits until the server has handled everything sent so far (a ping
    /// is answered in order), so registrations are in place. Events that
    /// arrive meanwhile are dropped.
    pub async fn sync(&mut self) {
        let now = self.now();
        self.core.ping(now).expect("connected");
        loop {
            self.pump().await;
            while let Some(event) = self.core.poll_event() {
                if matches!(event, Event::Pong { .. }) {
                    return;
                }
            }
        }
    }
}
