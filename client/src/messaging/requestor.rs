//! [`Requestor`]: sends requests on a channel and awaits their replies.

use std::sync::Arc;
use std::time::Duration;

use cachearoo_core::RequestorId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{create, encode, finish_call, start_call, InFlight, MessagingError};
use crate::client::{Cachearoo, Inner};
use crate::shared::{Command, Endpoint, Outbox};

/// Sends requests on a channel and awaits their replies (JS `Requestor`).
///
/// Each request is a signal on `#reqrep/{channel}` under a fresh uuid; it
/// ends with the reply's `data` (decoded into the type you ask for), the
/// reply's `err` ([`MessagingError::Remote`]), [`MessagingError::Timeout`]
/// when no reply came within `timeout`, or
/// [`MessagingError::ProgressTimeout`] when nothing (reply or progress)
/// came within `progress_timeout` of the request or of its last progress.
/// A reply after that is dropped. Any number of requests may be in flight
/// at once. Requests need the WebSocket: while it is down they fail at
/// once with [`MessagingError::NotConnected`].
///
/// A cheap, clonable handle; it keeps its client alive. The requestor is
/// removed (its pending requests fail with [`MessagingError::Closed`]) by
/// [`Requestor::close`] or when the last clone is dropped.
///
/// ```
/// # use std::time::Duration;
/// # use cachearoo::{BoxFuture, BoxedIo, Runtime};
/// # #[derive(Clone)] struct Smol;
/// # impl Runtime for Smol {
/// #     fn spawn(&self, f: BoxFuture<'static, ()>) { smol::spawn(f).detach(); }
/// #     fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
/// #         Box::pin(async move { smol::Timer::after(d).await; })
/// #     }
/// #     fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<BoxedIo>> {
/// #         let host = host.to_owned();
/// #         Box::pin(async move {
/// #             Ok(Box::new(smol::net::TcpStream::connect((host.as_str(), port)).await?) as BoxedIo)
/// #         })
/// #     }
/// # }
/// use cachearoo::{Cachearoo, MessagingError, Options, Replier, Requestor, StreamExt};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Add { a: i64, b: i64 }
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Sum { result: i64 }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = cachearoo_server::start(cachearoo_server::ServerConfig::default().port(0))?;
/// smol::block_on(async {
///     // One client per role: the server does not echo a client's own signals.
///     let options = Options::new().address(server.addr());
///     let (asker, answerer) = (Cachearoo::new(options.clone(), Smol), Cachearoo::new(options, Smol));
///     asker.connection().wait_connected().await?;
///     answerer.connection().wait_connected().await?;
///
///     // The replier, as a stream of incoming requests.
///     let mut replier = Replier::new(&answerer, "math").await?;
///     answerer.list().await?; // its subscription is in place
///     smol::spawn(async move {
///         while let Some(request) = replier.next().await {
///             let answer = match request.parse::<Add>() {
///                 Ok(add) => Ok(Sum { result: add.a + add.b }),
///                 Err(e) => Err(e.to_string()),
///             };
///             let _ = request.reply(answer);
///         }
///     })
///     .detach();
///
///     let requestor = Requestor::new(&asker, "math", Duration::from_secs(5), Duration::from_secs(5)).await?;
///     let sum: Sum = requestor.request(&Add { a: 7, b: 8 }).await?;
///     assert_eq!(sum, Sum { result: 15 });
///     // A bad request gets the replier's error.
///     let err = requestor.request::<_, Sum>(&"seven plus eight").await.unwrap_err();
///     assert!(matches!(err, MessagingError::Remote(_)));
///
///     asker.close().await;
///     answerer.close().await;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// server.shutdown();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Requestor {
    inner: Arc<RequestorInner>,
}

struct RequestorInner {
    client: Arc<Inner>,
    id: RequestorId,
    channel: String,
}

impl Drop for RequestorInner {
    fn drop(&mut self) {
        // Fails only when the driver has ended, which removed everything.
        let _ = self
            .client
            .outbox
            .try_send(Outbox::Remove(Endpoint::Requestor(self.id)));
    }
}

impl Requestor {
    /// Creates a requestor on `channel` of `cro`'s server. It subscribes to
    /// replies and progress at once, connected or not. Fails only with
    /// [`MessagingError::Closed`] when the client is closed.
    ///
    /// Async because it returns once the client's driver has registered
    /// the requestor: its subscription then goes out before any of its
    /// requests, so no reply can arrive before the server knows to send it.
    pub async fn new(
        cro: &Cachearoo,
        channel: impl Into<String>,
        timeout: Duration,
        progress_timeout: Duration,
    ) -> Result<Requestor, MessagingError> {
        let channel = channel.into();
        let id = create(&cro.inner, |reply| Command::CreateRequestor {
            channel: channel.clone(),
            timeout,
            progress_timeout,
            reply,
        })
        .await?;
        Ok(Requestor {
            inner: Arc::new(RequestorInner {
                client: cro.inner.clone(),
                id,
                channel,
            }),
        })
    }

    /// The channel this requestor sends on.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Sends `message` and waits for the reply's `data`, decoded into `R`
    /// (any [`serde_json::Value`] with `R = Value`; a string holding JSON
    /// text is also tried as JSON, see the
    /// [interoperability rule](crate::messaging#interoperability)).
    /// Progress is ignored; see [`Requestor::request_with_progress`].
    ///
    /// Dropping the future stops waiting; the request itself stays out
    /// until it is answered or times out. See the [type docs](Requestor)
    /// for an example.
    pub async fn request<T, R>(&self, message: &T) -> Result<R, MessagingError>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (done, _) = self.send(message, false).await?;
        finish_call(&done).await
    }

    /// Sends `message` and returns it in flight: a stream of the replier's
    /// progress values, then its result (see [`InFlight`], which has an
    /// example).
    pub async fn request_with_progress<T, R>(
        &self,
        message: &T,
    ) -> Result<InFlight<R>, MessagingError>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (done, progress) = self.send(message, true).await?;
        Ok(InFlight::new(done, progress))
    }

    async fn send<T: Serialize + ?Sized>(
        &self,
        message: &T,
        with_progress: bool,
    ) -> Result<
        (
            super::DoneReceiver,
            Option<crate::queue::LagReceiver<serde_json::Value>>,
        ),
        MessagingError,
    > {
        let message = encode(message)?;
        let requestor = self.inner.id;
        start_call(&self.inner.client, with_progress, |sink| Command::Request {
            requestor,
            message,
            sink,
        })
        .await
    }

    /// Removes the requestor now, for every clone: pending requests fail
    /// with [`MessagingError::Closed`], later ones fail at once with it.
    pub fn close(&self) {
        let _ = self
            .inner
            .client
            .outbox
            .try_send(Outbox::Remove(Endpoint::Requestor(self.inner.id)));
    }
}

impl std::fmt::Debug for Requestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requestor")
            .field("channel", &self.inner.channel)
            .finish()
    }
}
