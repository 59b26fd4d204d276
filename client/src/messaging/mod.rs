//! Request–reply and competing consumers (PROTOCOL.md §7) over a
//! [`Cachearoo`](crate::Cachearoo) client.
//!
//! The state machines live in `cachearoo-core` (wire format, timers,
//! duplicate detection, claims); this module gives them handles:
//!
//! | pattern | asks | answers |
//! |---|---|---|
//! | request–reply | [`Requestor`] | [`Replier`] (a [`Stream`] of [`IncomingRequest`]s, [`Replier::on_message`] or [`Replier::serve`]) |
//! | competing consumers | [`Producer`] | [`CompetingConsumer`] ([`CompetingConsumer::on_job_query`] with [`Worker`]s, or [`CompetingConsumer::serve`]) |
//!
//! # Where application code runs
//!
//! Handlers (`on_message`, `on_job_query`, [`Worker::work`], `serve`) run
//! on a task spawned on the client's runtime, one per endpoint, never on
//! the client's driver task. `on_message`, `on_job_query` and
//! [`Worker::work`] are called one at a time and must not block: answer at
//! once, or move the answer handle ([`Reply`], [`JobQueryCallback`],
//! [`JobDone`]) into a task of your own and answer from there. Every answer
//! handle is `Send` and can be used from any thread.
//!
//! # Queues and backpressure
//!
//! - A replier queues at most [`ReplierOptions::capacity`] requests that the
//!   application has not taken yet (default: the client's
//!   [`Options::listener_capacity`](crate::Options::listener_capacity)).
//!   Beyond that, by default, a request is answered at once with the error
//!   [`REPLIER_OVERLOADED`] so that its requestor fails fast instead of
//!   waiting for its timeout ([`Overflow`] has the alternative).
//! - A consumer queues at most that many unanswered job queries; beyond
//!   that the client answers [`NO_WORKER_AVAILABLE`] itself and the job is
//!   offered again about 100 ms later (other consumers may claim it first).
//! - Progress values waiting to be read from an [`InFlight`] are bounded
//!   the same way; when the reader falls behind the oldest are dropped
//!   (progress is informational; the result is never dropped).
//! - Answers (replies, progress, job answers, done) are sent without
//!   waiting, in the order they were made.
//!
//! # Delivery guarantees
//!
//! Requests and jobs are **at most once** end to end; each call ends
//! exactly once, with the result or an error that says why:
//!
//! - **Requests** are signals: stored nowhere, relayed to the repliers
//!   connected at that moment. Every replier on the channel sees every
//!   request; the requestor takes the first reply and drops later ones. No
//!   replier, a replier that dies before answering, or a reply sent while
//!   the replier is disconnected: the requestor fails with
//!   [`MessagingError::ProgressTimeout`] or [`MessagingError::Timeout`]. A
//!   requestor that is disconnected when it sends fails at once with
//!   [`MessagingError::NotConnected`]; one that loses its connection while
//!   waiting times out (the reply, sent while it was away, is gone).
//! - **Jobs** are written to the server's store (over REST while the
//!   producer's WebSocket is down) and offered to the consumers subscribed
//!   when the write's event goes out. A consumer that subscribes (or
//!   reconnects) later is not offered jobs written before: a job written
//!   while no consumer listens stays unclaimed until its producer times
//!   out and removes it. Exactly one consumer wins a job's claim (a
//!   `failIfExists` write); the others release their worker. Progress and
//!   done are status writes, which go over REST while the consumer's
//!   WebSocket is down, so a consumer that only loses its connection
//!   mid-job still reports (a write cut off with the connection is not
//!   repeated, though: it may have been applied); the producer must be connected to see them
//!   (status is followed through events), or it times out. A consumer that
//!   dies after its claim takes the job with it: the producer fails with a
//!   progress timeout or timeout, and the job is not retried. A producer
//!   that dies leaves its job behind: a consumer may still work it, and its
//!   status key stays in the store.
//! - Dropping an endpoint removes it: its pending requests or jobs fail
//!   with [`MessagingError::Closed`], and so does everything pending when
//!   the client closes.
//!
//! # Interoperability
//!
//! Data travels as any JSON (the JS client's way). The C++ client sends
//! `data` (and progress) as a JSON *string* holding JSON text
//! (`{"err":null,"data":"{\"result\":15}"}`). So when a typed result (or a
//! typed message, [`IncomingRequest::parse`]) is asked for and the value is
//! a string that does not fit the type as it is, the string is also tried
//! as JSON text. Asking for [`serde_json::Value`] (or `String`) gives the
//! value exactly as received.
//!
//! The server never echoes a client's own signals and writes back to it,
//! so a replier (consumer) never sees requests (jobs) of a requestor
//! (producer) on the **same** client: use one client per role.
//!
//! The server also learns of a new replier's or consumer's subscription
//! asynchronously: a request or job sent by another client right after
//! [`Replier::new`] / [`CompetingConsumer::new`] returns may come before it
//! and be missed. Once any later operation of the same client has been
//! answered (a `list()`, say), the subscription is in place.
//!
//! [`Stream`]: futures_lite::Stream

mod consumer;
mod producer;
mod replier;
mod requestor;

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_channel::{Receiver, Sender};
use cachearoo_core::{MessagingError as CoreMessagingError, OpError};
use futures_lite::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::client::Inner;
use crate::queue::{lag_queue, LagReceiver};
use crate::shared::{CallSink, Command};

pub use consumer::{CompetingConsumer, JobDone, JobProgress, JobQueryCallback, Worker};
pub use producer::Producer;
pub use replier::{IncomingRequest, Replier, ReplierOptions, Reply, ReplyProgress};
pub use requestor::Requestor;

pub use crate::shared::Overflow;
pub use cachearoo_core::{JOB_NOT_SUPPORTED, NO_WORKER_AVAILABLE};

/// The error a replier answers with when its queue is full
/// ([`Overflow::ErrorReply`]): the requestor sees
/// `MessagingError::Remote(Value::String("replier overloaded"))`.
pub const REPLIER_OVERLOADED: &str = "replier overloaded";

/// Why a request, a job or a messaging call failed.
///
/// ```
/// use cachearoo::MessagingError;
/// use serde_json::json;
///
/// fn describe(e: &MessagingError) -> String {
///     match e {
///         MessagingError::Remote(err) => format!("the other side said {err}"),
///         MessagingError::Timeout | MessagingError::ProgressTimeout => "too slow".into(),
///         MessagingError::NotConnected => "offline".into(),
///         MessagingError::Closed => "shut down".into(),
///         other => other.to_string(),
///     }
/// }
/// assert_eq!(describe(&MessagingError::Remote(json!("nope"))), r#"the other side said "nope""#);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// The other side answered with an error: the reply's or job status's
    /// `err`, as sent.
    #[error("remote error: {0}")]
    Remote(Value),
    /// No reply (no `done` status) within the timeout.
    #[error("timed out")]
    Timeout,
    /// Nothing (reply or progress) within the progress timeout.
    #[error("progress timed out")]
    ProgressTimeout,
    /// The request could not be sent: no WebSocket (signals have no REST form).
    #[error("not connected")]
    NotConnected,
    /// The endpoint was closed or dropped, or the client closed.
    #[error("closed")]
    Closed,
    /// The producer could not write the job.
    #[error("job write failed: {0}")]
    JobWrite(#[source] OpError),
    /// The value to send could not be turned into JSON.
    #[error("could not serialize the value: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The value received does not fit the requested type (see the
    /// [interoperability rule](self#interoperability)).
    #[error("could not deserialize the value: {0}")]
    Deserialize(#[source] serde_json::Error),
}

impl MessagingError {
    /// Whether this is [`Timeout`](Self::Timeout) or
    /// [`ProgressTimeout`](Self::ProgressTimeout).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            MessagingError::Timeout | MessagingError::ProgressTimeout
        )
    }

    /// The other side's error value, for [`Remote`](Self::Remote).
    pub fn remote(&self) -> Option<&Value> {
        match self {
            MessagingError::Remote(v) => Some(v),
            _ => None,
        }
    }
}

impl From<CoreMessagingError> for MessagingError {
    fn from(e: CoreMessagingError) -> Self {
        match e {
            CoreMessagingError::Remote(v) => MessagingError::Remote(v),
            CoreMessagingError::Timeout => MessagingError::Timeout,
            CoreMessagingError::ProgressTimeout => MessagingError::ProgressTimeout,
            CoreMessagingError::NotConnected => MessagingError::NotConnected,
            CoreMessagingError::Op(op) => MessagingError::JobWrite(op),
            CoreMessagingError::Closed => MessagingError::Closed,
        }
    }
}

/// Deserializes received data into `T`, also trying a string as JSON text
/// (the C++ client's way; see the [module docs](self#interoperability)).
pub(crate) fn decode<T: DeserializeOwned>(value: Value) -> Result<T, MessagingError> {
    match value {
        Value::String(text) => {
            // The string as it is first, so that `String` and `Value` get
            // exactly what was sent.
            match serde_json::from_value(Value::String(text.clone())) {
                Ok(t) => Ok(t),
                Err(e) => serde_json::from_str(&text).map_err(|_| MessagingError::Deserialize(e)),
            }
        }
        other => serde_json::from_value(other).map_err(MessagingError::Deserialize),
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Value, MessagingError> {
    serde_json::to_value(value).map_err(MessagingError::Serialize)
}

/// Encodes a handler's result for the wire; a value that cannot be
/// serialized becomes an error the other side can read.
pub(crate) fn encode_result<T: Serialize, E: Serialize>(
    result: Result<T, E>,
) -> (Result<Value, Value>, Option<MessagingError>) {
    let encoded = match &result {
        Ok(t) => serde_json::to_value(t).map(Ok),
        Err(e) => serde_json::to_value(e).map(Err),
    };
    match encoded {
        Ok(r) => (r, None),
        Err(e) => (
            Err(Value::from(format!(
                "the answer could not be serialized: {e}"
            ))),
            Some(MessagingError::Serialize(e)),
        ),
    }
}

/// Sends a creation command and waits for the new endpoint's id.
pub(crate) async fn create<T>(
    inner: &Inner,
    make: impl FnOnce(Sender<T>) -> Command,
) -> Result<T, MessagingError> {
    let (tx, rx) = async_channel::bounded(1);
    if !inner.send(make(tx)).await {
        return Err(MessagingError::Closed);
    }
    rx.recv().await.map_err(|_| MessagingError::Closed)
}

type DoneReceiver = Receiver<Result<Value, CoreMessagingError>>;

/// Sends a request or job (made by `make` from its sink) and returns the
/// receivers of its outcome.
pub(crate) async fn start_call(
    inner: &Inner,
    with_progress: bool,
    make: impl FnOnce(CallSink) -> Command,
) -> Result<(DoneReceiver, Option<LagReceiver<Value>>), MessagingError> {
    let (done_tx, done_rx) = async_channel::bounded(1);
    let (progress_tx, progress_rx) = if with_progress {
        let (tx, rx) = lag_queue(inner.listener_capacity);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let sink = CallSink {
        done: done_tx,
        progress: progress_tx,
    };
    if !inner.send(make(sink)).await {
        return Err(MessagingError::Closed);
    }
    Ok((done_rx, progress_rx))
}

/// Waits for a call's outcome and decodes it.
pub(crate) async fn finish_call<R: DeserializeOwned>(
    done: &DoneReceiver,
) -> Result<R, MessagingError> {
    match done.recv().await {
        Ok(Ok(value)) => decode(value),
        Ok(Err(e)) => Err(e.into()),
        // The driver ended without an answer: the client closed.
        Err(_) => Err(MessagingError::Closed),
    }
}

/// A request or job in flight, with its progress: a [`Stream`] of the
/// progress values the other side sends (ending when the call ends), then
/// [`InFlight::result`].
///
/// From [`Requestor::request_with_progress`] and
/// [`Producer::add_job_with_progress`]. Progress values are
/// [`Value`]s as sent; at most
/// [`Options::listener_capacity`](crate::Options::listener_capacity) wait
/// to be read, older ones are dropped. Reading progress is optional:
/// `result()` can be awaited at once. Dropping an `InFlight` stops
/// nothing: the request or job runs to its end unobserved.
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
/// use cachearoo::{Cachearoo, Options, Replier, Requestor, StreamExt};
/// use serde_json::{json, Value};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = cachearoo_server::start(cachearoo_server::ServerConfig::default().port(0))?;
/// smol::block_on(async {
///     let options = Options::new().address(server.addr());
///     let (a, b) = (Cachearoo::new(options.clone(), Smol), Cachearoo::new(options, Smol));
///     a.connection().wait_connected().await?;
///     b.connection().wait_connected().await?;
///
///     // A replier that reports progress before it answers.
///     let mut replier = Replier::new(&b, "countdown").await?;
///     replier.on_message(|message, reply, progress| {
///         for left in (1..=3).rev() {
///             let _ = progress.send(&json!({ "left": left }));
///         }
///         let _ = reply.ok(&json!({ "done": message }));
///     });
///     b.list().await?; // the replier's subscription is in place
///
///     let requestor = Requestor::new(&a, "countdown", Duration::from_secs(5), Duration::from_secs(2)).await?;
///     let mut call = requestor.request_with_progress::<_, Value>(&"go").await?;
///     let mut seen = Vec::new();
///     while let Some(progress) = call.next().await {
///         seen.push(progress["left"].as_i64().unwrap_or(0));
///     }
///     assert_eq!(seen, [3, 2, 1]);
///     assert_eq!(call.result().await?, json!({ "done": "go" }));
///     a.close().await;
///     b.close().await;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// server.shutdown();
/// # Ok(())
/// # }
/// ```
pub struct InFlight<R> {
    progress: Option<LagReceiver<Value>>,
    // Boxed: async-channel's receiver is `!Unpin`.
    done: Pin<Box<DoneReceiver>>,
    _result: PhantomData<fn() -> R>,
}

impl<R> InFlight<R> {
    pub(crate) fn new(done: DoneReceiver, progress: Option<LagReceiver<Value>>) -> Self {
        InFlight {
            progress,
            done: Box::pin(done),
            _result: PhantomData,
        }
    }
}

impl<R: DeserializeOwned> InFlight<R> {
    /// Waits for the reply (or the job's `done` status) and decodes its
    /// `data` into `R`, or fails with why not.
    pub async fn result(self) -> Result<R, MessagingError> {
        finish_call(&self.done).await
    }
}

impl<R> Stream for InFlight<R> {
    type Item = Value;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Value>> {
        let Some(progress) = self.progress.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match Pin::new(&mut *progress).poll_next(cx) {
                Poll::Ready(Some(Ok(value))) => return Poll::Ready(Some(value)),
                // Dropped progress is documented; go on with the next one.
                Poll::Ready(Some(Err(_lagged))) => continue,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<R> std::fmt::Debug for InFlight<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("done", &!self.done.is_empty())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Sum {
        result: u32,
    }

    #[test]
    fn strings_holding_json_text_decode_into_types() {
        // The C++ replier's shape.
        let data = json!("{\"result\":15}");
        assert_eq!(decode::<Sum>(data.clone()).ok(), Some(Sum { result: 15 }));
        // Value and String get the string as it is.
        assert_eq!(decode::<Value>(data.clone()).ok(), Some(data.clone()));
        assert_eq!(
            decode::<String>(data).ok(),
            Some("{\"result\":15}".to_string())
        );
        assert_eq!(decode::<u32>(json!("15")).ok(), Some(15));
        assert_eq!(
            decode::<Sum>(json!({"result": 15})).ok(),
            Some(Sum { result: 15 })
        );
        // Neither way fits: the error is about the value as received.
        assert!(matches!(
            decode::<Sum>(json!("not json")),
            Err(MessagingError::Deserialize(_))
        ));
        assert!(matches!(
            decode::<Sum>(json!(15)),
            Err(MessagingError::Deserialize(_))
        ));
    }

    #[test]
    fn unserializable_answers_become_readable_errors() {
        use std::collections::BTreeMap;
        // A map with non-string keys cannot be JSON.
        let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
        let (wire, err) = encode_result::<_, ()>(Ok(bad));
        assert!(matches!(wire, Err(Value::String(_))));
        assert!(matches!(err, Some(MessagingError::Serialize(_))));
        let (wire, err) = encode_result::<(), _>(Err("no"));
        assert_eq!(wire, Err(json!("no")));
        assert!(err.is_none());
    }
}
