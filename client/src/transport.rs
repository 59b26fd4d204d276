//! Everything above the dialled TCP stream, generic over the runtime: TLS,
//! the WebSocket handshake, and one REST request over hyper's HTTP/1.1
//! client connection.

use std::sync::Arc;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use cachearoo_core::{HttpRequest, HttpResponse, Method};
use futures_rustls::pki_types::ServerName;
use futures_rustls::TlsConnector;
use http_body_util::{BodyExt, Full, Limited};
use smol_hyper::rt::FuturesIo;

use crate::runtime::{BoxedIo, Runtime};

/// The WebSocket the driver reads and writes.
pub(crate) type WsStream = WebSocketStream<BoxedIo>;

/// Largest frame and message accepted (the server's limit, PROTOCOL.md §1).
const MAX_MESSAGE: usize = 128 << 20;

/// Largest HTTP response body accepted.
const MAX_HTTP_BODY: usize = 128 << 20;

/// TLS for `secure` connections, or why it is unavailable.
pub(crate) type Tls = Result<TlsConnector, String>;

/// Dials `host:port` and wraps the stream in TLS when `secure`.
async fn dial(
    runtime: &dyn Runtime,
    tls: Option<&Tls>,
    host: &str,
    port: u16,
) -> Result<BoxedIo, String> {
    let tcp = runtime
        .connect_tcp(host, port)
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let Some(tls) = tls else {
        return Ok(tcp);
    };
    let connector = tls.as_ref().map_err(Clone::clone)?;
    // An IPv6 literal may arrive in brackets; rustls wants the bare address.
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
    let stream = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {host}:{port} failed: {e}"))?;
    Ok(Box::new(stream))
}

/// Dials and upgrades a WebSocket to `url`.
pub(crate) async fn connect_websocket(
    runtime: Arc<dyn Runtime>,
    tls: Option<Tls>,
    url: String,
    host: String,
    port: u16,
) -> Result<WsStream, String> {
    let io = dial(&*runtime, tls.as_ref(), &host, port).await?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        // tungstenite zero-fills its whole read buffer before every read;
        // at the default 128 KiB that dominated a round trip's cost
        // (BENCHMARKS.md). Larger frames still arrive whole.
        .read_buffer_size(8 * 1024);
    let (ws, _response) =
        async_tungstenite::client_async_with_config(url.as_str(), io, Some(config))
            .await
            .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
    Ok(ws)
}

/// Performs one REST request on a fresh connection.
pub(crate) async fn http_request(
    runtime: Arc<dyn Runtime>,
    tls: Option<Tls>,
    request: HttpRequest,
) -> Result<HttpResponse, String> {
    let io = dial(&*runtime, tls.as_ref(), &request.host, request.port).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(FuturesIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;

    let method = match request.method {
        Method::Get => hyper::Method::GET,
        Method::Put => hyper::Method::PUT,
        Method::Post => hyper::Method::POST,
        Method::Patch => hyper::Method::PATCH,
        Method::Delete => hyper::Method::DELETE,
    };
    let host = if request.host.contains(':') && !request.host.starts_with('[') {
        format!("[{}]:{}", request.host, request.port)
    } else {
        format!("{}:{}", request.host, request.port)
    };
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(request.path_and_query.as_str())
        .header(hyper::header::HOST, host);
    for (name, value) in &request.headers {
        builder = builder.header(*name, value.as_str());
    }
    let body = Full::new(Bytes::from(request.body.unwrap_or_default()));
    let http_request = builder
        .body(body)
        .map_err(|e| format!("invalid HTTP request: {e}"))?;

    let exchange = async {
        let response = sender
            .send_request(http_request)
            .await
            .map_err(|e| format!("HTTP request failed: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_HTTP_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the HTTP body failed: {e}"))?
            .to_bytes();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers,
            body: body.to_vec(),
        })
    };
    // The connection future moves the bytes; it only ends on its own when
    // the connection fails or closes, so it races the exchange.
    let drive = async {
        match connection.await {
            Err(e) => Err(format!("HTTP connection failed: {e}")),
            Ok(()) => futures_lite::future::pending().await,
        }
    };
    futures_lite::future::or(exchange, drive).await
}
