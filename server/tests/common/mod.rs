//! Helpers shared by the integration tests: a raw WebSocket client
//! (async-tungstenite over smol's TcpStream), a raw HTTP client (hyper),
//! timeouts that only guard against hangs, and JSON normalisation.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::tungstenite::{self, Message};
use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use futures_lite::{FutureExt, StreamExt};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use smol::net::TcpStream;
use smol::Timer;

/// Generous: only there so that a bug hangs no test forever.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// Runs `fut`, failing the test if it takes longer than [`HANG_GUARD`].
pub async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    fut.or(async {
        Timer::after(HANG_GUARD).await;
        panic!("timed out: {what}")
    })
    .await
}

/// One frame a client received.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text frame that parsed as JSON.
    Json(Value),
    /// A text frame that did not.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// The server closed the connection (close frame or end of stream).
    Closed,
}

impl Frame {
    pub fn json(&self) -> &Value {
        match self {
            Frame::Json(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }
}

/// A raw WebSocket client.
pub struct Ws {
    ws: WebSocketStream<TcpStream>,
    pub name: String,
}

impl Ws {
    /// Connects to `ws://addr/` with `?id=` when given.
    pub async fn connect(addr: SocketAddr, id: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let url = match id {
            Some(id) => format!("ws://{addr}/?id={id}"),
            None => format!("ws://{addr}/"),
        };
        let tcp = TcpStream::connect(addr).await?;
        let (ws, _resp) = async_tungstenite::client_async(url, tcp).await?;
        Ok(Ws {
            ws,
            name: id.unwrap_or("anonymous").to_string(),
        })
    }

    /// Connects and reads the greeting; returns the server id.
    pub async fn connect_greeted(addr: SocketAddr, id: Option<&str>) -> (Ws, String) {
        let mut ws = guard("connect", Ws::connect(addr, id))
            .await
            .expect("connect");
        let g = ws.next().await;
        let sid = g.json()["id"].as_str().expect("greeting").to_string();
        (ws, sid)
    }

    pub async fn send_text(&mut self, text: &str) {
        guard("send", self.ws.send(Message::text(text.to_string())))
            .await
            .expect("send text");
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        guard("send", self.ws.send(Message::binary(bytes)))
            .await
            .expect("send binary");
    }

    /// The next data frame (pings and pongs are skipped).
    pub async fn next(&mut self) -> Frame {
        let name = self.name.clone();
        guard(&format!("frame for {name}"), async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_)) => return Frame::Closed,
                    Some(Ok(Message::Text(t))) => {
                        return match serde_json::from_str(t.as_str()) {
                            Ok(v) => Frame::Json(v),
                            Err(_) => Frame::Text(t.to_string()),
                        }
                    }
                    Some(Ok(Message::Binary(b))) => return Frame::Binary(b.to_vec()),
                    Some(Ok(Message::Close(_))) => return Frame::Closed,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await
    }

    /// Sends a ping and returns every frame that arrives before its pong:
    /// the server handles a connection's frames in order and queues its
    /// answers in order, so this is a barrier without sleeping.
    pub async fn sync(&mut self) -> Vec<Frame> {
        self.send_text(r#"{"msg":"ping"}"#).await;
        let mut before = Vec::new();
        loop {
            let f = self.next().await;
            if let Frame::Json(v) = &f {
                if v.get("pong").is_some() && v.as_object().is_some_and(|o| o.len() == 1) {
                    return before;
                }
            }
            if f == Frame::Closed {
                panic!(
                    "{}: closed while waiting for a pong (after {before:?})",
                    self.name
                );
            }
            before.push(f);
        }
    }

    /// Asserts that nothing is waiting for this client.
    pub async fn assert_quiet(&mut self) {
        let extra = self.sync().await;
        assert!(
            extra.is_empty(),
            "{}: unexpected frames {extra:?}",
            self.name
        );
    }

    /// Closes from the client side and waits for the socket to end.
    pub async fn close(mut self) {
        let _ = guard("close", self.ws.close(None)).await;
        guard("closed", async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Waits for the server to close this connection.
    pub async fn expect_closed(&mut self) {
        loop {
            if self.next().await == Frame::Closed {
                return;
            }
        }
    }
}

/// A raw HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection (hyper's client).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpAnswer {
    guard(&format!("HTTP {method} {path}"), async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(smol_hyper::rt::FuturesIo::new(tcp))
                .await
                .expect("handshake");
        let driver = smol::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let body = Full::new(Bytes::from(body.map(<[u8]>::to_vec).unwrap_or_default()));
        let resp = send
            .send_request(req.body(body).expect("request"))
            .await
            .expect("response");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        drop(driver);
        HttpAnswer {
            status,
            headers,
            body,
        }
    })
    .await
}

/// Whether `s` is an ISO-8601 time as the server writes it.
pub fn is_iso_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 23) || c.is_ascii_digit())
}

/// `gen_<digits>[-<digits>]` inside `s` → `gen_#`.
pub fn mask_generated_keys(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("gen_") {
        out.push_str(&rest[..at + 4]);
        let tail = &rest[at + 4..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            rest = tail;
            continue;
        }
        let mut end = digits;
        let t = tail.as_bytes();
        if t.get(end) == Some(&b'-') {
            let more = tail[end + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if more > 0 {
                end += 1 + more;
            }
        }
        out.push('#');
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Masks what differs on every run: ISO times and generated keys.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::String(s) if is_iso_time(s) => Value::String("<time>".into()),
        Value::String(s) => Value::String(mask_generated_keys(s)),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}
