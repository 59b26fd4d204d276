//! The driver task: the one task per client that owns the sans-IO core,
//! the WebSocket, the HTTP requests in flight and the timer, and talks to
//! the handles over bounded channels.
//!
//! It is a hand-written future rather than an `async` loop with `select!`:
//! every source (commands, socket, HTTP, timer) is polled in one place, the
//! core is fed in a fixed order, and all sub-futures are owned by this one
//! task, so dropping it (or letting it finish) cancels everything: no task
//! can outlive the client.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_channel::{Receiver, Sender, TrySendError};
use async_tungstenite::tungstenite::Message;
use cachearoo_core::{
    Client, ConsumerId, Event, HttpRequest, HttpResponse, Instant, JobAnswer, JobId, ListenerId,
    MessagingError as CoreMessagingError, MessagingEvent, OpError, OpId, ReplierId, Reply,
    RequestId, SocketId, Transmit,
};
use futures_lite::Stream;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::FuturesUnordered;
use futures_util::Sink;
use serde_json::Value;

use crate::events::{BinaryEvent, ConnectionEvent};
use crate::messaging::REPLIER_OVERLOADED;
use crate::queue::LagSender;
use crate::runtime::{BoxFuture, Runtime};
use crate::shared::{
    CallSink, Command, ConsumerEvent, ConsumerSink, DisconnectCallback, Endpoint, ListenerSink,
    Outbox, Overflow, ReplierSink, Shared, TextCallback,
};
use crate::transport::{self, Tls, WsStream};

/// Items handled per source before the others get a turn.
const BATCH: usize = 64;
/// Rounds of work per poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 32;
/// Frames queued for the socket beyond which no new command is taken, so
/// that a slow socket pushes back on the handles instead of growing memory.
const MAX_OUTGOING: usize = 256;
/// REST requests performed at once (each on its own connection); more
/// wait in a queue so a burst of operations while disconnected cannot open
/// hundreds of connections.
const MAX_HTTP_IN_FLIGHT: usize = 32;
/// REST requests waiting beyond which no new command is taken.
const MAX_HTTP_QUEUED: usize = 256;
/// How long a closing WebSocket may take to send its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type HttpFuture = BoxFuture<
    'static,
    (
        OpId,
        Result<Result<HttpResponse, String>, futures_util::future::Aborted>,
    ),
>;

/// A request or a job in flight, whose outcome a caller awaits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CallId {
    Request(RequestId),
    Job(JobId),
}

/// A socket being closed: its close frame is flushed, then it is dropped.
struct Closing {
    ws: WsStream,
    until: std::time::Instant,
}

pub(crate) struct Driver {
    core: Client,
    epoch: std::time::Instant,
    runtime: Arc<dyn Runtime>,
    tls_options: crate::options::TlsOptions,
    tls: Option<Tls>,
    shared: Arc<Shared>,

    // Receivers are boxed because async-channel's receiver is `!Unpin`.
    commands: Pin<Box<Receiver<Command>>>,
    /// Fire-and-forget messaging answers and endpoint removals.
    outbox: Pin<Box<Receiver<Outbox>>>,
    /// Closed when the last `Cachearoo`/`Connection` handle is dropped.
    lifeline: Pin<Box<Receiver<()>>>,
    /// Dropped when the driver ends: `close()` waits for that.
    _done: Sender<()>,

    replies: HashMap<OpId, Sender<Result<Reply, OpError>>>,
    sinks: HashMap<ListenerId, ListenerSink>,
    on_connect: Vec<TextCallback>,
    on_disconnect: Vec<DisconnectCallback>,
    on_pong: Vec<TextCallback>,
    subscribers: Vec<LagSender<ConnectionEvent>>,
    calls: HashMap<CallId, CallSink>,
    repliers: HashMap<ReplierId, ReplierSink>,
    consumers: HashMap<ConsumerId, ConsumerSink>,

    connecting: Option<(SocketId, BoxFuture<'static, Result<WsStream, String>>)>,
    socket: Option<(SocketId, WsStream)>,
    outgoing: VecDeque<Message>,
    needs_flush: bool,
    closing: Vec<Closing>,
    /// Connection attempts since the last successful one (for logs).
    attempts: u32,

    http: FuturesUnordered<HttpFuture>,
    http_aborts: HashMap<OpId, AbortHandle>,
    http_queue: VecDeque<(OpId, HttpRequest)>,

    timer: Option<(Instant, BoxFuture<'static, ()>)>,
    /// Set once shutdown began; the grace timer for closing sockets.
    shutdown: Option<BoxFuture<'static, ()>>,
}

/// Everything `Driver::new` needs from `Cachearoo::new`.
pub(crate) struct DriverParts {
    pub(crate) core: Client,
    pub(crate) epoch: std::time::Instant,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) tls_options: crate::options::TlsOptions,
    pub(crate) shared: Arc<Shared>,
    pub(crate) commands: Receiver<Command>,
    pub(crate) outbox: Receiver<Outbox>,
    pub(crate) lifeline: Receiver<()>,
    pub(crate) done: Sender<()>,
}

impl Driver {
    pub(crate) fn new(parts: DriverParts) -> Driver {
        Driver {
            core: parts.core,
            epoch: parts.epoch,
            runtime: parts.runtime,
            tls_options: parts.tls_options,
            tls: None,
            shared: parts.shared,
            commands: Box::pin(parts.commands),
            outbox: Box::pin(parts.outbox),
            lifeline: Box::pin(parts.lifeline),
            _done: parts.done,
            replies: HashMap::new(),
            sinks: HashMap::new(),
            on_connect: Vec::new(),
            on_disconnect: Vec::new(),
            on_pong: Vec::new(),
            subscribers: Vec::new(),
            calls: HashMap::new(),
            repliers: HashMap::new(),
            consumers: HashMap::new(),
            connecting: None,
            socket: None,
            outgoing: VecDeque::new(),
            needs_flush: false,
            closing: Vec::new(),
            attempts: 0,
            http: FuturesUnordered::new(),
            http_aborts: HashMap::new(),
            http_queue: VecDeque::new(),
            timer: None,
            shutdown: None,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_since_epoch(self.epoch.elapsed())
    }

    /// TLS connector, built on first use (only `secure` clients need it).
    fn tls(&mut self) -> Tls {
        self.tls
            .get_or_insert_with(|| {
                self.tls_options
                    .build()
                    .map(futures_rustls::TlsConnector::from)
            })
            .clone()
    }

    // ----- inputs ----------------------------------------------------------

    /// All handles are gone: shut down.
    fn poll_lifeline(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if let Poll::Ready(None) = self.lifeline.as_mut().poll_next(cx) {
            tracing::debug!("last client handle dropped");
            self.begin_shutdown(now);
            return true;
        }
        false
    }

    fn poll_commands(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut busy = false;
        for _ in 0..BATCH {
            if self.outgoing.len() >= MAX_OUTGOING
                || self.http_queue.len() >= MAX_HTTP_QUEUED
                || self.shutdown.is_some()
            {
                break;
            }
            match self.commands.as_mut().poll_next(cx) {
                Poll::Ready(Some(command)) => {
                    busy = true;
                    self.handle_command(now, command);
                    // Drain outputs after each command so a submit whose
                    // reply the core produced at once finds its sender.
                    self.drain_outputs(now);
                }
                // Unreachable while `lifeline` lives (handles hold both).
                Poll::Ready(None) => {
                    self.begin_shutdown(now);
                    return true;
                }
                Poll::Pending => break,
            }
        }
        busy
    }

    /// Takes fire-and-forget messaging answers, under the same limits as
    /// commands (a full socket queue pushes back; the outbox waits).
    fn poll_outbox(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut busy = false;
        for _ in 0..BATCH {
            if self.outgoing.len() >= MAX_OUTGOING
                || self.http_queue.len() >= MAX_HTTP_QUEUED
                || self.shutdown.is_some()
            {
                break;
            }
            match self.outbox.as_mut().poll_next(cx) {
                Poll::Ready(Some(message)) => {
                    busy = true;
                    self.handle_outbox(now, message);
                    self.drain_outputs(now);
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        busy
    }

    fn handle_outbox(&mut self, now: Instant, message: Outbox) {
        // Send failures need no answer: the peer times out (documented on
        // the handles), and `Closed` means the thing answered is gone.
        let sent = match message {
            Outbox::Reply { incoming, result } => self.core.reply(now, incoming, result),
            Outbox::ReplyProgress { incoming, data } => {
                self.core.send_progress(now, incoming, data)
            }
            Outbox::ForgetIncoming(incoming) => {
                self.core.forget_incoming(now, incoming);
                Ok(())
            }
            Outbox::Answer { task, answer } => {
                self.core.answer_job_query(now, task, answer);
                Ok(())
            }
            Outbox::JobProgress { task, data } => self.core.job_progress(now, task, data),
            Outbox::JobDone { task, result } => self.core.job_done(now, task, result),
            Outbox::Remove(endpoint) => {
                match endpoint {
                    Endpoint::Requestor(id) => self.core.remove_requestor(now, id),
                    Endpoint::Replier(id) => {
                        self.repliers.remove(&id);
                        self.core.remove_replier(now, id);
                    }
                    Endpoint::Producer(id) => self.core.remove_producer(now, id),
                    Endpoint::Consumer(id) => {
                        self.consumers.remove(&id);
                        self.core.remove_consumer(now, id);
                    }
                }
                Ok(())
            }
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "messaging answer not sent");
        }
    }

    fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Submit { op, options, reply } => {
                let id = self.core.submit(now, op, options);
                self.replies.insert(id, reply);
            }
            Command::AddListener {
                bucket,
                key,
                send_values,
                sink,
                reply,
            } => {
                let id = self.core.add_listener(now, &bucket, &key, send_values);
                self.sinks.insert(id, sink);
                if reply.try_send(id).is_err() {
                    // The caller gave up waiting: nobody will ever see it.
                    self.sinks.remove(&id);
                    self.core.remove_listener(now, id);
                }
            }
            Command::RemoveListener { id, reply } => {
                self.sinks.remove(&id);
                let removed = self.core.remove_listener(now, id);
                let _ = reply.try_send(removed);
            }
            Command::Signal {
                bucket,
                key,
                value,
                reply,
            } => {
                let _ = reply.try_send(self.core.signal_event(now, &bucket, &key, value));
            }
            Command::Binary {
                kind,
                bucket,
                key,
                payload,
                reply,
            } => {
                let _ = reply.try_send(self.core.send_binary(now, kind, &bucket, &key, &payload));
            }
            Command::Ping { reply } => {
                let _ = reply.try_send(self.core.ping(now));
            }
            Command::OnConnect(mut f) => {
                // Fire at once when already connected, so registering right
                // after `new()` cannot miss the first connection.
                if let Some(id) = self.core.server_id() {
                    f(id);
                }
                self.on_connect.push(f);
            }
            Command::OnDisconnect(f) => self.on_disconnect.push(f),
            Command::OnPong(f) => self.on_pong.push(f),
            Command::Subscribe(tx) => {
                if let Some(id) = self.core.server_id() {
                    tx.send(ConnectionEvent::Connected {
                        server_id: id.to_owned(),
                    });
                }
                self.subscribers.push(tx);
            }
            Command::Close => {
                tracing::debug!("close requested");
                self.begin_shutdown(now);
            }
            Command::CreateRequestor {
                channel,
                timeout,
                progress_timeout,
                reply,
            } => {
                let id = self
                    .core
                    .create_requestor(now, &channel, timeout, progress_timeout);
                if reply.try_send(id).is_err() {
                    // The caller gave up waiting: nobody will ever use it.
                    self.core.remove_requestor(now, id);
                }
            }
            Command::Request {
                requestor,
                message,
                sink,
            } => {
                // The sink is in place before the outputs are drained, so
                // an immediate failure (not connected) finds it.
                let id = self.core.request(now, requestor, message);
                self.calls.insert(CallId::Request(id), sink);
            }
            Command::CreateReplier {
                channel,
                sink,
                reply,
            } => {
                let id = self.core.create_replier(now, &channel);
                self.repliers.insert(id, sink);
                if reply.try_send(id).is_err() {
                    self.repliers.remove(&id);
                    self.core.remove_replier(now, id);
                }
            }
            Command::CreateProducer {
                channel,
                timeout,
                progress_timeout,
                reply,
            } => {
                let id = self
                    .core
                    .create_producer(now, &channel, timeout, progress_timeout);
                if reply.try_send(id).is_err() {
                    self.core.remove_producer(now, id);
                }
            }
            Command::AddJob {
                producer,
                job,
                sink,
            } => {
                let id = self.core.add_job(now, producer, job);
                self.calls.insert(CallId::Job(id), sink);
            }
            Command::CreateConsumer {
                channel,
                consumer_id,
                sink,
                reply,
            } => {
                let id = self
                    .core
                    .create_consumer(now, &channel, consumer_id.as_deref());
                self.consumers.insert(id, sink);
                if reply.try_send(id).is_err() {
                    self.consumers.remove(&id);
                    self.core.remove_consumer(now, id);
                }
            }
        }
    }

    /// Unregisters listeners whose stream was dropped.
    fn remove_dropped_listeners(&mut self, now: Instant) -> bool {
        let dropped = self.shared.take_dropped_listeners();
        let busy = !dropped.is_empty();
        for id in dropped {
            self.sinks.remove(&id);
            self.core.remove_listener(now, id);
        }
        busy
    }

    fn poll_connecting(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some((socket, future)) = &mut self.connecting else {
            return false;
        };
        let socket = *socket;
        match future.as_mut().poll(cx) {
            Poll::Pending => false,
            Poll::Ready(result) => {
                self.connecting = None;
                match result {
                    Ok(ws) => {
                        tracing::debug!(socket = socket.0, "WebSocket upgraded, awaiting greeting");
                        self.outgoing.clear();
                        self.needs_flush = false;
                        self.socket = Some((socket, ws));
                        self.core.handle_socket_opened(now, socket);
                    }
                    Err(message) => {
                        tracing::warn!(socket = socket.0, error = %message, "connection attempt failed");
                        self.core.handle_socket_closed(now, socket);
                    }
                }
                true
            }
        }
    }

    fn poll_socket_read(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut busy = false;
        for _ in 0..BATCH {
            let Some((socket, ws)) = &mut self.socket else {
                break;
            };
            let socket = *socket;
            match Pin::new(ws).poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(message))) => {
                    busy = true;
                    match message {
                        Message::Text(text) => self.core.handle_text(now, socket, text.as_str()),
                        Message::Binary(bytes) => self.core.handle_binary(now, socket, &bytes),
                        // Control frames are answered by tungstenite itself;
                        // after a close frame the stream ends on its own.
                        Message::Ping(_)
                        | Message::Pong(_)
                        | Message::Close(_)
                        | Message::Frame(_) => {}
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(socket = socket.0, error = %e, "WebSocket read failed");
                    self.socket_lost(now, socket);
                    return true;
                }
                Poll::Ready(None) => {
                    tracing::debug!(socket = socket.0, "WebSocket closed by the server");
                    self.socket_lost(now, socket);
                    return true;
                }
            }
        }
        busy
    }

    fn poll_socket_write(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some((socket, ws)) = &mut self.socket else {
            return false;
        };
        let socket = *socket;
        let mut ws = Pin::new(ws);
        let mut failed = None;
        // Commands and the outbox are not polled while the queue is full;
        // once this write makes room they must be polled again in this
        // poll, since nothing else would wake the task for them.
        let was_full = self.outgoing.len() >= MAX_OUTGOING;
        while !self.outgoing.is_empty() {
            match ws.as_mut().poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                Poll::Ready(Ok(())) => {
                    let Some(message) = self.outgoing.pop_front() else {
                        break;
                    };
                    if let Err(e) = ws.as_mut().start_send(message) {
                        failed = Some(e);
                        break;
                    }
                    self.needs_flush = true;
                }
            }
        }
        if failed.is_none() && self.needs_flush {
            match ws.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => failed = Some(e),
                Poll::Pending => {}
            }
        }
        match failed {
            Some(e) => {
                tracing::debug!(socket = socket.0, error = %e, "WebSocket write failed");
                self.socket_lost(now, socket);
                true
            }
            None => was_full && self.outgoing.len() < MAX_OUTGOING,
        }
    }

    fn socket_lost(&mut self, now: Instant, socket: SocketId) {
        self.socket = None;
        self.outgoing.clear();
        self.needs_flush = false;
        self.core.handle_socket_closed(now, socket);
    }

    /// Starts queued REST requests while there is room.
    fn start_http(&mut self) {
        while self.http.len() < MAX_HTTP_IN_FLIGHT {
            let Some((op, request)) = self.http_queue.pop_front() else {
                break;
            };
            // The URL never holds the apiKey (it travels in a header).
            tracing::debug!(op = op.0, method = request.method.as_str(), url = %request.url(), "REST request");
            let exchange = match self.runtime.http_request(&request) {
                Some(custom) => custom,
                None => {
                    let tls = request.secure.then(|| self.tls());
                    Box::pin(transport::http_request(self.runtime.clone(), tls, request))
                }
            };
            let (handle, registration) = AbortHandle::new_pair();
            let future = Abortable::new(exchange, registration);
            self.http_aborts.insert(op, handle);
            self.http.push(Box::pin(async move { (op, future.await) }));
        }
    }

    fn poll_http(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        self.start_http();
        let mut busy = false;
        for _ in 0..BATCH {
            match Pin::new(&mut self.http).poll_next(cx) {
                Poll::Ready(Some((op, outcome))) => {
                    busy = true;
                    self.http_aborts.remove(&op);
                    match outcome {
                        Ok(Ok(response)) => self.core.handle_http_response(now, op, &response),
                        Ok(Err(message)) => {
                            tracing::debug!(op = op.0, error = %message, "REST request failed");
                            self.core.handle_http_failed(now, op, &message);
                        }
                        // Cancelled: the core already completed the operation.
                        Err(_aborted) => {}
                    }
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        busy
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(at) = self.core.poll_timeout() else {
            self.timer = None;
            return false;
        };
        if at <= now {
            self.timer = None;
            self.core.handle_timeout(now);
            return true;
        }
        if self.timer.as_ref().map(|(t, _)| *t) != Some(at) {
            let deadline = self.epoch + at.since_epoch();
            self.timer = Some((at, self.runtime.sleep_until(deadline)));
        }
        let Some((_, sleep)) = &mut self.timer else {
            return false;
        };
        if sleep.as_mut().poll(cx).is_ready() {
            self.timer = None;
            // Loop again: the next round sees `at <= now` and handles it.
            return true;
        }
        false
    }

    /// Closes sockets that were asked to close; drops them when done or late.
    fn poll_closing(&mut self, cx: &mut Context<'_>) {
        let now = std::time::Instant::now();
        self.closing.retain_mut(|c| {
            if now >= c.until {
                return false;
            }
            // Ready (flushed or failed) means there is nothing more to do.
            Pin::new(&mut c.ws).poll_close(cx).is_pending()
        });
    }

    // ----- outputs ---------------------------------------------------------

    fn drain_outputs(&mut self, now: Instant) {
        loop {
            let mut any = false;
            while let Some(transmit) = self.core.poll_transmit() {
                any = true;
                self.handle_transmit(now, transmit);
            }
            while let Some(event) = self.core.poll_event() {
                any = true;
                self.handle_event(now, event);
            }
            if !any {
                break;
            }
        }
    }

    fn handle_transmit(&mut self, _now: Instant, transmit: Transmit) {
        match transmit {
            Transmit::Connect {
                socket,
                url,
                host,
                port,
                secure,
            } => {
                self.attempts += 1;
                if self.attempts == 1 {
                    tracing::info!(socket = socket.0, %url, "connecting");
                } else {
                    tracing::info!(socket = socket.0, %url, attempt = self.attempts, "reconnecting");
                }
                let tls = secure.then(|| self.tls());
                let future =
                    transport::connect_websocket(self.runtime.clone(), tls, url, host, port);
                self.connecting = Some((socket, Box::pin(future)));
            }
            Transmit::Text { socket, text } => {
                if self.is_current(socket) {
                    self.outgoing.push_back(Message::text(text));
                }
            }
            Transmit::Binary { socket, bytes } => {
                if self.is_current(socket) {
                    self.outgoing.push_back(Message::binary(bytes));
                }
            }
            Transmit::Close { socket } => {
                if self.connecting.as_ref().is_some_and(|(s, _)| *s == socket) {
                    // The core gives up on an attempt at its connect timeout (or on close).
                    tracing::info!(socket = socket.0, "connection attempt abandoned");
                    self.connecting = None;
                }
                if self.is_current(socket) {
                    if let Some((_, ws)) = self.socket.take() {
                        self.outgoing.clear();
                        self.needs_flush = false;
                        self.closing.push(Closing {
                            ws,
                            until: std::time::Instant::now() + CLOSE_GRACE,
                        });
                    }
                }
            }
            Transmit::Http { op, request } => {
                self.http_queue.push_back((op, request));
            }
            Transmit::CancelHttp { op } => {
                tracing::debug!(op = op.0, "REST request abandoned");
                if let Some(handle) = self.http_aborts.remove(&op) {
                    handle.abort();
                }
                self.http_queue.retain(|(queued, _)| *queued != op);
            }
        }
    }

    fn is_current(&self, socket: SocketId) -> bool {
        self.socket.as_ref().is_some_and(|(s, _)| *s == socket)
    }

    fn handle_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Connected { server_id } => {
                tracing::info!(%server_id, "connected");
                self.attempts = 0;
                self.shared.set_connected(Some(server_id.clone()));
                for f in &mut self.on_connect {
                    f(&server_id);
                }
                self.publish(ConnectionEvent::Connected { server_id });
            }
            Event::Disconnected { reason } => {
                tracing::info!(?reason, "disconnected");
                self.shared.set_connected(None);
                for f in &mut self.on_disconnect {
                    f(reason);
                }
                self.publish(ConnectionEvent::Disconnected { reason });
            }
            Event::Completed { op, result } => {
                if let Err(e @ (OpError::Timeout | OpError::Disconnected)) = &result {
                    tracing::debug!(op = op.0, error = %e, "operation failed");
                }
                if let Some(reply) = self.replies.remove(&op) {
                    // Capacity 1 and a single send: only fails if the caller
                    // stopped waiting, which is fine.
                    let _ = reply.try_send(result);
                }
            }
            // The core already gave listeners that did not ask for values
            // their copy without.
            Event::Change { listeners, event } => {
                for id in listeners {
                    let Some(sink) = self.sinks.get_mut(&id) else {
                        continue;
                    };
                    let gone = match sink {
                        ListenerSink::Changes(tx) => !tx.send(event.clone()),
                        ListenerSink::Callback(f) => {
                            f(&event);
                            false
                        }
                        ListenerSink::Binary(_) => false,
                    };
                    if gone {
                        // The stream's drop guard also reports it; removing
                        // here just stops the copying sooner.
                        self.sinks.remove(&id);
                    }
                }
            }
            Event::Binary {
                listeners,
                header,
                payload,
            } => {
                let event = BinaryEvent {
                    kind: header.kind,
                    bucket: header.bucket,
                    key: header.key,
                    payload,
                };
                for id in listeners {
                    if let Some(ListenerSink::Binary(tx)) = self.sinks.get(&id) {
                        if !tx.send(event.clone()) {
                            self.sinks.remove(&id);
                        }
                    }
                }
            }
            Event::Pong { time } => {
                tracing::trace!(%time, "pong");
                for f in &mut self.on_pong {
                    f(&time);
                }
                self.publish(ConnectionEvent::Pong { time });
            }
            Event::ServerError { message } => {
                tracing::warn!(%message, "server error");
                self.publish(ConnectionEvent::ServerError { message });
            }
            Event::ProtocolError(e) => {
                tracing::warn!(error = %e, "protocol error");
                self.publish(ConnectionEvent::ProtocolError(e));
            }
            Event::Messaging(event) => self.handle_messaging(now, event),
            // Newer core events are ignored until this layer knows them.
            _ => {}
        }
    }

    fn handle_messaging(&mut self, now: Instant, event: MessagingEvent) {
        match event {
            MessagingEvent::RequestProgress { request, data } => {
                self.call_progress(CallId::Request(request), data)
            }
            MessagingEvent::RequestDone { request, result } => {
                self.call_done(CallId::Request(request), result)
            }
            MessagingEvent::JobProgress { job, data } => self.call_progress(CallId::Job(job), data),
            MessagingEvent::JobDone { job, result } => self.call_done(CallId::Job(job), result),
            MessagingEvent::IncomingRequest {
                replier,
                incoming,
                message,
            } => {
                let Some(sink) = self.repliers.get(&replier) else {
                    self.core.forget_incoming(now, incoming);
                    return;
                };
                match sink.tx.try_send((incoming, message)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => match sink.overflow {
                        Overflow::ErrorReply => {
                            tracing::debug!(
                                replier = replier.0,
                                "replier queue full: request refused"
                            );
                            let refusal = Err(Value::from(REPLIER_OVERLOADED));
                            if let Err(e) = self.core.reply(now, incoming, refusal) {
                                tracing::debug!(error = %e, "refusal not sent");
                            }
                        }
                        Overflow::Ignore => {
                            tracing::debug!(
                                replier = replier.0,
                                "replier queue full: request ignored"
                            );
                            self.core.forget_incoming(now, incoming);
                        }
                    },
                    // The replier's stream is gone; its removal is on the way.
                    Err(TrySendError::Closed(_)) => {
                        self.core.forget_incoming(now, incoming);
                    }
                }
            }
            MessagingEvent::JobQuery {
                consumer,
                task,
                job,
            } => {
                // A removed consumer's tasks are gone from the core too.
                let Some(sink) = self.consumers.get(&consumer) else {
                    return;
                };
                // Too many unanswered queries: the application is behind.
                // "No worker" makes the core ask again in ~100 ms, so the
                // job is not lost to this consumer, and other consumers
                // with free workers claim it first.
                let queued = sink.tx.len() < sink.capacity
                    && sink.tx.try_send(ConsumerEvent::Query { task, job }).is_ok();
                if !queued {
                    self.core
                        .answer_job_query(now, task, JobAnswer::NoWorkerAvailable);
                }
            }
            MessagingEvent::JobStarted {
                consumer,
                task,
                job,
            } => {
                let delivered = self.consumers.get(&consumer).is_some_and(|sink| {
                    sink.tx
                        .try_send(ConsumerEvent::Started { task, job })
                        .is_ok()
                });
                if !delivered {
                    // Claimed, but nobody will work it: say so at once
                    // rather than let the producer wait for its timeout.
                    let _ = self.core.job_done(
                        now,
                        task,
                        Err(Value::from("the consumer closed before the job started")),
                    );
                }
            }
            MessagingEvent::JobLost { consumer, task } => {
                if let Some(sink) = self.consumers.get(&consumer) {
                    let _ = sink.tx.try_send(ConsumerEvent::Lost { task });
                }
            }
        }
    }

    fn call_progress(&mut self, id: CallId, data: Value) {
        if let Some(CallSink {
            progress: Some(tx), ..
        }) = self.calls.get(&id)
        {
            // A dropped progress stream only means nobody watches progress.
            tx.send(data);
        }
    }

    fn call_done(&mut self, id: CallId, result: Result<Value, CoreMessagingError>) {
        // Removing the sink also drops its progress sender: the progress
        // stream ends after the values already queued.
        if let Some(sink) = self.calls.remove(&id) {
            let _ = sink.done.try_send(result);
        }
    }

    fn publish(&mut self, event: ConnectionEvent) {
        self.subscribers.retain(|tx| tx.send(event.clone()));
    }

    // ----- shutdown --------------------------------------------------------

    /// Closes the core (failing everything pending with `Closed`), stops
    /// taking commands, and gives the socket a moment to say goodbye.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        tracing::info!("client closing");
        self.core.close(now);
        self.drain_outputs(now);
        self.commands.close();
        // Commands already queued hold reply senders: dropping them tells
        // their callers the client is closed instead of leaving them waiting.
        while self.commands.try_recv().is_ok() {}
        self.connecting = None;
        self.http = FuturesUnordered::new();
        self.http_aborts.clear();
        self.http_queue.clear();
        self.timer = None;
        self.replies.clear();
        self.sinks.clear();
        self.calls.clear();
        self.repliers.clear();
        self.consumers.clear();
        self.outbox.close();
        while self.outbox.try_recv().is_ok() {}
        self.subscribers.clear();
        self.on_connect.clear();
        self.on_disconnect.clear();
        self.on_pong.clear();
        self.shared.set_connected(None);
        if let Some((_, ws)) = self.socket.take() {
            self.closing.push(Closing {
                ws,
                until: std::time::Instant::now() + CLOSE_GRACE,
            });
        }
        self.shutdown = Some(self.runtime.sleep(CLOSE_GRACE));
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.shared.driver_waker.register(cx.waker());
        for _ in 0..ROUNDS_PER_POLL {
            let now = this.now();
            if this.shutdown.is_some() {
                this.poll_closing(cx);
                let grace_over = this
                    .shutdown
                    .as_mut()
                    .is_some_and(|grace| grace.as_mut().poll(cx).is_ready());
                if this.closing.is_empty() || grace_over {
                    tracing::debug!("driver task finished");
                    return Poll::Ready(());
                }
                return Poll::Pending;
            }
            let mut busy = this.poll_lifeline(cx, now);
            if this.shutdown.is_some() {
                continue;
            }
            // The outbox first: a handle's answers were made before any
            // later command of the same caller.
            busy |= this.poll_outbox(cx, now);
            busy |= this.remove_dropped_listeners(now);
            busy |= this.poll_commands(cx, now);
            if this.shutdown.is_some() {
                continue;
            }
            busy |= this.poll_connecting(cx, now);
            busy |= this.poll_socket_read(cx, now);
            busy |= this.poll_http(cx, now);
            busy |= this.poll_timer(cx, now);
            this.drain_outputs(now);
            busy |= this.poll_socket_write(cx, now);
            this.drain_outputs(now);
            this.poll_closing(cx);
            if !busy {
                return Poll::Pending;
            }
        }
        // Still busy after many rounds: let other tasks run, come back soon.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
