//! [`CompetingConsumer`]: competes for the jobs of a channel and works them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};
use cachearoo_core::{ConsumerId, JobAnswer, TaskId, JOB_NOT_SUPPORTED, NO_WORKER_AVAILABLE};
use serde::Serialize;
use serde_json::Value;

use super::{create, encode, encode_result, MessagingError};
use crate::client::{Cachearoo, Inner};
use crate::runtime::{BoxFuture, Runtime};
use crate::shared::{lock, Command, ConsumerEvent, ConsumerSink, Endpoint, Outbox};

/// A worker of a [`CompetingConsumer`], as in JS: the application keeps a
/// set of workers, hands a free one to [`JobQueryCallback::accept`], and
/// the consumer calls [`Worker::work`] once the job is claimed, then
/// [`Worker::release`] when the job is done — or at once when the claim is
/// lost to another consumer, the job vanished, or the consumer closed
/// before the job started.
///
/// Methods take `&self` (share workers as `Arc`s and keep state in atomics
/// or a mutex): one worker value may be handed out again after its release,
/// or even serve several jobs at once if it says it can.
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
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use cachearoo::{Cachearoo, CompetingConsumer, JobDone, JobProgress, Options, Producer, Worker};
/// use serde_json::{json, Value};
///
/// struct Printer { id: String, busy: AtomicBool }
///
/// impl Worker for Printer {
///     fn id(&self) -> &str { &self.id }
///     fn available(&self) -> bool { !self.busy.load(Ordering::SeqCst) }
///     fn work(&self, job: Value, done: JobDone, progress: JobProgress) {
///         // Must not block: real work would move `done` into a task.
///         let _ = progress.send(&"printing");
///         let _ = done.ok(&json!({ "printed": job, "by": self.id }));
///     }
///     fn release(&self) { self.busy.store(false, Ordering::SeqCst); }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = cachearoo_server::start(cachearoo_server::ServerConfig::default().port(0))?;
/// smol::block_on(async {
///     let options = Options::new().address(server.addr());
///     let (office, shop) = (Cachearoo::new(options.clone(), Smol), Cachearoo::new(options, Smol));
///     office.connection().wait_connected().await?;
///     shop.connection().wait_connected().await?;
///
///     let printers: Vec<Arc<Printer>> = (0..2)
///         .map(|i| Arc::new(Printer { id: format!("p{i}"), busy: AtomicBool::new(false) }))
///         .collect();
///     let mut consumer = CompetingConsumer::new(&shop, "print").await?;
///     // JS: consumer.onJobQuery = (job, callback) => { ... }
///     consumer.on_job_query(move |job, callback| {
///         if job.get("pages").is_none() {
///             return callback.not_supported(); // JOB_NOT_SUPPORTED: never asked again
///         }
///         match printers.iter().find(|p| p.available()) {
///             Some(p) => {
///                 p.busy.store(true, Ordering::SeqCst);
///                 callback.accept(p.clone());
///             }
///             None => callback.no_worker_available(), // asked again in ~100 ms
///         }
///     });
///     shop.list().await?; // the consumer's subscription is in place
///
///     let timeout = Duration::from_secs(5);
///     let producer = Producer::new(&office, "print", timeout, timeout).await?;
///     let result: Value = producer.add_job(&json!({ "pages": 3 })).await?;
///     assert_eq!(result["printed"], json!({ "pages": 3 }));
///     office.close().await;
///     shop.close().await;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// server.shutdown();
/// # Ok(())
/// # }
/// ```
pub trait Worker: Send + Sync + 'static {
    /// The worker's name (for logs).
    fn id(&self) -> &str;

    /// Whether the worker can take a job now. The consumer itself does not
    /// call this: it is for the application's `on_job_query` handler.
    fn available(&self) -> bool;

    /// Works `job`: report with `progress` any number of times, then finish
    /// with `done` (once). Called on the consumer's task: it must not
    /// block; move `done` and `progress` into a task of your own for long
    /// work. Dropping `done` unanswered finishes the job with an error.
    fn work(&self, job: Value, done: JobDone, progress: JobProgress);

    /// The worker is free again (after its job is done, or when the job it
    /// was reserved for will not come).
    fn release(&self);
}

type QueryHandler = Box<dyn FnMut(Value, JobQueryCallback) + Send>;
/// Workers reserved for accepted jobs that have not started yet; `None`
/// once the consumer's task has ended (a late accept releases at once).
type Reserved = Arc<Mutex<Option<HashMap<TaskId, Arc<dyn Worker>>>>>;

/// Competes for the jobs of a channel and works them (JS
/// `CompetingConsumer`).
///
/// For every job written to `messaging.compcon.{channel}.jobs` after it
/// subscribed, the consumer waits a random 0–20 ms (to spread the load
/// between consumers), then asks the application for a worker: with
/// [`CompetingConsumer::on_job_query`] (and [`Worker`]s, as in JS) or with
/// [`CompetingConsumer::serve`] (an async function and a concurrency
/// limit). With a worker it claims the job; exactly one consumer wins a
/// claim, the others release their worker.
///
/// Jobs arriving before a handler is installed wait for it (up to the
/// queue's capacity; see the [module docs](crate::messaging#queues-and-backpressure)).
/// Dropping the consumer (or [`CompetingConsumer::close`]) removes it:
/// started jobs can no longer report, their producers time out.
/// See [`Worker`] and [`Producer`](crate::Producer) for examples.
pub struct CompetingConsumer {
    client: Arc<Inner>,
    id: ConsumerId,
    channel: String,
    /// Until a handler is installed.
    events: Option<Receiver<ConsumerEvent>>,
    handler: Option<Arc<Mutex<QueryHandler>>>,
}

impl CompetingConsumer {
    /// Creates a consumer on `channel` with a random consumer id. Fails only
    /// with [`MessagingError::Closed`] when the client is closed.
    pub async fn new(
        cro: &Cachearoo,
        channel: impl Into<String>,
    ) -> Result<CompetingConsumer, MessagingError> {
        CompetingConsumer::create(cro, channel.into(), None).await
    }

    /// Creates a consumer on `channel` that claims jobs as `consumer_id`
    /// (written in each claim, `{"claim":{"id":..}}`).
    pub async fn with_id(
        cro: &Cachearoo,
        channel: impl Into<String>,
        consumer_id: impl Into<String>,
    ) -> Result<CompetingConsumer, MessagingError> {
        CompetingConsumer::create(cro, channel.into(), Some(consumer_id.into())).await
    }

    async fn create(
        cro: &Cachearoo,
        channel: String,
        consumer_id: Option<String>,
    ) -> Result<CompetingConsumer, MessagingError> {
        let (tx, rx) = async_channel::unbounded();
        let capacity = cro.inner.listener_capacity.max(1);
        let id = create(&cro.inner, |reply| Command::CreateConsumer {
            channel: channel.clone(),
            consumer_id,
            sink: ConsumerSink { tx, capacity },
            reply,
        })
        .await?;
        Ok(CompetingConsumer {
            client: cro.inner.clone(),
            id,
            channel,
            events: Some(rx),
            handler: None,
        })
    }

    /// The channel this consumer serves.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Calls `handler(job, callback)` for every new job (JS `onJobQuery`),
    /// on a task of the client's runtime, one at a time. Answer through
    /// `callback`, now or later: a worker ([`JobQueryCallback::accept`]),
    /// [`JOB_NOT_SUPPORTED`] or [`NO_WORKER_AVAILABLE`]. The handler must not
    /// block. Calling this again (or [`CompetingConsumer::serve`]) replaces
    /// the handler. See [`Worker`] for an example.
    pub fn on_job_query<F>(&mut self, handler: F)
    where
        F: FnMut(Value, JobQueryCallback) + Send + 'static,
    {
        let handler: QueryHandler = Box::new(handler);
        if let Some(slot) = &self.handler {
            *lock(slot) = handler;
            return;
        }
        let slot = Arc::new(Mutex::new(handler));
        self.handler = Some(slot.clone());
        let Some(events) = self.events.take() else {
            return;
        };
        let outbox = self.client.outbox.clone();
        // Ends when the driver drops the queue's sender (removal or close);
        // holds no client handle, so it keeps nothing alive.
        self.client
            .runtime
            .spawn(Box::pin(run(events, slot, outbox)));
    }

    /// Works jobs with `work(job, progress)`, at most `concurrency` (at
    /// least 1) at once, each as a task of the client's runtime: the
    /// consumer claims a job only while fewer are running, and otherwise
    /// answers [`NO_WORKER_AVAILABLE`] (the job is offered again about every
    /// 100 ms until this or another consumer claims it). `Ok` becomes the
    /// job's `data`, `Err` its `err`.
    ///
    /// Replaces an earlier handler. See [`Producer`](crate::Producer) for an
    /// example.
    pub fn serve<F, Fut, T, E>(&mut self, concurrency: usize, work: F)
    where
        F: Fn(Value, JobProgress) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize,
        E: Serialize,
    {
        let work: SlotWork = Arc::new(move |job, progress| {
            let result = work(job, progress);
            Box::pin(async move { encode_result(result.await).0 })
        });
        let slots = Arc::new(Slots {
            free: AtomicUsize::new(concurrency.max(1)),
            work,
            runtime: self.client.runtime.clone(),
        });
        self.on_job_query(move |_job, callback| {
            if slots.take() {
                callback.accept(slots.clone());
            } else {
                callback.no_worker_available();
            }
        });
    }

    /// Removes the consumer (same as dropping it).
    pub fn close(self) {}
}

impl Drop for CompetingConsumer {
    fn drop(&mut self) {
        let _ = self
            .client
            .outbox
            .try_send(Outbox::Remove(Endpoint::Consumer(self.id)));
    }
}

impl std::fmt::Debug for CompetingConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompetingConsumer")
            .field("channel", &self.channel)
            .field("handler", &self.handler.is_some())
            .finish()
    }
}

/// The consumer's task: asks the application, starts and releases workers.
async fn run(
    events: Receiver<ConsumerEvent>,
    handler: Arc<Mutex<QueryHandler>>,
    outbox: Sender<Outbox>,
) {
    let reserved: Reserved = Arc::new(Mutex::new(Some(HashMap::new())));
    while let Ok(event) = events.recv().await {
        match event {
            ConsumerEvent::Query { task, job } => {
                let callback = JobQueryCallback {
                    task,
                    outbox: outbox.clone(),
                    reserved: reserved.clone(),
                    answered: false,
                };
                let mut handler = lock(&handler);
                (*handler)(job, callback);
            }
            ConsumerEvent::Started { task, job } => {
                // Taken out before calling the worker: the lock is not held
                // while application code runs.
                let worker = lock(&reserved).as_mut().and_then(|m| m.remove(&task));
                match worker {
                    Some(worker) => {
                        tracing::debug!(task = task.0, worker = worker.id(), "job started");
                        let done = JobDone {
                            task,
                            outbox: outbox.clone(),
                            worker: Some(worker.clone()),
                        };
                        let progress = JobProgress {
                            task,
                            outbox: outbox.clone(),
                        };
                        worker.work(job, done, progress);
                    }
                    // Not reachable: a claim follows an accept, which
                    // reserves first. Finish the job rather than strand it.
                    None => {
                        let _ = outbox.try_send(Outbox::JobDone {
                            task,
                            result: Err(Value::from("no worker was reserved for the job")),
                        });
                    }
                }
            }
            ConsumerEvent::Lost { task } => {
                let worker = lock(&reserved).as_mut().and_then(|m| m.remove(&task));
                if let Some(worker) = worker {
                    tracing::debug!(task = task.0, worker = worker.id(), "claim lost");
                    worker.release();
                }
            }
        }
    }
    // Removed or closed: workers reserved for jobs that will not start now
    // are free again.
    let left = lock(&reserved).take();
    for worker in left.into_iter().flat_map(HashMap::into_values) {
        worker.release();
    }
}

/// The answer to one job query (JS `onJobQuery`'s `callback(err, worker)`):
/// use exactly one of its methods, now or later, from any thread. Dropped
/// unanswered, it answers [`NO_WORKER_AVAILABLE`] (the job is offered
/// again). See [`Worker`] for an example.
pub struct JobQueryCallback {
    task: TaskId,
    outbox: Sender<Outbox>,
    reserved: Reserved,
    answered: bool,
}

impl JobQueryCallback {
    /// Claims the job for `worker`: once the claim succeeds the consumer
    /// calls [`Worker::work`]; if it fails (another consumer won, or the
    /// job is gone) it calls [`Worker::release`].
    pub fn accept(mut self, worker: Arc<dyn Worker>) {
        self.answered = true;
        {
            let mut reserved = lock(&self.reserved);
            match reserved.as_mut() {
                Some(map) => {
                    map.insert(self.task, worker);
                }
                None => {
                    // The consumer is gone: nothing will start.
                    drop(reserved);
                    worker.release();
                    return;
                }
            }
        }
        self.answer(JobAnswer::Accept);
    }

    /// [`JOB_NOT_SUPPORTED`]: this consumer ignores the job for good.
    pub fn not_supported(mut self) {
        self.answered = true;
        self.answer(JobAnswer::NotSupported);
    }

    /// [`NO_WORKER_AVAILABLE`]: ask again in about 100 ms, until a worker is
    /// free or another consumer claims the job.
    pub fn no_worker_available(mut self) {
        self.answered = true;
        self.answer(JobAnswer::NoWorkerAvailable);
    }

    /// Answers with a JS error code: [`NO_WORKER_AVAILABLE`] (200) asks
    /// again later; [`JOB_NOT_SUPPORTED`] (100), and any other code, ignores
    /// the job.
    pub fn reject(self, code: u16) {
        match code {
            NO_WORKER_AVAILABLE => self.no_worker_available(),
            JOB_NOT_SUPPORTED => self.not_supported(),
            _ => self.not_supported(),
        }
    }

    /// The JS form `callback(err, worker)`: `Ok(worker)` accepts,
    /// `Err(code)` [rejects](JobQueryCallback::reject).
    pub fn answer_with(self, answer: Result<Arc<dyn Worker>, u16>) {
        match answer {
            Ok(worker) => self.accept(worker),
            Err(code) => self.reject(code),
        }
    }

    fn answer(&self, answer: JobAnswer) {
        let _ = self.outbox.try_send(Outbox::Answer {
            task: self.task,
            answer,
        });
    }
}

impl Drop for JobQueryCallback {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(JobAnswer::NoWorkerAvailable);
        }
    }
}

impl std::fmt::Debug for JobQueryCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueryCallback")
            .field("answered", &self.answered)
            .finish()
    }
}

/// Finishes one started job, once (JS `work`'s `done(err, data)`); the
/// worker is then released. Sent without waiting (over REST while the
/// WebSocket is down). Dropped unfinished, it finishes the job with an
/// error, so the producer learns at once instead of timing out.
/// See [`Worker`] for an example.
pub struct JobDone {
    task: TaskId,
    outbox: Sender<Outbox>,
    /// Present until the job is finished.
    worker: Option<Arc<dyn Worker>>,
}

impl JobDone {
    /// Finishes with `Ok` as the job's `data` or `Err` as its `err`. A value
    /// that cannot be serialized finishes the job with an error saying so
    /// and is returned as [`MessagingError::Serialize`].
    pub fn send<T: Serialize, E: Serialize>(
        self,
        result: Result<T, E>,
    ) -> Result<(), MessagingError> {
        let (wire, error) = encode_result(result);
        self.finish(wire)?;
        error.map_or(Ok(()), Err)
    }

    /// Finishes with `data`.
    pub fn ok<T: Serialize + ?Sized>(self, data: &T) -> Result<(), MessagingError> {
        match encode(data) {
            Ok(data) => self.finish(Ok(data)),
            Err(e) => {
                self.finish(Err(Value::from(format!(
                    "the result could not be serialized: {e}"
                ))))?;
                Err(e)
            }
        }
    }

    /// Finishes with the error `err`.
    pub fn err<E: Serialize + ?Sized>(self, err: &E) -> Result<(), MessagingError> {
        match encode(err) {
            Ok(err) => self.finish(Err(err)),
            Err(e) => {
                self.finish(Err(Value::from(format!(
                    "the error could not be serialized: {e}"
                ))))?;
                Err(e)
            }
        }
    }

    fn finish(mut self, result: Result<Value, Value>) -> Result<(), MessagingError> {
        self.finish_mut(result)
    }

    fn finish_mut(&mut self, result: Result<Value, Value>) -> Result<(), MessagingError> {
        let Some(worker) = self.worker.take() else {
            return Ok(());
        };
        let sent = self
            .outbox
            .try_send(Outbox::JobDone {
                task: self.task,
                result,
            })
            .map_err(|_| MessagingError::Closed);
        // As in JS: the done status is on its way, then the worker is free.
        worker.release();
        sent
    }
}

impl Drop for JobDone {
    fn drop(&mut self) {
        if self.worker.is_some() {
            let _ = self.finish_mut(Err(Value::from(
                "the worker dropped the job without finishing it",
            )));
        }
    }
}

impl std::fmt::Debug for JobDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDone")
            .field("finished", &self.worker.is_none())
            .finish()
    }
}

/// Reports progress of one started job (JS `work`'s `progress(data)`), any
/// number of times before it is done; clonable. Each report is a status
/// write the producer sees (and restarts its progress timer).
#[derive(Clone)]
pub struct JobProgress {
    task: TaskId,
    outbox: Sender<Outbox>,
}

impl JobProgress {
    /// Reports `data` as the job's progress. Fails with
    /// [`MessagingError::Serialize`], or [`MessagingError::Closed`] when the
    /// client is closed; progress after `done` is ignored.
    pub fn send<P: Serialize + ?Sized>(&self, data: &P) -> Result<(), MessagingError> {
        let data = encode(data)?;
        self.outbox
            .try_send(Outbox::JobProgress {
                task: self.task,
                data,
            })
            .map_err(|_| MessagingError::Closed)
    }
}

impl std::fmt::Debug for JobProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobProgress")
    }
}

type SlotWork =
    Arc<dyn Fn(Value, JobProgress) -> BoxFuture<'static, Result<Value, Value>> + Send + Sync>;

/// The one worker behind [`CompetingConsumer::serve`]: `free` slots, each
/// job a task.
struct Slots {
    free: AtomicUsize,
    work: SlotWork,
    runtime: Arc<dyn Runtime>,
}

impl Slots {
    /// Reserves a slot if one is free.
    fn take(&self) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Worker for Slots {
    fn id(&self) -> &str {
        "serve"
    }

    fn available(&self) -> bool {
        self.free.load(Ordering::Acquire) > 0
    }

    fn work(&self, job: Value, done: JobDone, progress: JobProgress) {
        let result = (self.work)(job, progress);
        let task: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            // `send` releases the slot.
            let _ = done.finish(result.await);
        });
        self.runtime.spawn(task);
    }

    fn release(&self) {
        self.free.fetch_add(1, Ordering::AcqRel);
    }
}
