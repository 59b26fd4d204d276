//! [`Replier`]: answers the requests of a channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_channel::{Receiver, Sender};
use cachearoo_core::{IncomingId, ReplierId};
use futures_lite::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{create, decode, encode, encode_result, MessagingError};
use crate::client::{Cachearoo, Inner};
use crate::runtime::{BoxFuture, Runtime};
use crate::shared::{lock, Command, Endpoint, Outbox, Overflow, ReplierSink};

/// Options of a [`Replier`]; see [`Replier::with_options`].
///
/// ```
/// use cachearoo::{Overflow, ReplierOptions};
/// let options = ReplierOptions::new().capacity(16).overflow(Overflow::Ignore);
/// assert_eq!(options.overflow, Overflow::Ignore);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReplierOptions {
    /// How many requests may wait for the application; `None` (the
    /// default) uses the client's
    /// [`Options::listener_capacity`](crate::Options::listener_capacity).
    pub capacity: Option<usize>,
    /// What happens to a request beyond that (default: answer it with the
    /// error [`REPLIER_OVERLOADED`](crate::REPLIER_OVERLOADED)).
    pub overflow: Overflow,
}

impl ReplierOptions {
    /// The defaults.
    pub fn new() -> Self {
        ReplierOptions::default()
    }

    /// Sets [`ReplierOptions::capacity`] (at least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// Sets [`ReplierOptions::overflow`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }
}

/// Requests waiting for the application. Boxed: the receiver is `!Unpin`.
type IncomingQueue = Pin<Box<Receiver<(IncomingId, Value)>>>;
type MessageHandler = Box<dyn FnMut(Value, Reply, ReplyProgress) + Send>;
type ServeHandler =
    Arc<dyn Fn(Value, ReplyProgress) -> BoxFuture<'static, Result<Value, Value>> + Send + Sync>;

/// How the replier's task answers.
enum Handler {
    Callback(MessageHandler),
    Serve {
        handler: ServeHandler,
        /// Free slots: one token per request that may run at once.
        tokens: (Sender<()>, Receiver<()>),
    },
}

/// Answers the requests of a channel (JS `Replier`).
///
/// Every request sent on `#reqrep/{channel}` by another client reaches
/// every replier of the channel once; replies (ours or other repliers') are
/// never taken for requests. Three ways to answer, pick one:
///
/// - the replier is a [`Stream`] of [`IncomingRequest`]s, each with
///   [`reply`](IncomingRequest::reply) (once) and
///   [`progress`](IncomingRequest::progress) (see [`Requestor`](crate::Requestor)
///   for an example);
/// - [`Replier::on_message`]: a callback with `(message, reply, progress)`,
///   as in JS;
/// - [`Replier::serve`]: an async function, with a limit on how many run at once.
///
/// Requests the application has not taken yet wait in a bounded queue;
/// see [`ReplierOptions`] and the [module docs](crate::messaging#queues-and-backpressure).
/// Dropping the replier (or [`Replier::close`]) removes it: requests not yet
/// answered can no longer be answered.
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
/// use cachearoo::{Cachearoo, Options, Replier, Requestor};
/// use serde_json::{json, Value};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = cachearoo_server::start(cachearoo_server::ServerConfig::default().port(0))?;
/// smol::block_on(async {
///     let options = Options::new().address(server.addr());
///     let (asker, answerer) = (Cachearoo::new(options.clone(), Smol), Cachearoo::new(options, Smol));
///     asker.connection().wait_connected().await?;
///     answerer.connection().wait_connected().await?;
///
///     // JS: replier.onMessage = (message, reply, progress) => { ... }
///     let mut echo = Replier::new(&answerer, "echo").await?;
///     echo.on_message(|message, reply, _progress| {
///         let _ = reply.ok(&message);
///     });
///     // An async handler, at most 4 at once.
///     let mut upper = Replier::new(&answerer, "upper").await?;
///     upper.serve(4, |message, _progress| async move {
///         match message.as_str() {
///             Some(text) => Ok(text.to_uppercase()),
///             None => Err("send a string"),
///         }
///     });
///     answerer.list().await?; // the subscriptions are in place
///
///     let timeout = Duration::from_secs(5);
///     let echoes = Requestor::new(&asker, "echo", timeout, timeout).await?;
///     assert_eq!(echoes.request::<_, Value>(&json!([1, 2])).await?, json!([1, 2]));
///     let uppers = Requestor::new(&asker, "upper", timeout, timeout).await?;
///     assert_eq!(uppers.request::<_, String>(&"hi").await?, "HI");
///     asker.close().await;
///     answerer.close().await;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// server.shutdown();
/// # Ok(())
/// # }
/// ```
pub struct Replier {
    client: Arc<Inner>,
    id: ReplierId,
    channel: String,
    /// Until a handler takes it over.
    incoming: Option<IncomingQueue>,
    /// The handler of the task that took the queue over.
    handler: Option<Arc<Mutex<Handler>>>,
}

impl Replier {
    /// Creates a replier on `channel` with the default [`ReplierOptions`].
    /// Fails only with [`MessagingError::Closed`] when the client is closed.
    ///
    /// See the [module docs](crate::messaging#interoperability) about when
    /// the server starts sending requests to it.
    pub async fn new(
        cro: &Cachearoo,
        channel: impl Into<String>,
    ) -> Result<Replier, MessagingError> {
        Replier::with_options(cro, channel, ReplierOptions::default()).await
    }

    /// Creates a replier on `channel` with these options.
    pub async fn with_options(
        cro: &Cachearoo,
        channel: impl Into<String>,
        options: ReplierOptions,
    ) -> Result<Replier, MessagingError> {
        let channel = channel.into();
        let capacity = options
            .capacity
            .unwrap_or(cro.inner.listener_capacity)
            .max(1);
        let (tx, rx) = async_channel::bounded(capacity);
        let id = create(&cro.inner, |reply| Command::CreateReplier {
            channel: channel.clone(),
            sink: ReplierSink {
                tx,
                overflow: options.overflow,
            },
            reply,
        })
        .await?;
        Ok(Replier {
            client: cro.inner.clone(),
            id,
            channel,
            incoming: Some(Box::pin(rx)),
            handler: None,
        })
    }

    /// The channel this replier answers.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Calls `handler(message, reply, progress)` for every request (JS
    /// `onMessage`), on a task of the client's runtime, one request at a
    /// time. The handler must not block: answer at once, or move `reply`
    /// (and `progress`) into a task of your own. A `reply` dropped without
    /// an answer leaves the request unanswered (its requestor times out).
    ///
    /// The handler takes the requests over from the stream (which then
    /// ends). Calling this again, or [`Replier::serve`], replaces the
    /// handler. See the [type docs](Replier) for an example.
    pub fn on_message<F>(&mut self, handler: F)
    where
        F: FnMut(Value, Reply, ReplyProgress) + Send + 'static,
    {
        self.install(Handler::Callback(Box::new(handler)));
    }

    /// Answers every request with `handler(message, progress)`: its `Ok`
    /// becomes the reply's `data`, its `Err` the reply's `err`. At most
    /// `concurrency` (at least 1) handlers run at once, each as a task of
    /// the client's runtime; further requests wait in the replier's queue
    /// (and beyond its capacity, the [`Overflow`] policy applies).
    ///
    /// Like [`Replier::on_message`], this takes the requests over from the
    /// stream and replaces an earlier handler. See the
    /// [type docs](Replier) for an example.
    pub fn serve<F, Fut, T, E>(&mut self, concurrency: usize, handler: F)
    where
        F: Fn(Value, ReplyProgress) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize,
        E: Serialize,
    {
        let handler: ServeHandler = Arc::new(move |message, progress| {
            let answer = handler(message, progress);
            Box::pin(async move { encode_result(answer.await).0 })
        });
        let concurrency = concurrency.max(1);
        let tokens = async_channel::bounded(concurrency);
        for _ in 0..concurrency {
            let _ = tokens.0.try_send(());
        }
        self.install(Handler::Serve { handler, tokens });
    }

    fn install(&mut self, handler: Handler) {
        if let Some(slot) = &self.handler {
            *lock(slot) = handler;
            return;
        }
        let slot = Arc::new(Mutex::new(handler));
        self.handler = Some(slot.clone());
        let Some(incoming) = self.incoming.take() else {
            return;
        };
        let outbox = self.client.outbox.clone();
        let runtime = self.client.runtime.clone();
        // The task ends when the driver drops the queue's sender: on
        // removal of this replier or when the client closes. It holds no
        // client handle, so it keeps nothing alive.
        self.client
            .runtime
            .spawn(Box::pin(run(incoming, slot, outbox, runtime)));
    }

    /// Removes the replier (same as dropping it).
    pub fn close(self) {}
}

async fn run(
    incoming: IncomingQueue,
    slot: Arc<Mutex<Handler>>,
    outbox: Sender<Outbox>,
    runtime: Arc<dyn Runtime>,
) {
    while let Ok((id, message)) = incoming.recv().await {
        let (reply, progress) = answer_handles(id, &outbox);
        let serve = {
            let mut handler = lock(&slot);
            match &mut *handler {
                Handler::Callback(f) => {
                    f(message, reply, progress);
                    continue;
                }
                Handler::Serve { handler, tokens } => {
                    (handler.clone(), tokens.0.clone(), tokens.1.clone())
                }
            }
        };
        let (handler, give_back, take) = serve;
        // Waiting for a free slot leaves further requests in the queue,
        // where the overflow policy applies.
        if take.recv().await.is_err() {
            // The token channel is ours and never closed; treat as gone.
            return;
        }
        let answer = handler(message, progress);
        runtime.spawn(Box::pin(async move {
            let result = answer.await;
            let _ = reply.send_value(result);
            let _ = give_back.try_send(());
        }));
    }
}

fn answer_handles(incoming: IncomingId, outbox: &Sender<Outbox>) -> (Reply, ReplyProgress) {
    (
        Reply {
            incoming,
            outbox: outbox.clone(),
            sent: false,
        },
        ReplyProgress {
            incoming,
            outbox: outbox.clone(),
        },
    )
}

impl Drop for Replier {
    fn drop(&mut self) {
        let _ = self
            .client
            .outbox
            .try_send(Outbox::Remove(Endpoint::Replier(self.id)));
    }
}

impl Stream for Replier {
    type Item = IncomingRequest;

    /// The next request; `None` when the replier is removed, the client
    /// closes, or a handler took the requests over.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<IncomingRequest>> {
        let Some(incoming) = self.incoming.as_mut() else {
            return Poll::Ready(None);
        };
        match incoming.as_mut().poll_next(cx) {
            Poll::Ready(Some((id, message))) => {
                let (reply, progress) = answer_handles(id, &self.client.outbox);
                Poll::Ready(Some(IncomingRequest {
                    message,
                    reply,
                    progress,
                }))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replier")
            .field("channel", &self.channel)
            .field("handler", &self.handler.is_some())
            .finish()
    }
}

/// One request for a [`Replier`]: its message, and how to answer it.
///
/// Answer with [`IncomingRequest::reply`] (once; it consumes the request)
/// after any number of [`IncomingRequest::progress`] calls. Answers are
/// sent without waiting; one that cannot travel (the WebSocket is down) is
/// lost and the requestor times out. Dropping a request without replying
/// leaves it unanswered. See [`Requestor`](crate::Requestor) for an example.
pub struct IncomingRequest {
    message: Value,
    reply: Reply,
    progress: ReplyProgress,
}

impl IncomingRequest {
    /// The request's message as sent.
    pub fn message(&self) -> &Value {
        &self.message
    }

    /// The message decoded into `T` (a string holding JSON text is also
    /// tried as JSON; see the [interoperability rule](crate::messaging#interoperability)).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, MessagingError> {
        decode(self.message.clone())
    }

    /// Sends progress to the requestor (it also restarts the requestor's
    /// progress timer). Fails with [`MessagingError::Serialize`], or
    /// [`MessagingError::Closed`] when the client is closed.
    pub fn progress<P: Serialize + ?Sized>(&self, data: &P) -> Result<(), MessagingError> {
        self.progress.send(data)
    }

    /// Replies: `Ok` becomes the reply's `data`, `Err` its `err`. A value
    /// that cannot be serialized is replied as an error saying so (the
    /// requestor fails at once) and returned as [`MessagingError::Serialize`].
    pub fn reply<T: Serialize, E: Serialize>(
        self,
        result: Result<T, E>,
    ) -> Result<(), MessagingError> {
        self.reply.send(result)
    }

    /// The message and the two answer handles, to move them separately.
    pub fn into_parts(self) -> (Value, Reply, ReplyProgress) {
        (self.message, self.reply, self.progress)
    }
}

impl std::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("message", &self.message)
            .finish()
    }
}

/// Answers one request, once (JS `reply(err, data)`). Sent without
/// waiting; dropping it unanswered leaves the request unanswered (its
/// requestor times out; a replier that answers nothing may be one of
/// several on the channel). See [`Replier::on_message`].
pub struct Reply {
    incoming: IncomingId,
    outbox: Sender<Outbox>,
    sent: bool,
}

impl Reply {
    /// Replies with `Ok` as `data` or `Err` as `err`; see
    /// [`IncomingRequest::reply`].
    pub fn send<T: Serialize, E: Serialize>(
        self,
        result: Result<T, E>,
    ) -> Result<(), MessagingError> {
        let (wire, error) = encode_result(result);
        self.send_value(wire)?;
        error.map_or(Ok(()), Err)
    }

    /// Replies with `data`.
    pub fn ok<T: Serialize + ?Sized>(self, data: &T) -> Result<(), MessagingError> {
        match encode(data) {
            Ok(data) => self.send_value(Ok(data)),
            Err(e) => {
                self.send_value(Err(Value::from(format!(
                    "the answer could not be serialized: {e}"
                ))))?;
                Err(e)
            }
        }
    }

    /// Replies with the error `err`.
    pub fn err<E: Serialize + ?Sized>(self, err: &E) -> Result<(), MessagingError> {
        match encode(err) {
            Ok(err) => self.send_value(Err(err)),
            Err(e) => {
                self.send_value(Err(Value::from(format!(
                    "the answer could not be serialized: {e}"
                ))))?;
                Err(e)
            }
        }
    }

    fn send_value(mut self, result: Result<Value, Value>) -> Result<(), MessagingError> {
        self.sent = true;
        self.outbox
            .try_send(Outbox::Reply {
                incoming: self.incoming,
                result,
            })
            .map_err(|_| MessagingError::Closed)
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            // Frees the request's entry in the core; nothing is sent.
            let _ = self.outbox.try_send(Outbox::ForgetIncoming(self.incoming));
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("sent", &self.sent).finish()
    }
}

/// Sends progress for one request (JS `progress(data)`), any number of
/// times before the reply; clonable. Progress after the reply is ignored.
/// See [`Replier::on_message`].
#[derive(Clone)]
pub struct ReplyProgress {
    incoming: IncomingId,
    outbox: Sender<Outbox>,
}

impl ReplyProgress {
    /// Sends `data` as progress; see [`IncomingRequest::progress`].
    pub fn send<P: Serialize + ?Sized>(&self, data: &P) -> Result<(), MessagingError> {
        let data = encode(data)?;
        self.outbox
            .try_send(Outbox::ReplyProgress {
                incoming: self.incoming,
                data,
            })
            .map_err(|_| MessagingError::Closed)
    }
}

impl std::fmt::Debug for ReplyProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyProgress")
    }
}
