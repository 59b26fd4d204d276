//! HTTP on the server's one port: hyper serves each TCP connection; a
//! WebSocket upgrade becomes a connection task, anything else goes to the
//! hub's REST API.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use bytes::Bytes;
use cachearoo_core::rest::percent_decode;
use futures_lite::FutureExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use smol::net::TcpStream;
use smol_hyper::rt::{FuturesIo, SmolTimer};

use super::shared::{ConnHandle, Shared};
use super::ws;
use crate::hub::{ConnectError, RestRequest};

type Resp = Response<Full<Bytes>>;

/// Serves one accepted TCP connection until it closes, is upgraded, or the
/// server shuts down.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let svc_shared = shared.clone();
    let service = service_fn(move |req| {
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(SmolTimer::new())
        .serve_connection(FuturesIo::new(stream), service)
        .with_upgrades();
    let shutdown = async {
        let _ = shared.shutdown.recv().await;
        Ok(())
    };
    if let Err(e) = conn.or(shutdown).await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

fn plain(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    if is_websocket_upgrade(&req) {
        return upgrade(shared, req);
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, shared.config.max_body_bytes)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
            }
            return plain(StatusCode::BAD_REQUEST, "Bad Request");
        }
    };
    let rest = RestRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(String::from),
        headers: parts
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    let answer = shared.with_hub(|hub, now| hub.handle_rest(&rest, now));
    let mut resp = Response::new(Full::new(Bytes::from(answer.body)));
    *resp.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

fn header_has_token(req: &Request<Incoming>, name: &str, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    req.method() == hyper::Method::GET
        && header_has_token(req, "upgrade", "websocket")
        && header_has_token(req, "connection", "upgrade")
}

/// The `id` query parameter of the upgrade URL.
fn client_id(req: &Request<Incoming>) -> Option<String> {
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == "id").then(|| percent_decode(v).unwrap_or_else(|| v.to_owned()))
    })
}

fn upgrade(shared: Arc<Shared>, mut req: Request<Incoming>) -> Resp {
    if req
        .headers()
        .get("sec-websocket-version")
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut r = plain(StatusCode::UPGRADE_REQUIRED, "");
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
        return r;
    }
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return plain(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let accept = derive_accept_key(key.as_bytes());
    let conn = shared.next_conn_id();
    let (out_tx, out_rx) = async_channel::bounded(shared.config.send_queue_frames.max(1));
    let (kill_tx, kill_rx) = async_channel::bounded(1);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let handle = ConnHandle {
        tx: out_tx.clone(),
        queued_bytes: queued_bytes.clone(),
        kill: kill_tx,
    };
    match shared.connect(conn, client_id(&req), handle) {
        Ok(()) => {}
        Err(ConnectError::ServerIdConflict) => {
            shared
                .counters
                .refused_upgrades
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(conn, "refused a WebSocket upgrade with the server's own id");
            return plain(StatusCode::FORBIDDEN, "");
        }
        Err(e) => {
            tracing::error!(conn, error = %e, "could not register a WebSocket connection");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "");
        }
    }
    let pending = ws::Pending {
        conn,
        on_upgrade: hyper::upgrade::on(&mut req),
        out_tx,
        out_rx,
        kill_rx,
        queued_bytes,
    };
    shared.spawn(ws::run(shared.clone(), pending));
    let mut r = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert(
        hyper::header::UPGRADE,
        HeaderValue::from_static("websocket"),
    );
    h.insert(
        hyper::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}
