//! The [`Runtime`] trait: the only thing async runtimes differ in.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachearoo_core::{HttpRequest, HttpResponse};
use futures_lite::io::{AsyncRead, AsyncWrite};

/// A boxed, `Send` future, as runtimes hand them to the client.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream the client can run TLS, WebSocket and HTTP over.
///
/// Implemented for every `AsyncRead + AsyncWrite + Send + Unpin` type.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + ?Sized> AsyncStream for T {}

/// A dialled connection, type-erased so that the client is not generic
/// over the runtime.
pub type BoxedIo = Box<dyn AsyncStream>;

/// What the client needs from an async runtime: spawn its driver task,
/// sleep, and dial TCP. Everything above the TCP stream (TLS, WebSocket,
/// HTTP, the protocol) is generic and lives in this crate.
///
/// `cachearoo-smol` and `cachearoo-async-std` implement it; implementing it
/// for another runtime takes a few lines:
///
/// ```
/// use std::time::Duration;
/// use cachearoo::{BoxFuture, BoxedIo, Runtime};
///
/// struct MySmol;
///
/// impl Runtime for MySmol {
///     fn spawn(&self, future: BoxFuture<'static, ()>) {
///         smol::spawn(future).detach();
///     }
///     fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
///         Box::pin(async move {
///             smol::Timer::after(duration).await;
///         })
///     }
///     fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<BoxedIo>> {
///         let host = host.to_owned();
///         Box::pin(async move {
///             let stream = smol::net::TcpStream::connect((host.as_str(), port)).await?;
///             Ok(Box::new(stream) as BoxedIo)
///         })
///     }
/// }
/// ```
pub trait Runtime: Send + Sync + 'static {
    /// Runs `future` to completion in the background. The client spawns one
    /// driver task per [`Cachearoo`](crate::Cachearoo); it ends by itself
    /// when the client is closed or its last handle is dropped.
    fn spawn(&self, future: BoxFuture<'static, ()>);

    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;

    /// A future that completes at `deadline`. The default sleeps for the
    /// time left; runtimes with absolute timers may override it.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }

    /// Resolves `host` and opens a TCP connection to `host:port`.
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxedIo>>;

    /// Performs one REST request with the runtime's own HTTP client instead
    /// of the client's built-in transport (hyper over [`Runtime::connect_tcp`]).
    ///
    /// Return `None` (the default) to use the built-in transport. The
    /// future resolves to the response, or to a message saying why there
    /// was none; dropping it must abandon the request.
    fn http_request(
        &self,
        request: &HttpRequest,
    ) -> Option<BoxFuture<'static, Result<HttpResponse, String>>> {
        let _ = request;
        None
    }
}

impl<R: Runtime + ?Sized> Runtime for Arc<R> {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        (**self).spawn(future)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        (**self).sleep(duration)
    }
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        (**self).sleep_until(deadline)
    }
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxedIo>> {
        (**self).connect_tcp(host, port)
    }
    fn http_request(
        &self,
        request: &HttpRequest,
    ) -> Option<BoxFuture<'static, Result<HttpResponse, String>>> {
        (**self).http_request(request)
    }
}
