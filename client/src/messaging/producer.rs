//! [`Producer`]: hands jobs to competing consumers and awaits their results.

use std::sync::Arc;
use std::time::Duration;

use cachearoo_core::ProducerId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{create, encode, finish_call, start_call, DoneReceiver, InFlight, MessagingError};
use crate::client::{Cachearoo, Inner};
use crate::queue::LagReceiver;
use crate::shared::{Command, Endpoint, Outbox};

/// Hands jobs to the competing consumers of a channel and awaits their
/// results (JS `Producer`).
///
/// A job is written to `messaging.compcon.{channel}.jobs` under a fresh
/// uuid (over REST while the WebSocket is down); one consumer claims it and
/// reports progress and the result in the status bucket. A job ends with
/// the worker's `data` (decoded into the type you ask for), its `err`
/// ([`MessagingError::Remote`]), [`MessagingError::Timeout`] /
/// [`MessagingError::ProgressTimeout`] like a request (an unclaimed job is
/// then removed, so it does not run later), or
/// [`MessagingError::JobWrite`] when the job could not be written. See the
/// [delivery guarantees](crate::messaging#delivery-guarantees).
///
/// A cheap, clonable handle that keeps its client alive; removed (pending
/// jobs fail with [`MessagingError::Closed`]) by [`Producer::close`] or when
/// the last clone is dropped.
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
/// use cachearoo::{Cachearoo, CompetingConsumer, Options, Producer, StreamExt};
/// use serde_json::json;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = cachearoo_server::start(cachearoo_server::ServerConfig::default().port(0))?;
/// smol::block_on(async {
///     let options = Options::new().address(server.addr());
///     let (boss, crew) = (Cachearoo::new(options.clone(), Smol), Cachearoo::new(options, Smol));
///     boss.connection().wait_connected().await?;
///     crew.connection().wait_connected().await?;
///
///     // A consumer doing two jobs at a time.
///     let mut consumer = CompetingConsumer::new(&crew, "resize").await?;
///     consumer.serve(2, |job, progress| async move {
///         let _ = progress.send(&"halfway");
///         let width = job["width"].as_u64().ok_or("no width")?;
///         Ok::<_, &str>(json!({ "width": width / 2 }))
///     });
///     crew.list().await?; // the consumer's subscription is in place
///
///     let timeout = Duration::from_secs(5);
///     let producer = Producer::new(&boss, "resize", timeout, timeout).await?;
///     let half: serde_json::Value = producer.add_job(&json!({ "width": 640 })).await?;
///     assert_eq!(half, json!({ "width": 320 }));
///
///     // With progress.
///     let mut job = producer.add_job_with_progress::<_, serde_json::Value>(&json!({ "width": 64 })).await?;
///     assert_eq!(job.next().await, Some(json!("halfway")));
///     assert_eq!(job.result().await?, json!({ "width": 32 }));
///     // The worker's error.
///     let err = producer.add_job::<_, serde_json::Value>(&json!({})).await.unwrap_err();
///     assert_eq!(err.remote(), Some(&json!("no width")));
///
///     boss.close().await;
///     crew.close().await;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// server.shutdown();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

struct ProducerInner {
    client: Arc<Inner>,
    id: ProducerId,
    channel: String,
}

impl Drop for ProducerInner {
    fn drop(&mut self) {
        let _ = self
            .client
            .outbox
            .try_send(Outbox::Remove(Endpoint::Producer(self.id)));
    }
}

impl Producer {
    /// Creates a producer on `channel`; it follows job status at once.
    /// Fails only with [`MessagingError::Closed`] when the client is closed.
    pub async fn new(
        cro: &Cachearoo,
        channel: impl Into<String>,
        timeout: Duration,
        progress_timeout: Duration,
    ) -> Result<Producer, MessagingError> {
        let channel = channel.into();
        let id = create(&cro.inner, |reply| Command::CreateProducer {
            channel: channel.clone(),
            timeout,
            progress_timeout,
            reply,
        })
        .await?;
        Ok(Producer {
            inner: Arc::new(ProducerInner {
                client: cro.inner.clone(),
                id,
                channel,
            }),
        })
    }

    /// The channel this producer sends jobs on.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Adds `job` and waits for its result, decoded into `R` (see the
    /// [interoperability rule](crate::messaging#interoperability)); progress
    /// is ignored. Dropping the future stops waiting, not the job.
    pub async fn add_job<J, R>(&self, job: &J) -> Result<R, MessagingError>
    where
        J: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (done, _) = self.send(job, false).await?;
        finish_call(&done).await
    }

    /// Adds `job` and returns it in flight: a stream of the worker's
    /// progress values, then its result (JS `addJob(job, progress)`).
    pub async fn add_job_with_progress<J, R>(&self, job: &J) -> Result<InFlight<R>, MessagingError>
    where
        J: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (done, progress) = self.send(job, true).await?;
        Ok(InFlight::new(done, progress))
    }

    async fn send<J: Serialize + ?Sized>(
        &self,
        job: &J,
        with_progress: bool,
    ) -> Result<(DoneReceiver, Option<LagReceiver<Value>>), MessagingError> {
        let job = encode(job)?;
        let producer = self.inner.id;
        start_call(&self.inner.client, with_progress, |sink| Command::AddJob {
            producer,
            job,
            sink,
        })
        .await
    }

    /// Removes the producer now, for every clone: pending jobs fail with
    /// [`MessagingError::Closed`] (jobs already written stay for the
    /// consumers; their results are not awaited).
    pub fn close(&self) {
        let _ = self
            .inner
            .client
            .outbox
            .try_send(Outbox::Remove(Endpoint::Producer(self.inner.id)));
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("channel", &self.inner.channel)
            .finish()
    }
}
