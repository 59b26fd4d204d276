//! The client connection state machine.
//!
//! # Contract
//!
//! A [`Client`] owns every protocol rule of one Cachearoo client and does no
//! I/O. Its driver:
//!
//! 1. feeds **commands** from the application ([`Client::submit`],
//!    [`Client::add_listener`], [`Client::signal_event`], ...) and **I/O facts**
//!    (`handle_socket_opened`, `handle_text`, `handle_binary`,
//!    `handle_socket_closed`, `handle_http_response`, `handle_http_failed`,
//!    `handle_timeout`), each with the current time `now`;
//! 2. after every such call drains [`Client::poll_transmit`] (frames to send,
//!    sockets to open or close, HTTP requests) and [`Client::poll_event`]
//!    (results, change events, connection state) until both return `None`;
//! 3. sleeps until [`Client::poll_timeout`] (or the next input) and then calls
//!    [`Client::handle_timeout`].
//!
//! Guarantees: every [`OpId`] is completed exactly once (reply, typed error,
//! timeout, disconnect or close); no frame is emitted for a socket that is not
//! connected; the full listener registration is re-sent after every greeting;
//! equal inputs give equal outputs (randomness comes from the seed).
//!
//! Requests in flight on a socket that drops: reads and lists are re-sent over
//! REST within their original deadline (they cannot change the store); writes,
//! patches and removes fail with [`OpError::Disconnected`] because they may or
//! may not have been applied, and repeating them could apply them twice.

mod listeners;
mod messaging;
mod output;

pub use listeners::{ListenerId, Registration};
pub use messaging::{
    jobs_bucket, reqrep_bucket, reqrep_progress_bucket, status_bucket, ConsumerId, IncomingId,
    JobAnswer, JobId, MessagingError, MessagingEvent, ProducerId, ReplierId, RequestId,
    RequestorId, TaskId, JOB_NOT_SUPPORTED, MAX_QUERY_SPREAD_MS, NO_WORKER_AVAILABLE,
    REQUERY_INTERVAL,
};
pub use output::{DisconnectReason, Event, ProtocolError, SendError, SocketId, Transmit};

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::Value;

use crate::config::Config;
use crate::op::{ws_result, OpError, OpId, OpOptions, Operation};
use crate::rest::{self, HttpResponse};
use crate::rng::Prng;
use crate::time::Instant;
use crate::wire::{BinaryHeader, ChangeEvent, ClientMessage, ServerMessage, SignalEvent};
use listeners::{Listeners, Owner};
use messaging::{InternalOp, Messaging};

/// Where the WebSocket stands.
#[derive(Debug, Clone)]
enum Link {
    /// Waiting out the backoff before the next dial.
    Waiting { until: Instant },
    /// Dialling / upgrading, or upgraded and waiting for the greeting.
    Connecting {
        socket: SocketId,
        opened: bool,
        deadline: Instant,
    },
    /// Greeted: usable.
    Connected {
        socket: SocketId,
        server_id: String,
        next_ping: Option<Instant>,
        unanswered_pings: u32,
        /// What the server holds for this connection (last sent).
        registered: Option<Registration>,
    },
    /// `close()` was called.
    Closed,
}

/// How a pending operation travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Socket(SocketId),
    Http,
}

/// Who gets an operation's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpOwner {
    /// The application: an [`Event::Completed`].
    App,
    /// A messaging state machine of this client.
    Internal(InternalOp),
}

#[derive(Debug)]
struct Pending {
    owner: OpOwner,
    op: Operation,
    bucket: String,
    deadline: Instant,
    via: Via,
}

/// The sans-IO Cachearoo client. See the [module docs](self) for the contract.
#[derive(Debug)]
pub struct Client {
    config: Config,
    rng: Prng,
    link: Link,
    /// Consecutive failed connection attempts (drives the backoff).
    failures: u32,
    next_socket: u64,
    next_op: u64,
    pending: BTreeMap<OpId, Pending>,
    deadlines: BTreeSet<(Instant, OpId)>,
    listeners: Listeners,
    messaging: Messaging,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Client {
    /// A client that starts connecting at once (the first [`Transmit`] is a
    /// [`Transmit::Connect`]). All randomness derives from `seed`.
    pub fn new(config: Config, seed: u64, now: Instant) -> Client {
        let mut client = Client {
            config,
            rng: Prng::new(seed),
            link: Link::Waiting { until: now },
            failures: 0,
            next_socket: 0,
            next_op: 0,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            listeners: Listeners::default(),
            messaging: Messaging::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        client.dial(now);
        client
    }

    // ----- getters -------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the WebSocket is greeted and usable.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Connected { .. })
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        matches!(self.link, Link::Closed)
    }

    /// The id of the server currently connected to.
    pub fn server_id(&self) -> Option<&str> {
        match &self.link {
            Link::Connected { server_id, .. } => Some(server_id),
            _ => None,
        }
    }

    /// Number of operations not yet completed (the application's and the
    /// messaging state machines').
    pub fn pending_operations(&self) -> usize {
        self.pending.len()
    }

    /// Whether no request, job or consumer task is in flight.
    pub fn messaging_idle(&self) -> bool {
        self.messaging.is_idle()
    }

    /// Number of the application's listeners.
    pub fn listener_count(&self) -> usize {
        self.listeners.app_len()
    }

    /// The registration the server should hold for this client.
    pub fn registration(&self) -> Registration {
        self.listeners.registration()
    }

    /// The seeded generator, for state machines layered on this client
    /// (request uuids, load spreading) so one seed drives everything.
    pub fn rng(&mut self) -> &mut Prng {
        &mut self.rng
    }

    // ----- outputs -------------------------------------------------------

    /// The next I/O action for the driver.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Client::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let op = self.deadlines.first().map(|(t, _)| *t);
        let link = match &self.link {
            Link::Waiting { until } => Some(*until),
            Link::Connecting { deadline, .. } => Some(*deadline),
            Link::Connected { next_ping, .. } => *next_ping,
            Link::Closed => None,
        };
        [op, link, self.messaging.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- commands ------------------------------------------------------

    /// Starts an operation. It completes later with one
    /// [`Event::Completed`] for the returned id (possibly at once, e.g. after
    /// `close()` or for a request REST cannot express).
    pub fn submit(&mut self, now: Instant, op: Operation, options: OpOptions) -> OpId {
        self.submit_owned(now, op, options, OpOwner::App)
    }

    fn submit_owned(
        &mut self,
        now: Instant,
        mut op: Operation,
        options: OpOptions,
        owner: OpOwner,
    ) -> OpId {
        self.next_op += 1;
        let id = OpId(self.next_op);
        if self.is_closed() {
            self.complete(now, id, owner, Err(OpError::Closed));
            return id;
        }
        let bucket = options.bucket.unwrap_or_else(|| self.config.bucket.clone());
        let deadline = now + self.config.request_timeout;
        let socket = match &self.link {
            Link::Connected { socket, .. } if !options.force_http => Some(*socket),
            _ => None,
        };
        let via = match socket {
            Some(socket) => {
                let (request, kept) = op.into_wire(Value::String(id.0.to_string()), &bucket);
                op = kept;
                let text = ClientMessage::DatastoreOperation {
                    api_key: self.config.api_key.clone(),
                    request: Some(request),
                }
                .encode();
                self.transmits.push_back(Transmit::Text { socket, text });
                Via::Socket(socket)
            }
            None => match rest::request_for(&self.config, &bucket, &op) {
                Ok(request) => {
                    // The body is built: the pending operation keeps no copy.
                    op.take_payload();
                    self.transmits.push_back(Transmit::Http { op: id, request });
                    Via::Http
                }
                Err(e) => {
                    self.complete(now, id, owner, Err(e));
                    return id;
                }
            },
        };
        self.deadlines.insert((deadline, id));
        self.pending.insert(
            id,
            Pending {
                owner,
                op,
                bucket,
                deadline,
                via,
            },
        );
        id
    }

    /// Adds a listener for `bucket`/`key` (`"*"` matches anything). It can be
    /// added at any time; the server learns of it on every (re)connect.
    pub fn add_listener(
        &mut self,
        _now: Instant,
        bucket: &str,
        key: &str,
        send_values: bool,
    ) -> ListenerId {
        let id = self.listeners.add(
            String::from(bucket),
            String::from(key),
            send_values,
            Owner::App,
        );
        self.sync_registration();
        id
    }

    /// Removes a listener; `false` if it was not there.
    pub fn remove_listener(&mut self, _now: Instant, id: ListenerId) -> bool {
        let removed = self.listeners.remove(id);
        if removed {
            self.sync_registration();
        }
        removed
    }

    /// Sends a signal event to every other client listening on `bucket`/`key`.
    /// Nothing is stored and nothing answers.
    pub fn signal_event(
        &mut self,
        _now: Instant,
        bucket: &str,
        key: &str,
        value: Option<Value>,
    ) -> Result<(), SendError> {
        let socket = self.connected_socket()?;
        let text = ClientMessage::EventBroadcast {
            api_key: self.config.api_key.clone(),
            event: Some(SignalEvent {
                bucket: String::from(bucket),
                key: String::from(key),
                value,
            }),
        }
        .encode();
        self.transmits.push_back(Transmit::Text { socket, text });
        Ok(())
    }

    /// Sends a binary event (type byte, bucket, key, payload).
    pub fn send_binary(
        &mut self,
        _now: Instant,
        kind: u8,
        bucket: &str,
        key: &str,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let header = BinaryHeader {
            kind,
            bucket: String::from(bucket),
            key: String::from(key),
            api_key: self.config.api_key.clone().unwrap_or_default(),
        };
        let bytes = header.encode(payload)?;
        let socket = self.connected_socket()?;
        self.transmits.push_back(Transmit::Binary { socket, bytes });
        Ok(())
    }

    /// Sends an application ping now; the answer is an [`Event::Pong`].
    pub fn ping(&mut self, _now: Instant) -> Result<(), SendError> {
        let socket = self.connected_socket()?;
        self.transmits.push_back(Transmit::Text {
            socket,
            text: ClientMessage::Ping.encode(),
        });
        Ok(())
    }

    /// Stops for good: closes the socket, fails every pending operation with
    /// [`OpError::Closed`], and never reconnects.
    pub fn close(&mut self, now: Instant) {
        match core::mem::replace(&mut self.link, Link::Closed) {
            Link::Connected { socket, .. } => {
                self.transmits.push_back(Transmit::Close { socket });
                self.events.push_back(Event::Disconnected {
                    reason: DisconnectReason::ClientClosed,
                });
            }
            Link::Connecting { socket, .. } => self.transmits.push_back(Transmit::Close { socket }),
            Link::Waiting { .. } | Link::Closed => {}
        }
        let ids: Vec<OpId> = self.pending.keys().copied().collect();
        for id in ids {
            self.finish(now, id, Err(OpError::Closed));
        }
        self.messaging_on_close(now);
    }

    // ----- I/O facts -----------------------------------------------------

    /// The WebSocket of `socket` is upgraded; the greeting is awaited.
    pub fn handle_socket_opened(&mut self, _now: Instant, socket: SocketId) {
        if let Link::Connecting {
            socket: s, opened, ..
        } = &mut self.link
        {
            if *s == socket {
                *opened = true;
            }
        }
    }

    /// The socket closed, or could not be opened.
    pub fn handle_socket_closed(&mut self, now: Instant, socket: SocketId) {
        if self.current_socket() == Some(socket) {
            self.drop_link(now, DisconnectReason::SocketClosed, false);
        }
    }

    /// A text frame arrived on `socket`.
    pub fn handle_text(&mut self, now: Instant, socket: SocketId, text: &str) {
        if self.current_socket() != Some(socket) {
            return;
        }
        match ServerMessage::decode(text) {
            Ok(msg) => self.on_message(now, socket, msg),
            Err(e) => self
                .events
                .push_back(Event::ProtocolError(ProtocolError::Text(e))),
        }
    }

    /// A binary frame arrived on `socket`.
    pub fn handle_binary(&mut self, _now: Instant, socket: SocketId, frame: &[u8]) {
        if self.current_socket() != Some(socket) {
            return;
        }
        match BinaryHeader::decode(frame) {
            Ok((header, payload)) => {
                let listeners = self.listeners.matching(&header.bucket, &header.key);
                self.events.push_back(Event::Binary {
                    listeners,
                    payload: payload.to_vec(),
                    header,
                });
            }
            Err(e) => self
                .events
                .push_back(Event::ProtocolError(ProtocolError::Binary(e))),
        }
    }

    /// The HTTP request of `op` was answered.
    pub fn handle_http_response(&mut self, now: Instant, op: OpId, response: &HttpResponse) {
        let Some(p) = self.pending.get(&op) else {
            return;
        };
        if p.via != Via::Http {
            return;
        }
        let sent_key = sent_key(&p.op);
        let result = rest::response_result(&p.op, &sent_key, response);
        self.finish(now, op, result);
    }

    /// The HTTP request of `op` failed without an answer.
    pub fn handle_http_failed(&mut self, now: Instant, op: OpId, message: &str) {
        if self.pending.get(&op).is_some_and(|p| p.via == Via::Http) {
            self.finish(
                now,
                op,
                Err(OpError::Transport {
                    message: String::from(message),
                }),
            );
        }
    }

    /// Time passed: expires operations, dials after backoff, abandons slow
    /// connection attempts, sends pings and detects dead connections.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            if self.pending.get(&id).is_some_and(|p| p.via == Via::Http) {
                self.transmits.push_back(Transmit::CancelHttp { op: id });
            }
            self.finish(now, id, Err(OpError::Timeout));
        }
        self.messaging_on_timeout(now);
        match &mut self.link {
            Link::Waiting { until } if *until <= now => self.dial(now),
            Link::Connecting { deadline, .. } if *deadline <= now => {
                self.drop_link(now, DisconnectReason::SocketClosed, true)
            }
            Link::Connected {
                socket,
                next_ping: Some(at),
                unanswered_pings,
                ..
            } if *at <= now => {
                if *unanswered_pings >= self.config.missed_pong_limit {
                    self.drop_link(now, DisconnectReason::PongTimeout, true);
                } else {
                    *unanswered_pings += 1;
                    *at = now + self.config.ping_interval;
                    let socket = *socket;
                    self.transmits.push_back(Transmit::Text {
                        socket,
                        text: ClientMessage::Ping.encode(),
                    });
                }
            }
            _ => {}
        }
    }

    // ----- internals -----------------------------------------------------

    fn current_socket(&self) -> Option<SocketId> {
        match &self.link {
            Link::Connecting { socket, .. } | Link::Connected { socket, .. } => Some(*socket),
            _ => None,
        }
    }

    fn connected_socket(&self) -> Result<SocketId, SendError> {
        match &self.link {
            Link::Connected { socket, .. } => Ok(*socket),
            Link::Closed => Err(SendError::Closed),
            _ => Err(SendError::NotConnected),
        }
    }

    fn dial(&mut self, now: Instant) {
        self.next_socket += 1;
        let socket = SocketId(self.next_socket);
        self.link = Link::Connecting {
            socket,
            opened: false,
            deadline: now + self.config.connect_timeout,
        };
        self.transmits.push_back(Transmit::Connect {
            socket,
            url: self.config.ws_url(),
            host: self.config.host.clone(),
            port: self.config.port,
            secure: self.config.secure,
        });
    }

    /// Ends the current socket and schedules the next attempt.
    fn drop_link(&mut self, now: Instant, reason: DisconnectReason, close_socket: bool) {
        let old = core::mem::replace(&mut self.link, Link::Closed);
        let socket = match old {
            Link::Connected { socket, .. } => {
                self.events.push_back(Event::Disconnected { reason });
                socket
            }
            Link::Connecting { socket, .. } => {
                self.failures = self.failures.saturating_add(1);
                socket
            }
            other => {
                self.link = other;
                return;
            }
        };
        if close_socket {
            self.transmits.push_back(Transmit::Close { socket });
        }
        self.fail_in_flight(now, socket);
        let ceiling = self.config.backoff.ceiling(self.failures.saturating_sub(1));
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jittered = ms / 2 + self.rng.below_inclusive(ms - ms / 2);
        self.link = Link::Waiting {
            until: now + core::time::Duration::from_millis(jittered),
        };
    }

    /// Requests in flight on a dead socket: reads go over REST, the rest fail.
    fn fail_in_flight(&mut self, now: Instant, socket: SocketId) {
        let ids: Vec<OpId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.via == Via::Socket(socket))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            if p.op.is_idempotent_read() {
                if let Ok(request) = rest::request_for(&self.config, &p.bucket, &p.op) {
                    p.via = Via::Http;
                    self.transmits.push_back(Transmit::Http { op: id, request });
                    continue;
                }
            }
            self.finish(now, id, Err(OpError::Disconnected));
        }
    }

    fn on_message(&mut self, now: Instant, socket: SocketId, msg: ServerMessage) {
        match msg {
            ServerMessage::Greeting { server_id } => {
                if let Link::Connecting { socket: s, .. } = self.link {
                    if s == socket {
                        self.failures = 0;
                        self.link = Link::Connected {
                            socket,
                            server_id: server_id.clone(),
                            next_ping: self
                                .config
                                .enable_ping
                                .then(|| now + self.config.ping_interval),
                            unanswered_pings: 0,
                            registered: None,
                        };
                        self.events.push_back(Event::Connected { server_id });
                        self.sync_registration();
                    }
                }
            }
            ServerMessage::Response(resp) => {
                let Some(id) = resp.id.as_ref() else {
                    let message = match &resp.outcome {
                        crate::wire::Outcome::Err(e) => e
                            .message()
                            .map(String::from)
                            .unwrap_or_else(|| serde_json::to_string(e).unwrap_or_default()),
                        crate::wire::Outcome::Ok { .. } => String::from("response without id"),
                    };
                    self.events.push_back(Event::ServerError { message });
                    return;
                };
                let op = match id {
                    Value::String(s) => s.parse::<u64>().ok(),
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                }
                .map(OpId);
                match op {
                    Some(op)
                        if self
                            .pending
                            .get(&op)
                            .is_some_and(|p| p.via == Via::Socket(socket)) =>
                    {
                        let Some(p) = self.pending.get(&op) else {
                            return;
                        };
                        let result = ws_result(&p.op, &sent_key(&p.op), resp.outcome);
                        self.finish(now, op, result);
                    }
                    // A late answer to an operation that already ended.
                    Some(op) if op.0 <= self.next_op => {}
                    _ => self
                        .events
                        .push_back(Event::ProtocolError(ProtocolError::UnknownResponseId)),
                }
            }
            ServerMessage::Pong { time } => {
                if let Link::Connected {
                    unanswered_pings, ..
                } = &mut self.link
                {
                    *unanswered_pings = 0;
                }
                self.events.push_back(Event::Pong { time });
            }
            ServerMessage::Event(event) => {
                for endpoint in self.listeners.matching_internal(&event.bucket, &event.key) {
                    self.messaging_on_event(now, endpoint, &event);
                }
                // `sendValues` is per connection: the server sends values
                // when any listener asked, so listeners that did not ask get
                // the event without (as a connection of their own would).
                let (with, mut without) =
                    self.listeners.matching_by_values(&event.bucket, &event.key);
                if event.value.is_none() {
                    without.extend(with);
                    without.sort_unstable();
                    if !without.is_empty() {
                        self.events.push_back(Event::Change {
                            listeners: without,
                            event,
                        });
                    }
                    return;
                }
                if !without.is_empty() {
                    self.events.push_back(Event::Change {
                        listeners: without,
                        event: ChangeEvent {
                            value: None,
                            ..event.clone()
                        },
                    });
                }
                if !with.is_empty() {
                    self.events.push_back(Event::Change {
                        listeners: with,
                        event,
                    });
                }
            }
            // Only replication clients receive dumps; we are not one.
            ServerMessage::ReplicationDump { .. } => {}
        }
    }

    /// Sends the registration if the server's copy differs from ours.
    fn sync_registration(&mut self) {
        let wanted = self.listeners.registration();
        let api_key = self.config.api_key.clone();
        if let Link::Connected {
            socket, registered, ..
        } = &mut self.link
        {
            let unchanged = match registered {
                Some(r) => *r == wanted,
                // A fresh connection holds nothing: only non-empty sets need sending.
                None => wanted.events.is_empty(),
            };
            if unchanged {
                return;
            }
            let text = ClientMessage::RegisterEvents {
                api_key,
                events: Some(wanted.events.clone()),
                send_values: wanted.send_values,
            }
            .encode();
            self.transmits.push_back(Transmit::Text {
                socket: *socket,
                text,
            });
            *registered = Some(wanted);
        }
    }

    /// Removes a pending operation and reports its result.
    fn finish(&mut self, now: Instant, id: OpId, result: Result<crate::op::Reply, OpError>) {
        if let Some(p) = self.pending.remove(&id) {
            self.deadlines.remove(&(p.deadline, id));
            self.complete(now, id, p.owner, result);
        }
    }

    fn complete(
        &mut self,
        now: Instant,
        op: OpId,
        owner: OpOwner,
        result: Result<crate::op::Reply, OpError>,
    ) {
        match owner {
            OpOwner::App => self.events.push_back(Event::Completed { op, result }),
            OpOwner::Internal(purpose) => self.messaging_on_op(now, purpose, result),
        }
    }
}

fn sent_key(op: &Operation) -> String {
    match op {
        Operation::Read { key }
        | Operation::Write { key, .. }
        | Operation::Patch { key, .. }
        | Operation::Remove { key } => key.clone(),
        Operation::List { .. } => String::new(),
    }
}
