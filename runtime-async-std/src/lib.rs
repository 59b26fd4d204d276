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
//! With the optional `surf` feature (off by default), plain-HTTP REST
//! requests are made with surf instead of the built-in hyper transport;
//! `https` stays on the built-in transport. surf is unmaintained: enable it
//! only for applications that already depend on it.
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

    /// With the `surf` feature, plain-HTTP REST requests go through surf.
    /// `https` requests keep the built-in transport: surf's TLS stack is an
    /// old rustls that ignores [`TlsOptions`](cachearoo::TlsOptions), so
    /// using it would weaken or break certificate verification.
    #[cfg(feature = "surf")]
    fn http_request(
        &self,
        request: &HttpRequest,
    ) -> Option<BoxFuture<'static, Result<HttpResponse, String>>> {
        if request.secure {
            return None;
        }
        Some(surf_transport::request(request))
    }
}

#[cfg(feature = "surf")]
mod surf_transport {
    use cachearoo::{BoxFuture, HttpRequest, HttpResponse, Method};

    /// One REST request with surf's HTTP/1.1 client.
    pub(crate) fn request(
        request: &HttpRequest,
    ) -> BoxFuture<'static, Result<HttpResponse, String>> {
        let url = request.url();
        let method = match request.method {
            Method::Get => surf::http::Method::Get,
            Method::Put => surf::http::Method::Put,
            Method::Post => surf::http::Method::Post,
            Method::Patch => surf::http::Method::Patch,
            Method::Delete => surf::http::Method::Delete,
        };
        let headers = request.headers.clone();
        let body = request.body.clone();
        Box::pin(async move {
            let url = surf::Url::parse(&url).map_err(|e| format!("invalid URL {url}: {e}"))?;
            let mut req = surf::Request::new(method, url);
            if let Some(body) = body {
                req.set_body(surf::Body::from_bytes(body));
            }
            // After the body: `set_body` sets its own content type, the
            // core's headers (Content-Type: application/json) must win.
            for (name, value) in headers {
                req.insert_header(name, value.as_str());
            }
            let mut response = surf::Client::new()
                .send(req)
                .await
                .map_err(|e| format!("HTTP request failed: {e}"))?;
            let status = u16::from(response.status());
            let headers = response
                .iter()
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(|v| (name.as_str().to_owned(), v.as_str().to_owned()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let body = response
                .body_bytes()
                .await
                .map_err(|e| format!("reading the HTTP body failed: {e}"))?;
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        })
    }
}

/// Creates a client on async-std and starts connecting in the background;
/// returns at once. Same as `Cachearoo::new(options, AsyncStdRuntime)`.
pub fn connect(options: Options) -> Cachearoo {
    Cachearoo::new(options, AsyncStdRuntime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(secure: bool) -> HttpRequest {
        HttpRequest {
            method: Method::Get,
            secure,
            host: "127.0.0.1".into(),
            port: 4300,
            path_and_query: "/_data/b/k".into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Which transport performs REST requests: surf for plain HTTP with the
    /// `surf` feature, the built-in one otherwise (and always for https).
    #[test]
    fn rest_transport_choice() {
        let rt = AsyncStdRuntime;
        assert_eq!(
            rt.http_request(&request(false)).is_some(),
            cfg!(feature = "surf")
        );
        assert!(rt.http_request(&request(true)).is_none());
    }
}
