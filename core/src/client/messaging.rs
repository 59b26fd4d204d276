//! The messaging patterns of PROTOCOL.md §7, as state machines inside the
//! [`Client`]: request–reply and competing consumers.
//!
//! They are conventions between clients on top of signal events and the
//! datastore; the server knows nothing of them. Each endpoint (requestor,
//! replier, producer, consumer) registers its own listeners on the client;
//! events for them are consumed here and surface as
//! [`Event::Messaging`](super::Event::Messaging), never as plain change
//! events. Timers share the client's [`Client::poll_timeout`]; randomness
//! (uuids, the consumers' 0–20 ms spread) comes from the client's seed.
//!
//! Limitation shared with the JS and C++ clients: the server never echoes a
//! client's own events back to it, so a replier (or consumer) on the *same*
//! client as the requestor (or producer) does not see its requests (jobs).
//! Use one client per role when both live in one process.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;
use serde_json::{json, Value};

use super::listeners::Owner;
use super::{Client, Event, SendError};
use crate::op::{OpError, OpId, OpOptions, Operation, Reply};
use crate::time::Instant;
use crate::wire::ChangeEvent;

/// `onJobQuery` answer: this job is not for us; do not ask again.
pub const JOB_NOT_SUPPORTED: u16 = 100;
/// `onJobQuery` answer: no worker is free now; ask again in about 100 ms.
pub const NO_WORKER_AVAILABLE: u16 = 200;

/// How often a consumer asks again while no worker is free.
pub const REQUERY_INTERVAL: Duration = Duration::from_millis(100);
/// Upper bound of the random delay before a consumer first asks about a job.
pub const MAX_QUERY_SPREAD_MS: u64 = 20;
/// How many request keys a replier remembers to tell replies from requests.
pub const REPLIER_MEMORY: usize = 16 * 1024;

/// Bucket of request–reply requests and replies on `channel`.
pub fn reqrep_bucket(channel: &str) -> String {
    format!("#reqrep/{channel}")
}
/// Bucket of request–reply progress on `channel`.
pub fn reqrep_progress_bucket(channel: &str) -> String {
    format!("#reqrep-progress/{channel}")
}
/// Bucket of competing-consumer jobs on `channel`.
pub fn jobs_bucket(channel: &str) -> String {
    format!("messaging.compcon.{channel}.jobs")
}
/// Bucket of competing-consumer job status on `channel`.
pub fn status_bucket(channel: &str) -> String {
    format!("messaging.compcon.{channel}.status")
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);
    };
}
id_type!(
    /// A requestor endpoint.
    RequestorId
);
id_type!(
    /// A replier endpoint.
    ReplierId
);
id_type!(
    /// A producer endpoint.
    ProducerId
);
id_type!(
    /// A competing-consumer endpoint.
    ConsumerId
);
id_type!(
    /// One request of a requestor.
    RequestId
);
id_type!(
    /// One incoming request handed to a replier's application.
    IncomingId
);
id_type!(
    /// One job of a producer.
    JobId
);
id_type!(
    /// One job as a consumer sees it: queried, claimed, worked, done.
    TaskId
);

/// A messaging endpoint of this client (owner of internal listeners).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    Requestor(RequestorId),
    Replier(ReplierId),
    Producer(ProducerId),
    Consumer(ConsumerId),
}

/// What an internal datastore operation was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InternalOp {
    /// The producer's write of a job.
    JobWrite(JobId),
    /// A consumer's claim (failIfExists status write).
    Claim(TaskId),
    /// A consumer's read of the job right after its claim succeeded.
    Verify(TaskId),
    /// The producer's removal of a finished job; the status key goes next.
    JobCleanup(u64),
    /// Housekeeping whose result changes nothing (removes, status updates).
    Housekeeping,
}

/// Why a request or job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessagingError {
    /// The other side answered with an error (`err` of the reply or status).
    #[error("remote error: {0}")]
    Remote(Value),
    /// No reply / done status within the timeout.
    #[error("timed out")]
    Timeout,
    /// Nothing (reply or progress) within the progress timeout.
    #[error("progress timed out")]
    ProgressTimeout,
    /// The request could not be sent: no WebSocket (signals have no REST form).
    #[error("not connected")]
    NotConnected,
    /// The job could not be written.
    #[error("job write failed: {0}")]
    Op(OpError),
    /// The endpoint was removed or the client closed.
    #[error("closed")]
    Closed,
}

/// The application's answer to [`MessagingEvent::JobQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAnswer {
    /// A worker is reserved for this job: claim it.
    Accept,
    /// [`JOB_NOT_SUPPORTED`]: ignore this job.
    NotSupported,
    /// [`NO_WORKER_AVAILABLE`]: ask again in about 100 ms.
    NoWorkerAvailable,
}

impl JobAnswer {
    /// The answer for a JS-style numeric code (`100`, `200`); `None` otherwise.
    pub fn from_code(code: u16) -> Option<JobAnswer> {
        match code {
            JOB_NOT_SUPPORTED => Some(JobAnswer::NotSupported),
            NO_WORKER_AVAILABLE => Some(JobAnswer::NoWorkerAvailable),
            _ => None,
        }
    }
}

/// Messaging events, inside [`Event::Messaging`].
#[derive(Debug, Clone, PartialEq)]
pub enum MessagingEvent {
    /// Progress of one of our requests.
    RequestProgress {
        /// The request.
        request: RequestId,
        /// The replier's progress `data`.
        data: Value,
    },
    /// One of our requests ended (exactly once).
    RequestDone {
        /// The request.
        request: RequestId,
        /// The reply's `data`, or why not.
        result: Result<Value, MessagingError>,
    },
    /// A new request for one of our repliers: answer with [`Client::reply`]
    /// (once) and [`Client::send_progress`] (any number of times).
    IncomingRequest {
        /// The replier.
        replier: ReplierId,
        /// Handle for the answer.
        incoming: IncomingId,
        /// The request's message.
        message: Value,
    },
    /// Progress of one of our jobs.
    JobProgress {
        /// The job.
        job: JobId,
        /// The worker's progress.
        data: Value,
    },
    /// One of our jobs ended (exactly once).
    JobDone {
        /// The job.
        job: JobId,
        /// The worker's `data`, or why not.
        result: Result<Value, MessagingError>,
    },
    /// A consumer asks the application for a worker: answer with
    /// [`Client::answer_job_query`].
    JobQuery {
        /// The consumer.
        consumer: ConsumerId,
        /// The job as this consumer tracks it.
        task: TaskId,
        /// The job.
        job: Value,
    },
    /// The claim succeeded: work the job, then [`Client::job_done`].
    JobStarted {
        /// The consumer.
        consumer: ConsumerId,
        /// The task.
        task: TaskId,
        /// The job.
        job: Value,
    },
    /// The claim was lost (another consumer won) or the job vanished after
    /// the application accepted it: release the reserved worker.
    JobLost {
        /// The consumer.
        consumer: ConsumerId,
        /// The task.
        task: TaskId,
    },
}

/// Something that ends by a timeout or a progress timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tracked {
    Request(RequestId),
    Job(JobId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The overall timeout of a request or job.
    Overall(Tracked),
    /// Its progress timeout (restarted by every sign of progress).
    Progress(Tracked),
    /// A consumer's (next) query about a job.
    Query(TaskId),
}

/// The two deadlines of a request or job, kept in step with the timer table.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    overall: Instant,
    progress: Instant,
}

impl Deadlines {
    fn arm(
        timers: &mut BTreeSet<(Instant, Timer)>,
        what: Tracked,
        now: Instant,
        timeout: Duration,
        progress_timeout: Duration,
    ) -> Deadlines {
        let d = Deadlines {
            overall: now + timeout,
            progress: now + progress_timeout,
        };
        timers.insert((d.overall, Timer::Overall(what)));
        timers.insert((d.progress, Timer::Progress(what)));
        d
    }

    fn disarm(&self, timers: &mut BTreeSet<(Instant, Timer)>, what: Tracked) {
        timers.remove(&(self.overall, Timer::Overall(what)));
        timers.remove(&(self.progress, Timer::Progress(what)));
    }

    /// Progress arrived: the progress timeout starts again.
    fn restart_progress(
        &mut self,
        timers: &mut BTreeSet<(Instant, Timer)>,
        what: Tracked,
        now: Instant,
        progress_timeout: Duration,
    ) {
        timers.remove(&(self.progress, Timer::Progress(what)));
        self.progress = now + progress_timeout;
        timers.insert((self.progress, Timer::Progress(what)));
    }
}

#[derive(Debug)]
struct Requestor {
    channel: String,
    timeout: Duration,
    progress_timeout: Duration,
    listeners: [super::ListenerId; 2],
}

#[derive(Debug)]
struct PendingRequest {
    requestor: RequestorId,
    key: String,
    deadlines: Deadlines,
}

#[derive(Debug)]
struct Replier {
    channel: String,
    listener: super::ListenerId,
    /// Keys seen on the channel (requests, and so their replies), oldest first.
    seen: VecDeque<String>,
    seen_set: BTreeSet<String>,
}

#[derive(Debug)]
struct Incoming {
    replier: ReplierId,
    key: String,
}

#[derive(Debug)]
struct Producer {
    channel: String,
    timeout: Duration,
    progress_timeout: Duration,
    listener: super::ListenerId,
}

#[derive(Debug)]
struct PendingJob {
    producer: ProducerId,
    key: String,
    deadlines: Deadlines,
    claimed: bool,
}

#[derive(Debug)]
struct Consumer {
    channel: String,
    consumer_id: String,
    listener: super::ListenerId,
    /// Job keys this consumer tracks or has finished with (never asked twice).
    known: BTreeMap<String, TaskId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    /// Waiting until the timer to ask the application.
    Waiting,
    /// Asked; no answer yet.
    Asked,
    /// Claim write in flight.
    Claiming,
    /// Claimed; reading the job to make sure the claim is not a late one.
    Verifying,
    /// Claimed: the application works it.
    Working,
}

#[derive(Debug)]
struct Task {
    consumer: ConsumerId,
    key: String,
    job: Value,
    state: TaskState,
    /// The job was deleted (claimed elsewhere) while we waited.
    gone: bool,
    progress: Value,
}

/// All messaging state of one client.
#[derive(Debug, Default)]
pub(crate) struct Messaging {
    next_id: u64,
    requestors: BTreeMap<RequestorId, Requestor>,
    requests: BTreeMap<RequestId, PendingRequest>,
    /// `(requestor, uuid)` → request, to route replies.
    request_keys: BTreeMap<(RequestorId, String), RequestId>,
    repliers: BTreeMap<ReplierId, Replier>,
    incoming: BTreeMap<IncomingId, Incoming>,
    producers: BTreeMap<ProducerId, Producer>,
    jobs: BTreeMap<JobId, PendingJob>,
    job_keys: BTreeMap<(ProducerId, String), JobId>,
    consumers: BTreeMap<ConsumerId, Consumer>,
    tasks: BTreeMap<TaskId, Task>,
    /// Finished jobs whose status key is removed once the job is: `(channel, key)`.
    cleanups: BTreeMap<u64, (String, String)>,
    timers: BTreeSet<(Instant, Timer)>,
}

impl Messaging {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Whether nothing is pending (no request, job or task in flight).
    pub(crate) fn is_idle(&self) -> bool {
        self.requests.is_empty()
            && self.jobs.is_empty()
            && self.tasks.is_empty()
            && self.incoming.is_empty()
            && self.cleanups.is_empty()
    }
}

fn status_object(consumer_id: &str, done: bool, err: Value, data: Value, progress: Value) -> Value {
    json!({"claim": {"id": consumer_id}, "done": done, "err": err, "data": data, "progress": progress})
}

impl Client {
    fn messaging_event(&mut self, e: MessagingEvent) {
        self.events.push_back(Event::Messaging(e));
    }

    fn internal_op(
        &mut self,
        now: Instant,
        bucket: String,
        op: Operation,
        purpose: InternalOp,
    ) -> OpId {
        self.submit_owned(
            now,
            op,
            OpOptions {
                bucket: Some(bucket),
                force_http: false,
            },
            super::OpOwner::Internal(purpose),
        )
    }

    // ----- request–reply -------------------------------------------------

    /// Creates a requestor on `channel`: it listens for replies and progress
    /// at once (before any request is sent, so no early reply is lost).
    pub fn create_requestor(
        &mut self,
        _now: Instant,
        channel: &str,
        timeout: Duration,
        progress_timeout: Duration,
    ) -> RequestorId {
        let id = RequestorId(self.messaging.next());
        let owner = Owner::Messaging(Endpoint::Requestor(id));
        let a = self
            .listeners
            .add(reqrep_bucket(channel), String::from("*"), true, owner);
        let b = self.listeners.add(
            reqrep_progress_bucket(channel),
            String::from("*"),
            true,
            owner,
        );
        self.messaging.requestors.insert(
            id,
            Requestor {
                channel: String::from(channel),
                timeout,
                progress_timeout,
                listeners: [a, b],
            },
        );
        self.sync_registration();
        id
    }

    /// Sends a request; it ends with one [`MessagingEvent::RequestDone`].
    pub fn request(&mut self, now: Instant, requestor: RequestorId, message: Value) -> RequestId {
        let id = RequestId(self.messaging.next());
        let Some(r) = self.messaging.requestors.get(&requestor) else {
            self.messaging_event(MessagingEvent::RequestDone {
                request: id,
                result: Err(MessagingError::Closed),
            });
            return id;
        };
        let (channel, timeout, progress_timeout) =
            (r.channel.clone(), r.timeout, r.progress_timeout);
        let key = self.rng.uuid_v4();
        match self.signal_event(now, &reqrep_bucket(&channel), &key, Some(message)) {
            Ok(()) => {
                let m = &mut self.messaging;
                let what = Tracked::Request(id);
                let deadlines = Deadlines::arm(&mut m.timers, what, now, timeout, progress_timeout);
                m.request_keys.insert((requestor, key.clone()), id);
                m.requests.insert(
                    id,
                    PendingRequest {
                        requestor,
                        key,
                        deadlines,
                    },
                );
            }
            Err(e) => self.messaging_event(MessagingEvent::RequestDone {
                request: id,
                result: Err(match e {
                    SendError::Closed => MessagingError::Closed,
                    _ => MessagingError::NotConnected,
                }),
            }),
        }
        id
    }

    fn end_request(&mut self, id: RequestId, result: Result<Value, MessagingError>) {
        let m = &mut self.messaging;
        if let Some(p) = m.requests.remove(&id) {
            p.deadlines.disarm(&mut m.timers, Tracked::Request(id));
            m.request_keys.remove(&(p.requestor, p.key));
            self.messaging_event(MessagingEvent::RequestDone {
                request: id,
                result,
            });
        }
    }

    /// Creates a replier on `channel`.
    pub fn create_replier(&mut self, _now: Instant, channel: &str) -> ReplierId {
        let id = ReplierId(self.messaging.next());
        let listener = self.listeners.add(
            reqrep_bucket(channel),
            String::from("*"),
            true,
            Owner::Messaging(Endpoint::Replier(id)),
        );
        self.messaging.repliers.insert(
            id,
            Replier {
                channel: String::from(channel),
                listener,
                seen: VecDeque::new(),
                seen_set: BTreeSet::new(),
            },
        );
        self.sync_registration();
        id
    }

    fn incoming_target(&self, incoming: IncomingId) -> Result<(String, String), SendError> {
        let i = self
            .messaging
            .incoming
            .get(&incoming)
            .ok_or(SendError::Closed)?;
        let r = self
            .messaging
            .repliers
            .get(&i.replier)
            .ok_or(SendError::Closed)?;
        Ok((r.channel.clone(), i.key.clone()))
    }

    /// Answers an incoming request, once: `Ok(data)` or `Err(err)`.
    ///
    /// The request is answered (and forgotten) whatever happens: while the
    /// WebSocket is down the reply cannot travel (signals have no REST form),
    /// this returns [`SendError::NotConnected`] and the requestor times out.
    /// [`SendError::Closed`] means the request was already answered or its
    /// replier is gone.
    pub fn reply(
        &mut self,
        now: Instant,
        incoming: IncomingId,
        result: Result<Value, Value>,
    ) -> Result<(), SendError> {
        let (channel, key) = self.incoming_target(incoming)?;
        self.messaging.incoming.remove(&incoming);
        let body = match result {
            Ok(data) => json!({"err": null, "data": data}),
            Err(err) => json!({"err": err, "data": null}),
        };
        self.signal_event(now, &reqrep_bucket(&channel), &key, Some(body))
    }

    /// Sends progress for an incoming request (any number of times before the reply).
    pub fn send_progress(
        &mut self,
        now: Instant,
        incoming: IncomingId,
        data: Value,
    ) -> Result<(), SendError> {
        let (channel, key) = self.incoming_target(incoming)?;
        self.signal_event(
            now,
            &reqrep_progress_bucket(&channel),
            &key,
            Some(json!({ "data": data })),
        )
    }

    /// Forgets an incoming request without answering it (the application
    /// will never reply; its requestor times out as if no replier had seen
    /// it). Nothing is sent. `false` when it was not pending (already
    /// answered, or its replier is gone).
    ///
    /// Without this, a request the application drops unanswered would stay
    /// in the replier's table until the replier is removed.
    pub fn forget_incoming(&mut self, _now: Instant, incoming: IncomingId) -> bool {
        self.messaging.incoming.remove(&incoming).is_some()
    }

    // ----- competing consumers -------------------------------------------

    /// Creates a producer on `channel` (it follows job status at once).
    pub fn create_producer(
        &mut self,
        _now: Instant,
        channel: &str,
        timeout: Duration,
        progress_timeout: Duration,
    ) -> ProducerId {
        let id = ProducerId(self.messaging.next());
        let listener = self.listeners.add(
            status_bucket(channel),
            String::from("*"),
            true,
            Owner::Messaging(Endpoint::Producer(id)),
        );
        self.messaging.producers.insert(
            id,
            Producer {
                channel: String::from(channel),
                timeout,
                progress_timeout,
                listener,
            },
        );
        self.sync_registration();
        id
    }

    /// Writes a job; it ends with one [`MessagingEvent::JobDone`].
    pub fn add_job(&mut self, now: Instant, producer: ProducerId, job: Value) -> JobId {
        let id = JobId(self.messaging.next());
        let Some(p) = self.messaging.producers.get(&producer) else {
            self.messaging_event(MessagingEvent::JobDone {
                job: id,
                result: Err(MessagingError::Closed),
            });
            return id;
        };
        let (channel, timeout, progress_timeout) =
            (p.channel.clone(), p.timeout, p.progress_timeout);
        let key = self.rng.uuid_v4();
        let m = &mut self.messaging;
        let deadlines = Deadlines::arm(
            &mut m.timers,
            Tracked::Job(id),
            now,
            timeout,
            progress_timeout,
        );
        m.job_keys.insert((producer, key.clone()), id);
        m.jobs.insert(
            id,
            PendingJob {
                producer,
                key: key.clone(),
                deadlines,
                claimed: false,
            },
        );
        self.internal_op(
            now,
            jobs_bucket(&channel),
            Operation::Write {
                key,
                value: Some(job),
                fail_if_exists: false,
                expire_session: false,
            },
            InternalOp::JobWrite(id),
        );
        id
    }

    fn end_job(&mut self, now: Instant, id: JobId, result: Result<Value, MessagingError>) {
        let m = &mut self.messaging;
        let Some(j) = m.jobs.remove(&id) else { return };
        j.deadlines.disarm(&mut m.timers, Tracked::Job(id));
        m.job_keys.remove(&(j.producer, j.key.clone()));
        let channel = m.producers.get(&j.producer).map(|p| p.channel.clone());
        if let Some(channel) = channel {
            match &result {
                // Done: remove the job (its claimer normally has; if that
                // remove was lost, consumers still waiting would otherwise
                // keep it), then the status key, in that order, so that a
                // late claim always finds the job gone.
                Ok(_) | Err(MessagingError::Remote(_)) => {
                    let cleanup = self.messaging.next();
                    self.messaging
                        .cleanups
                        .insert(cleanup, (channel.clone(), j.key.clone()));
                    self.internal_op(
                        now,
                        jobs_bucket(&channel),
                        Operation::Remove { key: j.key },
                        InternalOp::JobCleanup(cleanup),
                    );
                }
                // Timed out: take back the job if nobody claimed it.
                Err(MessagingError::Timeout | MessagingError::ProgressTimeout) if !j.claimed => {
                    self.internal_op(
                        now,
                        jobs_bucket(&channel),
                        Operation::Remove { key: j.key },
                        InternalOp::Housekeeping,
                    );
                }
                _ => {}
            }
        }
        self.messaging_event(MessagingEvent::JobDone { job: id, result });
    }

    /// Creates a competing consumer on `channel` with this consumer id
    /// (a random uuid when `None`).
    pub fn create_consumer(
        &mut self,
        _now: Instant,
        channel: &str,
        consumer_id: Option<&str>,
    ) -> ConsumerId {
        let id = ConsumerId(self.messaging.next());
        let consumer_id = consumer_id
            .map(String::from)
            .unwrap_or_else(|| self.rng.uuid_v4());
        let listener = self.listeners.add(
            jobs_bucket(channel),
            String::from("*"),
            true,
            Owner::Messaging(Endpoint::Consumer(id)),
        );
        self.messaging.consumers.insert(
            id,
            Consumer {
                channel: String::from(channel),
                consumer_id,
                listener,
                known: BTreeMap::new(),
            },
        );
        self.sync_registration();
        id
    }

    /// The application's answer to a [`MessagingEvent::JobQuery`].
    pub fn answer_job_query(&mut self, now: Instant, task: TaskId, answer: JobAnswer) {
        let Some(t) = self.messaging.tasks.get_mut(&task) else {
            return;
        };
        if t.state != TaskState::Asked {
            return;
        }
        match answer {
            JobAnswer::Accept if t.gone => self.lose_task(task),
            JobAnswer::Accept => self.claim(now, task),
            JobAnswer::NotSupported => self.drop_task(task),
            JobAnswer::NoWorkerAvailable if t.gone => self.drop_task(task),
            JobAnswer::NoWorkerAvailable => {
                t.state = TaskState::Waiting;
                self.messaging
                    .timers
                    .insert((now + REQUERY_INTERVAL, Timer::Query(task)));
            }
        }
    }

    /// Writes the claim (a failIfExists status write) for an accepted task.
    fn claim(&mut self, now: Instant, task: TaskId) {
        let Some(t) = self.messaging.tasks.get_mut(&task) else {
            return;
        };
        t.state = TaskState::Claiming;
        let (consumer, key) = (t.consumer, t.key.clone());
        let Some(c) = self.messaging.consumers.get(&consumer) else {
            return;
        };
        let status = status_object(&c.consumer_id, false, Value::Null, Value::Null, Value::Null);
        let bucket = status_bucket(&c.channel);
        self.internal_op(
            now,
            bucket,
            Operation::Write {
                key,
                value: Some(status),
                fail_if_exists: true,
                expire_session: false,
            },
            InternalOp::Claim(task),
        );
    }

    /// Drops an accepted task and tells the application to release its worker.
    fn lose_task(&mut self, task: TaskId) {
        if let Some(t) = self.messaging.tasks.get(&task) {
            let consumer = t.consumer;
            self.drop_task(task);
            self.messaging_event(MessagingEvent::JobLost { consumer, task });
        }
    }

    fn working_task(&self, task: TaskId) -> Result<(&Task, &Consumer), SendError> {
        let t = self.messaging.tasks.get(&task).ok_or(SendError::Closed)?;
        let c = self
            .messaging
            .consumers
            .get(&t.consumer)
            .ok_or(SendError::Closed)?;
        if t.state == TaskState::Working {
            Ok((t, c))
        } else {
            Err(SendError::Closed)
        }
    }

    /// Reports progress of a started job (a status write; goes over REST
    /// while the WebSocket is down).
    pub fn job_progress(
        &mut self,
        now: Instant,
        task: TaskId,
        progress: Value,
    ) -> Result<(), SendError> {
        let (t, c) = self.working_task(task)?;
        let status = status_object(
            &c.consumer_id,
            false,
            Value::Null,
            Value::Null,
            progress.clone(),
        );
        let (bucket, key) = (status_bucket(&c.channel), t.key.clone());
        if let Some(t) = self.messaging.tasks.get_mut(&task) {
            t.progress = progress;
        }
        self.internal_op(
            now,
            bucket,
            Operation::Write {
                key,
                value: Some(status),
                fail_if_exists: false,
                expire_session: false,
            },
            InternalOp::Housekeeping,
        );
        Ok(())
    }

    /// Finishes a started job with its result; the application then
    /// releases its worker.
    pub fn job_done(
        &mut self,
        now: Instant,
        task: TaskId,
        result: Result<Value, Value>,
    ) -> Result<(), SendError> {
        let (t, c) = self.working_task(task)?;
        let (err, data) = match result {
            Ok(data) => (Value::Null, data),
            Err(err) => (err, Value::Null),
        };
        let status = status_object(&c.consumer_id, true, err, data, t.progress.clone());
        let (bucket, key) = (status_bucket(&c.channel), t.key.clone());
        self.drop_task(task);
        self.internal_op(
            now,
            bucket,
            Operation::Write {
                key,
                value: Some(status),
                fail_if_exists: false,
                expire_session: false,
            },
            InternalOp::Housekeeping,
        );
        Ok(())
    }

    /// Forgets a task; its key stays known so the job is never asked about again.
    fn drop_task(&mut self, task: TaskId) {
        // The key stays in the consumer's `known` map so a repeated event
        // does not ask again.
        if self.messaging.tasks.remove(&task).is_some() {
            self.messaging
                .timers
                .retain(|(_, timer)| *timer != Timer::Query(task));
        }
    }

    // ----- removal -------------------------------------------------------

    /// Removes a requestor: its pending requests end with
    /// [`MessagingError::Closed`] and its listeners go.
    pub fn remove_requestor(&mut self, _now: Instant, id: RequestorId) {
        if let Some(r) = self.messaging.requestors.remove(&id) {
            for l in r.listeners {
                self.listeners.remove(l);
            }
            let ids: Vec<RequestId> = self
                .messaging
                .requests
                .iter()
                .filter(|(_, p)| p.requestor == id)
                .map(|(i, _)| *i)
                .collect();
            for i in ids {
                self.end_request(i, Err(MessagingError::Closed));
            }
            self.sync_registration();
        }
    }

    /// Removes a replier; unanswered requests can no longer be answered.
    pub fn remove_replier(&mut self, _now: Instant, id: ReplierId) {
        if let Some(r) = self.messaging.repliers.remove(&id) {
            self.listeners.remove(r.listener);
            self.messaging.incoming.retain(|_, i| i.replier != id);
            self.sync_registration();
        }
    }

    /// Removes a producer: its pending jobs end with [`MessagingError::Closed`].
    pub fn remove_producer(&mut self, now: Instant, id: ProducerId) {
        let ids: Vec<JobId> = self
            .messaging
            .jobs
            .iter()
            .filter(|(_, j)| j.producer == id)
            .map(|(i, _)| *i)
            .collect();
        for i in ids {
            self.end_job(now, i, Err(MessagingError::Closed));
        }
        if let Some(p) = self.messaging.producers.remove(&id) {
            self.listeners.remove(p.listener);
            self.sync_registration();
        }
    }

    /// Removes a consumer; its tasks are forgotten (started ones can no
    /// longer report).
    pub fn remove_consumer(&mut self, _now: Instant, id: ConsumerId) {
        if let Some(c) = self.messaging.consumers.remove(&id) {
            self.listeners.remove(c.listener);
            let ids: Vec<TaskId> = self
                .messaging
                .tasks
                .iter()
                .filter(|(_, t)| t.consumer == id)
                .map(|(i, _)| *i)
                .collect();
            for t in ids {
                self.drop_task(t);
            }
            self.sync_registration();
        }
    }

    // ----- inputs from the client ----------------------------------------

    /// A change event for a messaging endpoint.
    pub(crate) fn messaging_on_event(
        &mut self,
        now: Instant,
        endpoint: Endpoint,
        event: &ChangeEvent,
    ) {
        match endpoint {
            Endpoint::Requestor(r) => self.requestor_on_event(now, r, event),
            Endpoint::Replier(r) => self.replier_on_event(r, event),
            Endpoint::Producer(p) => self.producer_on_event(now, p, event),
            Endpoint::Consumer(c) => self.consumer_on_event(now, c, event),
        }
    }

    fn requestor_on_event(&mut self, now: Instant, r: RequestorId, event: &ChangeEvent) {
        if event.is_deleted {
            return;
        }
        let Some(req) = self.messaging.requestors.get(&r) else {
            return;
        };
        let Some(&id) = self.messaging.request_keys.get(&(r, event.key.clone())) else {
            return;
        };
        let value = event.value.clone().unwrap_or(Value::Null);
        if event.bucket == reqrep_progress_bucket(&req.channel) {
            let progress_timeout = req.progress_timeout;
            let m = &mut self.messaging;
            if let Some(p) = m.requests.get_mut(&id) {
                let what = Tracked::Request(id);
                p.deadlines
                    .restart_progress(&mut m.timers, what, now, progress_timeout);
            }
            let data = value.get("data").cloned().unwrap_or(Value::Null);
            self.messaging_event(MessagingEvent::RequestProgress { request: id, data });
        } else {
            let err = value.get("err").cloned().unwrap_or(Value::Null);
            let result = if err.is_null() {
                Ok(value.get("data").cloned().unwrap_or(Value::Null))
            } else {
                Err(MessagingError::Remote(err))
            };
            self.end_request(id, result);
        }
    }

    fn replier_on_event(&mut self, r: ReplierId, event: &ChangeEvent) {
        if event.is_deleted {
            return;
        }
        let Some(rep) = self.messaging.repliers.get_mut(&r) else {
            return;
        };
        // A key already seen on the channel is a reply (ours or another
        // replier's), never a new request. A replier that was disconnected
        // when the request went out sees only the reply: a value shaped
        // exactly like a reply (`{"err":..,"data":..}`) is never a request
        // either (found by the simulation, seed 29).
        let reply_shaped = event
            .value
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|o| o.len() == 2 && o.contains_key("err") && o.contains_key("data"));
        let new_key = rep.seen_set.insert(event.key.clone());
        if new_key {
            rep.seen.push_back(event.key.clone());
            if rep.seen.len() > REPLIER_MEMORY {
                if let Some(old) = rep.seen.pop_front() {
                    rep.seen_set.remove(&old);
                }
            }
        }
        if !new_key || reply_shaped {
            return;
        }
        let incoming = IncomingId(self.messaging.next());
        self.messaging.incoming.insert(
            incoming,
            Incoming {
                replier: r,
                key: event.key.clone(),
            },
        );
        self.messaging_event(MessagingEvent::IncomingRequest {
            replier: r,
            incoming,
            message: event.value.clone().unwrap_or(Value::Null),
        });
    }

    fn producer_on_event(&mut self, now: Instant, p: ProducerId, event: &ChangeEvent) {
        if event.is_deleted {
            return;
        }
        let Some(prod) = self.messaging.producers.get(&p) else {
            return;
        };
        let progress_timeout = prod.progress_timeout;
        let Some(&id) = self.messaging.job_keys.get(&(p, event.key.clone())) else {
            return;
        };
        let status = event.value.clone().unwrap_or(Value::Null);
        let m = &mut self.messaging;
        if let Some(j) = m.jobs.get_mut(&id) {
            j.claimed |= status.get("claim").is_some_and(|c| !c.is_null());
            j.deadlines
                .restart_progress(&mut m.timers, Tracked::Job(id), now, progress_timeout);
        }
        if status.get("done").and_then(Value::as_bool) == Some(true) {
            let err = status.get("err").cloned().unwrap_or(Value::Null);
            let result = if err.is_null() {
                Ok(status.get("data").cloned().unwrap_or(Value::Null))
            } else {
                Err(MessagingError::Remote(err))
            };
            self.end_job(now, id, result);
        } else if let Some(progress) = status.get("progress").filter(|p| !p.is_null()) {
            let data = progress.clone();
            self.messaging_event(MessagingEvent::JobProgress { job: id, data });
        }
    }

    fn consumer_on_event(&mut self, now: Instant, c: ConsumerId, event: &ChangeEvent) {
        let Some(con) = self.messaging.consumers.get(&c) else {
            return;
        };
        let known = con.known.get(&event.key).copied();
        if event.is_deleted {
            // Claimed elsewhere (or taken back): stop asking about it.
            let state = known
                .and_then(|t| self.messaging.tasks.get(&t))
                .map(|t| t.state);
            match (known, state) {
                (Some(task), Some(TaskState::Waiting)) => self.drop_task(task),
                (Some(task), Some(TaskState::Asked)) => {
                    if let Some(t) = self.messaging.tasks.get_mut(&task) {
                        t.gone = true;
                    }
                }
                _ => {}
            }
            return;
        }
        if known.is_some() {
            return;
        }
        let task = TaskId(self.messaging.next());
        let m = &mut self.messaging;
        if let Some(con) = m.consumers.get_mut(&c) {
            con.known.insert(event.key.clone(), task);
            // Bound memory: forget one finished key when over the limit.
            if con.known.len() > REPLIER_MEMORY {
                let stale = con
                    .known
                    .iter()
                    .find(|(_, t)| !m.tasks.contains_key(t))
                    .map(|(k, _)| k.clone());
                if let Some(k) = stale {
                    con.known.remove(&k);
                }
            }
        }
        let spread = self.rng.below_inclusive(MAX_QUERY_SPREAD_MS);
        self.messaging.tasks.insert(
            task,
            Task {
                consumer: c,
                key: event.key.clone(),
                job: event.value.clone().unwrap_or(Value::Null),
                state: TaskState::Waiting,
                gone: false,
                progress: Value::Null,
            },
        );
        self.messaging
            .timers
            .insert((now + Duration::from_millis(spread), Timer::Query(task)));
    }

    /// An internal datastore operation finished.
    pub(crate) fn messaging_on_op(
        &mut self,
        now: Instant,
        purpose: InternalOp,
        result: Result<Reply, OpError>,
    ) {
        match purpose {
            InternalOp::JobWrite(job) => {
                if let Err(e) = result {
                    self.end_job(now, job, Err(MessagingError::Op(e)));
                }
            }
            InternalOp::Claim(task) => {
                let Some(t) = self.messaging.tasks.get_mut(&task) else {
                    return;
                };
                match result {
                    Ok(_) => {
                        // Read the job before working it: a claim can only
                        // succeed late if the job was already finished and
                        // removed (found by the simulation, seed 76 and 428).
                        t.state = TaskState::Verifying;
                        let key = t.key.clone();
                        let Some(c) = self.messaging.consumers.get(&t.consumer) else {
                            return;
                        };
                        let bucket = jobs_bucket(&c.channel);
                        self.internal_op(
                            now,
                            bucket,
                            Operation::Read { key },
                            InternalOp::Verify(task),
                        );
                    }
                    // Lost to another consumer (or could not claim): release.
                    Err(_) => self.lose_task(task),
                }
            }
            InternalOp::Verify(task) => {
                let Some(t) = self.messaging.tasks.get_mut(&task) else {
                    return;
                };
                let (consumer, key, job) = (t.consumer, t.key.clone(), t.job.clone());
                let Some(channel) = self
                    .messaging
                    .consumers
                    .get(&consumer)
                    .map(|c| c.channel.clone())
                else {
                    return;
                };
                match result {
                    Ok(_) => {
                        if let Some(t) = self.messaging.tasks.get_mut(&task) {
                            t.state = TaskState::Working;
                        }
                        self.internal_op(
                            now,
                            jobs_bucket(&channel),
                            Operation::Remove { key },
                            InternalOp::Housekeeping,
                        );
                        self.messaging_event(MessagingEvent::JobStarted {
                            consumer,
                            task,
                            job,
                        });
                    }
                    Err(OpError::NotFound) => {
                        // The job is gone: our claim came after another
                        // consumer finished it (the producer had removed its
                        // status key) or after the producer gave up. Take the
                        // claim back and do not work it.
                        self.internal_op(
                            now,
                            status_bucket(&channel),
                            Operation::Remove { key },
                            InternalOp::Housekeeping,
                        );
                        self.lose_task(task);
                    }
                    // Cannot tell: never risk working a job twice.
                    Err(_) => self.lose_task(task),
                }
            }
            InternalOp::JobCleanup(cleanup) => {
                let entry = self.messaging.cleanups.remove(&cleanup);
                // Only once the job is surely gone may its status key go: a
                // status key left behind is a little garbage; a job without
                // its status key could be claimed again.
                if let (Some((channel, key)), Ok(_)) = (entry, result) {
                    self.internal_op(
                        now,
                        status_bucket(&channel),
                        Operation::Remove { key },
                        InternalOp::Housekeeping,
                    );
                }
            }
            InternalOp::Housekeeping => {}
        }
    }

    /// Messaging timers due at `now`.
    pub(crate) fn messaging_on_timeout(&mut self, now: Instant) {
        while let Some(&(at, timer)) = self.messaging.timers.first() {
            if at > now {
                break;
            }
            self.messaging.timers.remove(&(at, timer));
            match timer {
                Timer::Overall(Tracked::Request(id)) => {
                    self.end_request(id, Err(MessagingError::Timeout))
                }
                Timer::Progress(Tracked::Request(id)) => {
                    self.end_request(id, Err(MessagingError::ProgressTimeout))
                }
                Timer::Overall(Tracked::Job(id)) => {
                    self.end_job(now, id, Err(MessagingError::Timeout))
                }
                Timer::Progress(Tracked::Job(id)) => {
                    self.end_job(now, id, Err(MessagingError::ProgressTimeout))
                }
                Timer::Query(task) => {
                    if let Some(t) = self.messaging.tasks.get_mut(&task) {
                        if t.state == TaskState::Waiting {
                            t.state = TaskState::Asked;
                            let (consumer, job) = (t.consumer, t.job.clone());
                            self.messaging_event(MessagingEvent::JobQuery {
                                consumer,
                                task,
                                job,
                            });
                        }
                    }
                }
            }
        }
    }

    /// `close()`: every pending request and job ends with `Closed`.
    pub(crate) fn messaging_on_close(&mut self, now: Instant) {
        let requests: Vec<RequestId> = self.messaging.requests.keys().copied().collect();
        for r in requests {
            self.end_request(r, Err(MessagingError::Closed));
        }
        let jobs: Vec<JobId> = self.messaging.jobs.keys().copied().collect();
        for j in jobs {
            self.end_job(now, j, Err(MessagingError::Closed));
        }
        self.messaging.tasks.clear();
        self.messaging.incoming.clear();
        self.messaging.cleanups.clear();
        self.messaging.timers.clear();
    }
}
