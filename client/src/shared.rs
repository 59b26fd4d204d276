//! What the handles and the driver task share: the command type, and the
//! little state that handles read without asking the driver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use std::time::Duration;

use async_channel::Sender;
use cachearoo_core::{
    ConsumerId, IncomingId, JobAnswer, ListenerId, MessagingError as CoreMessagingError, OpError,
    OpOptions, Operation, ProducerId, ReplierId, Reply, RequestorId, SendError, TaskId,
};
use futures_util::task::AtomicWaker;
use serde_json::Value;

use crate::events::{BinaryEvent, ChangeEvent, ConnectionEvent, DisconnectReason};
use crate::queue::LagSender;

/// A callback for change events.
pub(crate) type ChangeCallback = Box<dyn FnMut(&ChangeEvent) + Send>;
/// A callback taking a string (server id, pong time).
pub(crate) type TextCallback = Box<dyn FnMut(&str) + Send>;
/// A callback for disconnects.
pub(crate) type DisconnectCallback = Box<dyn FnMut(DisconnectReason) + Send>;

/// Where the events of one listener go.
pub(crate) enum ListenerSink {
    /// A [`Listener`](crate::Listener) stream.
    Changes(LagSender<ChangeEvent>),
    /// A [`BinaryListener`](crate::BinaryListener) stream.
    Binary(LagSender<BinaryEvent>),
    /// A callback run on the driver task.
    Callback(ChangeCallback),
}

/// A request from a handle to the driver task. Replies travel on
/// one-shot (capacity 1) channels; a dropped reply sender means the driver
/// ended.
pub(crate) enum Command {
    Submit {
        op: Operation,
        options: OpOptions,
        reply: Sender<Result<Reply, OpError>>,
    },
    AddListener {
        bucket: String,
        key: String,
        send_values: bool,
        sink: ListenerSink,
        reply: Sender<ListenerId>,
    },
    RemoveListener {
        id: ListenerId,
        reply: Sender<bool>,
    },
    Signal {
        bucket: String,
        key: String,
        value: Option<Value>,
        reply: Sender<Result<(), SendError>>,
    },
    Binary {
        kind: u8,
        bucket: String,
        key: String,
        payload: Vec<u8>,
        reply: Sender<Result<(), SendError>>,
    },
    Ping {
        reply: Sender<Result<(), SendError>>,
    },
    OnConnect(TextCallback),
    OnDisconnect(DisconnectCallback),
    OnPong(TextCallback),
    Subscribe(LagSender<ConnectionEvent>),
    Close,
    // ----- messaging (see `crate::messaging`) -----
    CreateRequestor {
        channel: String,
        timeout: Duration,
        progress_timeout: Duration,
        reply: Sender<RequestorId>,
    },
    Request {
        requestor: RequestorId,
        message: Value,
        sink: CallSink,
    },
    CreateReplier {
        channel: String,
        sink: ReplierSink,
        reply: Sender<ReplierId>,
    },
    CreateProducer {
        channel: String,
        timeout: Duration,
        progress_timeout: Duration,
        reply: Sender<ProducerId>,
    },
    AddJob {
        producer: ProducerId,
        job: Value,
        sink: CallSink,
    },
    CreateConsumer {
        channel: String,
        consumer_id: Option<String>,
        sink: ConsumerSink,
        reply: Sender<ConsumerId>,
    },
}

/// Where the outcome of one request or job goes.
pub(crate) struct CallSink {
    /// The final result (capacity 1, sent once).
    pub(crate) done: Sender<Result<Value, CoreMessagingError>>,
    /// Progress values, when the caller wants them.
    pub(crate) progress: Option<LagSender<Value>>,
}

/// What happens to a request that arrives while a replier's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Answer it at once with the error [`REPLIER_OVERLOADED`]
    /// (`{"err":"replier overloaded","data":null}` on the wire), so that its
    /// requestor fails fast instead of waiting for its timeout.
    ///
    /// [`REPLIER_OVERLOADED`]: crate::REPLIER_OVERLOADED
    #[default]
    ErrorReply,
    /// Leave it unanswered (its requestor times out unless another replier
    /// on the channel answers). Use this when several repliers serve one
    /// channel redundantly: every replier sees every request and the first
    /// reply wins, so an overloaded replier's error must not beat another
    /// replier's answer.
    Ignore,
}

/// The driver's end of a replier: incoming requests, bounded.
pub(crate) struct ReplierSink {
    pub(crate) tx: Sender<(IncomingId, Value)>,
    pub(crate) overflow: Overflow,
}

/// What a consumer's application side is told.
pub(crate) enum ConsumerEvent {
    Query { task: TaskId, job: Value },
    Started { task: TaskId, job: Value },
    Lost { task: TaskId },
}

/// The driver's end of a consumer. The channel is unbounded, but queries
/// (the only events not caused by the application's own answers) are
/// counted against `capacity`: beyond it the driver answers
/// "no worker available" itself and the core asks again later.
pub(crate) struct ConsumerSink {
    pub(crate) tx: Sender<ConsumerEvent>,
    pub(crate) capacity: usize,
}

/// A messaging endpoint, to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Requestor(RequestorId),
    Replier(ReplierId),
    Producer(ProducerId),
    Consumer(ConsumerId),
}

/// Fire-and-forget messages from handles to the driver, on an unbounded
/// channel so that they can be sent from synchronous code (handlers,
/// `Drop`). Each one answers something the driver handed out (an incoming
/// request, a job query, a started job) or removes an endpoint, so their
/// number follows what the application does, not what the network sends.
/// One channel keeps them in the order they were made (a progress before
/// its reply, a reply before its replier's removal).
pub(crate) enum Outbox {
    Reply {
        incoming: IncomingId,
        result: Result<Value, Value>,
    },
    ReplyProgress {
        incoming: IncomingId,
        data: Value,
    },
    ForgetIncoming(IncomingId),
    Answer {
        task: TaskId,
        answer: JobAnswer,
    },
    JobProgress {
        task: TaskId,
        data: Value,
    },
    JobDone {
        task: TaskId,
        result: Result<Value, Value>,
    },
    Remove(Endpoint),
}

/// State shared by the handles, the listener streams and the driver.
#[derive(Default)]
pub(crate) struct Shared {
    connected: AtomicBool,
    server_id: Mutex<Option<String>>,
    /// Listeners whose stream was dropped, for the driver to unregister.
    dropped_listeners: Mutex<Vec<ListenerId>>,
    /// Wakes the driver when a listener stream is dropped.
    pub(crate) driver_waker: AtomicWaker,
}

/// Locks a mutex, ignoring poisoning: the data guarded here stays
/// consistent even if a holder panicked (plain pushes and replacements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn server_id(&self) -> Option<String> {
        lock(&self.server_id).clone()
    }

    pub(crate) fn set_connected(&self, server_id: Option<String>) {
        self.connected.store(server_id.is_some(), Ordering::Release);
        *lock(&self.server_id) = server_id;
    }

    pub(crate) fn listener_dropped(&self, id: ListenerId) {
        lock(&self.dropped_listeners).push(id);
        self.driver_waker.wake();
    }

    pub(crate) fn take_dropped_listeners(&self) -> Vec<ListenerId> {
        std::mem::take(&mut *lock(&self.dropped_listeners))
    }
}
