//! The sans-IO hub: every protocol rule of the server, with no sockets, no
//! clock and no randomness.
//!
//! # Contract
//!
//! The front (a network layer, or a simulation) owns the transport and
//! feeds the hub facts, each with the current wall-clock time in
//! milliseconds since the Unix epoch (`now_ms`, used for ISO-8601
//! timestamps and generated keys):
//!
//! - [`Hub::connect`] when a WebSocket upgrade arrives (it refuses a client
//!   id equal to the server id: answer the upgrade with HTTP 403), then
//!   [`Hub::handle_text`] / [`Hub::handle_binary`] for each frame, and
//!   [`Hub::disconnect`] when the socket is gone;
//! - [`Hub::handle_rest`] for each REST request, which answers at once;
//! - [`Hub::close`] when the front must drop a connection itself (a slow
//!   consumer, shutdown).
//!
//! After each call the front drains [`Hub::poll_output`] until `None` and
//! delivers every [`Output`] in order: per connection, frames must be sent
//! in the order they come out. Same inputs, same outputs: the hub is what
//! the deterministic simulation drives.

mod inspect;
mod rest;
mod subs;
#[cfg(test)]
mod tests;

pub use rest::{RestRequest, RestResponse};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use cachearoo_core::wire::{
    BinaryHeader, ChangeEvent, ClientMessage, Expire, Op, Outcome, Request, Response,
    ServerMessage, SignalEvent, Subscription, WireError, EXPIRE_SESSION, HEADER_LEN,
};
use serde_json::Value;

use crate::store::{parse_patch, MemoryStore, Store, StoreError, WriteOptions};
use crate::time::iso8601;
use subs::SubIndex;

/// Identifies one WebSocket connection; chosen by the front, unique among
/// the connections it has open.
pub type ConnId = u64;

/// A text frame shared by every recipient of a broadcast (encoded once).
pub type SharedText = Arc<str>;

/// The reference's answer to a frame it cannot handle.
pub const NOT_VALID_JSON: &str = "Message is not valid JSON";
/// The reference's answer to an operation with a wrong or missing apiKey.
pub const NOT_AUTHORIZED: &str = "Not authorized";
/// The reference's answer to a signal or binary event with a wrong apiKey.
pub const NOT_AUTHORIZED_EVENT: &str = "Not authorized to send event";

/// Error codes our server puts on error objects (`{"message":..,"code":..}`).
pub mod codes {
    /// The key or bucket does not exist.
    pub const NOT_FOUND: &str = "ENOTFOUND";
    /// A `failIfExists` write found the key.
    pub const EXISTS: &str = "EEXISTS";
    /// The JSON patch is malformed or does not apply.
    pub const INVALID_PATCH: &str = "EINVALIDPATCH";
    /// The bucket name is refused.
    pub const INVALID_BUCKET: &str = "EINVALIDBUCKET";
    /// The `op` of a request is unknown.
    pub const UNKNOWN_OP: &str = "EUNKNOWNOP";
    /// A message lacks a required part (`request`, `event`, `events`).
    pub const BAD_REQUEST: &str = "EBADREQUEST";
}

/// What the hub is configured with. `Debug` never shows the apiKey.
#[derive(Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// The server's id: sent in the greeting and by `GET /_id`; a client
    /// connecting with this id is refused.
    pub server_id: String,
    /// When set, every message (and REST request) must carry this apiKey.
    pub api_key: Option<String>,
    /// With an apiKey: let reads, lists and registrations through without it.
    pub public_read: bool,
    /// Value of the `X-Served-By` header on REST answers.
    pub served_by: String,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("server_id", &self.server_id)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("public_read", &self.public_read)
            .field("served_by", &self.served_by)
            .finish()
    }
}

impl HubConfig {
    /// A configuration without apiKey.
    pub fn new(server_id: impl Into<String>) -> Self {
        HubConfig {
            server_id: server_id.into(),
            api_key: None,
            public_read: false,
            served_by: format!("Cachearoo-rs ver {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Why the hub asks the front to close a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its send queue overflowed: it does not read fast enough.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
    /// It did not answer WebSocket pings in time.
    PingTimeout,
    /// A protocol violation on the WebSocket level (e.g. an oversize frame).
    ProtocolViolation,
}

/// Something the front must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a text frame on `conn`.
    Text {
        /// The connection.
        conn: ConnId,
        /// The frame.
        text: SharedText,
    },
    /// Send a binary frame on `conn`.
    Binary {
        /// The connection.
        conn: ConnId,
        /// The whole frame (header included).
        bytes: Bytes,
    },
    /// Close `conn`: the hub has already forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// Why [`Hub::connect`] refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The client id equals the server's own id (answer HTTP 403).
    #[error("client id equals the server id")]
    ServerIdConflict,
    /// The connection id is already in use.
    #[error("connection {0} is already connected")]
    DuplicateConnection(ConnId),
}

/// Counters of the hub's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections closed because they could not keep up.
    pub slow_consumer_closes: u64,
    /// Text and binary frames handled.
    pub frames_in: u64,
    /// REST requests handled.
    pub rest_requests: u64,
}

/// One WebSocket connection as the hub sees it.
#[derive(Debug)]
struct Conn {
    client_id: Option<String>,
    /// Whether change events carry values (the reference's default at
    /// connect is `true`; every `register-events` sets it).
    send_values: bool,
    /// Replication clients always get values.
    replication: bool,
    /// The current registration, deduplicated.
    subscriptions: BTreeSet<Subscription>,
    /// Keys this connection wrote as session keys and still holds.
    session_keys: BTreeSet<(String, String)>,
}

/// A change to broadcast.
struct Change<'a> {
    bucket: &'a str,
    key: &'a str,
    timestamp: Option<String>,
    origin_request_id: Option<Value>,
    client_id: Option<String>,
    is_deleted: bool,
    value: Option<&'a Value>,
}

/// The `null` every delete event carries as its value.
static DELETED_VALUE: Value = Value::Null;

impl<'a> Change<'a> {
    /// A delete event: `timestamp` and `value` are `null`, as the reference
    /// sends them; `origin_request_id` is absent for session expiry and REST.
    fn deleted(
        bucket: &'a str,
        key: &'a str,
        origin_request_id: Option<Value>,
        client_id: Option<String>,
    ) -> Change<'a> {
        Change {
            bucket,
            key,
            timestamp: None,
            origin_request_id,
            client_id,
            is_deleted: true,
            value: Some(&DELETED_VALUE),
        }
    }
}

/// The hub: connections, subscriptions, session keys and the store.
#[derive(Debug)]
pub struct Hub<S: Store = MemoryStore> {
    config: HubConfig,
    store: S,
    conns: BTreeMap<ConnId, Conn>,
    subs: SubIndex,
    /// Session keys and the connections holding them.
    sessions: BTreeMap<(String, String), BTreeSet<ConnId>>,
    outputs: VecDeque<Output>,
    stats: HubStats,
}

impl<S: Store> Hub<S> {
    /// A hub over `store`.
    pub fn new(config: HubConfig, store: S) -> Self {
        Hub {
            config,
            store,
            conns: BTreeMap::new(),
            subs: SubIndex::default(),
            sessions: BTreeMap::new(),
            outputs: VecDeque::new(),
            stats: HubStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The server id.
    pub fn server_id(&self) -> &str {
        &self.config.server_id
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Counters.
    pub fn stats(&self) -> HubStats {
        HubStats {
            connections: self.conns.len(),
            ..self.stats
        }
    }

    /// Whether `conn` is connected.
    pub fn is_connected(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The client id `conn` connected with (`?id=`).
    pub fn client_id(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn).and_then(|c| c.client_id.as_deref())
    }

    /// The next thing for the front to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// A WebSocket upgrade with `?id=client_id`: on success the greeting is
    /// queued for `conn`.
    pub fn connect(
        &mut self,
        conn: ConnId,
        client_id: Option<String>,
        _now_ms: u64,
    ) -> Result<(), ConnectError> {
        if client_id.as_deref() == Some(self.config.server_id.as_str()) {
            return Err(ConnectError::ServerIdConflict);
        }
        if self.conns.contains_key(&conn) {
            return Err(ConnectError::DuplicateConnection(conn));
        }
        self.conns.insert(
            conn,
            Conn {
                client_id,
                send_values: true,
                replication: false,
                subscriptions: BTreeSet::new(),
                session_keys: BTreeSet::new(),
            },
        );
        self.stats.connections_total += 1;
        let greeting = ServerMessage::Greeting {
            server_id: self.config.server_id.clone(),
        };
        self.send(conn, &greeting);
        Ok(())
    }

    /// The socket of `conn` is gone: forget it, and remove the session keys
    /// it was the last holder of (subscribers see delete events).
    pub fn disconnect(&mut self, conn: ConnId, _now_ms: u64) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        for sub in &c.subscriptions {
            self.subs.remove(conn, sub);
        }
        for (bucket, key) in c.session_keys {
            let last = match self.sessions.get_mut(&(bucket.clone(), key.clone())) {
                Some(holders) => {
                    holders.remove(&conn);
                    holders.is_empty()
                }
                None => false,
            };
            if !last {
                continue;
            }
            self.sessions.remove(&(bucket.clone(), key.clone()));
            if let Ok(true) = self.store.remove(&bucket, &key) {
                self.broadcast(None, &Change::deleted(&bucket, &key, None, None));
            }
        }
    }

    /// Drops `conn` on the hub's side (as [`Hub::disconnect`]) and asks the
    /// front to close its socket with an [`Output::Close`].
    pub fn close(&mut self, conn: ConnId, reason: CloseReason, now_ms: u64) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        if reason == CloseReason::SlowConsumer {
            self.stats.slow_consumer_closes += 1;
        }
        self.disconnect(conn, now_ms);
        self.outputs.push_back(Output::Close { conn, reason });
    }

    /// A text frame from `conn`.
    pub fn handle_text(&mut self, conn: ConnId, text: &str, now_ms: u64) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.stats.frames_in += 1;
        let msg = match ClientMessage::decode(text) {
            Ok(m) => m,
            Err(_) => {
                self.respond(
                    conn,
                    None,
                    Outcome::Err(WireError::Text(NOT_VALID_JSON.into())),
                );
                return;
            }
        };
        match msg {
            ClientMessage::DatastoreOperation { api_key, request } => match request {
                Some(r) => self.datastore_operation(conn, api_key.as_deref(), r, now_ms),
                None => self.bad_request(conn, "datastore-operation needs a request object"),
            },
            ClientMessage::RegisterEvents {
                api_key,
                events,
                send_values,
            } => self.register(conn, api_key.as_deref(), events, send_values, false),
            ClientMessage::RegisterReplicationClient { api_key, events } => {
                self.register(conn, api_key.as_deref(), events, true, true)
            }
            ClientMessage::EventBroadcast { api_key, event } => {
                self.signal(conn, api_key.as_deref(), event, now_ms)
            }
            ClientMessage::Ping => {
                let pong = ServerMessage::Pong {
                    time: iso8601(now_ms),
                };
                self.send(conn, &pong);
            }
            // Unknown or missing `msg`: the reference does not answer, and
            // neither do we (a newer client may send kinds we do not know).
            ClientMessage::Unknown { .. } => {}
        }
    }

    /// A binary frame from `conn`: relayed whole to every other connection
    /// subscribed to its `(bucket, key)`. Frames shorter than the 128-byte
    /// header, or whose header does not decode, are dropped.
    pub fn handle_binary(&mut self, conn: ConnId, frame: &[u8], now_ms: u64) {
        self.handle_binary_bytes(conn, Bytes::copy_from_slice(frame), now_ms);
    }

    /// [`Hub::handle_binary`] without copying the frame.
    pub fn handle_binary_bytes(&mut self, conn: ConnId, frame: Bytes, _now_ms: u64) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.stats.frames_in += 1;
        if frame.len() < HEADER_LEN {
            return;
        }
        let Ok((header, _payload)) = BinaryHeader::decode(&frame) else {
            return;
        };
        if !self.authorized(Some(&header.api_key)) {
            self.respond(
                conn,
                None,
                Outcome::Err(WireError::Text(NOT_AUTHORIZED_EVENT.into())),
            );
            return;
        }
        for to in self.subs.matching(&header.bucket, &header.key) {
            if to != conn {
                self.outputs.push_back(Output::Binary {
                    conn: to,
                    bytes: frame.clone(),
                });
            }
        }
    }

    /// Whether `given` is the configured apiKey (always, without one).
    fn authorized(&self, given: Option<&str>) -> bool {
        match &self.config.api_key {
            None => true,
            Some(expected) => constant_time_eq(given.unwrap_or("").as_bytes(), expected.as_bytes()),
        }
    }

    fn may_read(&self, given: Option<&str>) -> bool {
        self.config.public_read || self.authorized(given)
    }

    fn register(
        &mut self,
        conn: ConnId,
        api_key: Option<&str>,
        events: Option<Vec<Subscription>>,
        send_values: bool,
        replication: bool,
    ) {
        if !self.may_read(api_key) {
            // The reference ignores it silently; we say why, and keep the
            // old registration as it does.
            self.respond(
                conn,
                None,
                Outcome::Err(WireError::Text(NOT_AUTHORIZED.into())),
            );
            return;
        }
        let Some(events) = events else {
            // The reference poisons broadcasting for everyone here; we
            // refuse the message for this connection alone.
            self.bad_request(conn, "register-events needs an events array");
            return;
        };
        let new: BTreeSet<Subscription> = events.into_iter().collect();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let old = std::mem::take(&mut c.subscriptions);
        c.send_values = send_values;
        c.replication |= replication;
        for sub in &old {
            self.subs.remove(conn, sub);
        }
        for sub in &new {
            self.subs.insert(conn, sub);
        }
        if replication {
            self.replication_dump(conn, &new);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.subscriptions = new;
        }
    }

    /// One `{"bucket":..,"data":[..]}` per registered bucket (every bucket
    /// for `*`).
    fn replication_dump(&mut self, conn: ConnId, subs: &BTreeSet<Subscription>) {
        let mut buckets: BTreeSet<String> = BTreeSet::new();
        for s in subs {
            if s.bucket == Subscription::WILDCARD {
                buckets.extend(self.store.buckets());
            } else {
                buckets.insert(s.bucket.clone());
            }
        }
        for bucket in buckets {
            let data = self.store.list(&bucket, None, false);
            self.send(conn, &ServerMessage::ReplicationDump { bucket, data });
        }
    }

    fn signal(
        &mut self,
        conn: ConnId,
        api_key: Option<&str>,
        event: Option<SignalEvent>,
        now_ms: u64,
    ) {
        if !self.authorized(api_key) {
            self.respond(
                conn,
                None,
                Outcome::Err(WireError::Text(NOT_AUTHORIZED_EVENT.into())),
            );
            return;
        }
        let Some(event) = event else {
            self.bad_request(conn, "event-broadcast needs an event object");
            return;
        };
        let client_id = self.client_id(conn).map(String::from);
        self.broadcast(
            Some(conn),
            &Change {
                bucket: &event.bucket,
                key: &event.key,
                timestamp: Some(iso8601(now_ms)),
                origin_request_id: None,
                client_id,
                is_deleted: false,
                value: event.value.as_ref(),
            },
        );
    }

    fn datastore_operation(
        &mut self,
        conn: ConnId,
        api_key: Option<&str>,
        req: Request,
        now_ms: u64,
    ) {
        let read_only = matches!(req.op, Op::Read { .. } | Op::Filter { .. });
        let allowed = if read_only {
            self.may_read(api_key)
        } else {
            self.authorized(api_key)
        };
        if !allowed {
            self.respond(
                conn,
                req.id,
                Outcome::Err(WireError::Text(NOT_AUTHORIZED.into())),
            );
            return;
        }
        let Request { id, bucket, op } = req;
        let client_id = self.client_id(conn).map(String::from);
        let outcome = match op {
            Op::Read { key: None } => self.list_outcome(&bucket, None, false),
            Op::Read { key: Some(k) } if k.is_empty() => self.list_outcome(&bucket, None, false),
            Op::Read { key: Some(k) } => match self.store.get(&bucket, &k) {
                Ok(r) => Outcome::Ok {
                    value: r.value,
                    location: None,
                },
                Err(e) => Outcome::Err(store_error(&e)),
            },
            Op::Filter { keys_only, filter } => {
                self.list_outcome(&bucket, filter.as_deref(), keys_only)
            }
            Op::Write {
                key,
                value,
                fail_if_exists,
                expire,
            } => {
                let session = expire.as_deref() == Some(EXPIRE_SESSION);
                let options = WriteOptions {
                    fail_if_exists,
                    expire: expire.map_or(Expire::Absent, Expire::Text),
                };
                match self
                    .store
                    .write(&bucket, key.as_deref(), value.clone(), options, now_ms)
                {
                    Ok(key) => {
                        self.settle_session(conn, &bucket, &key, session);
                        self.broadcast(
                            Some(conn),
                            &Change {
                                bucket: &bucket,
                                key: &key,
                                timestamp: Some(iso8601(now_ms)),
                                origin_request_id: id.clone(),
                                client_id,
                                is_deleted: false,
                                value: value.as_ref(),
                            },
                        );
                        Outcome::Ok {
                            value: None,
                            location: Some(format!("/_data/{bucket}/{key}")),
                        }
                    }
                    Err(e) => Outcome::Err(store_error(&e)),
                }
            }
            Op::Patch {
                key,
                patch,
                remove_data_from_reply,
            } => {
                let key = key.unwrap_or_default();
                match self.apply_patch(&bucket, &key, patch.as_ref(), now_ms) {
                    Ok(doc) => {
                        // The reference's patch events carry neither a
                        // timestamp nor the request id; kept for parity.
                        self.broadcast(
                            Some(conn),
                            &Change {
                                bucket: &bucket,
                                key: &key,
                                timestamp: None,
                                origin_request_id: Some(Value::Null),
                                client_id,
                                is_deleted: false,
                                value: Some(&doc),
                            },
                        );
                        let value = if remove_data_from_reply {
                            Value::Object(serde_json::Map::new())
                        } else {
                            doc
                        };
                        Outcome::Ok {
                            value: Some(value),
                            location: None,
                        }
                    }
                    Err(e) => Outcome::Err(store_error(&e)),
                }
            }
            Op::Remove { key } => {
                let key = key.unwrap_or_default();
                match self.store.remove(&bucket, &key) {
                    Ok(_) => {
                        self.clear_session(&bucket, &key);
                        // A missing key is removed "successfully" and still
                        // announced, as the reference does.
                        let change = Change::deleted(&bucket, &key, id.clone(), client_id);
                        self.broadcast(Some(conn), &change);
                        Outcome::Ok {
                            value: None,
                            location: None,
                        }
                    }
                    Err(e) => Outcome::Err(store_error(&e)),
                }
            }
            Op::Unknown { op } => Outcome::Err(WireError::Object {
                message: Some(format!("Unknown op {op}")),
                name: None,
                code: Some(codes::UNKNOWN_OP.into()),
            }),
        };
        self.respond(conn, id, outcome);
    }

    fn list_outcome(&self, bucket: &str, prefix: Option<&str>, keys_only: bool) -> Outcome {
        let items = self.store.list(bucket, prefix, keys_only);
        Outcome::Ok {
            value: Some(serde_json::to_value(items).unwrap_or(Value::Array(Vec::new()))),
            location: None,
        }
    }

    fn apply_patch(
        &mut self,
        bucket: &str,
        key: &str,
        patch: Option<&Value>,
        now_ms: u64,
    ) -> Result<Value, StoreError> {
        // Look the key up first so that a missing key is "not found", not an
        // invalid patch, whatever the patch.
        self.store.get(bucket, key)?;
        let ops = parse_patch(patch.unwrap_or(&Value::Null))?;
        self.store.patch(bucket, key, &ops, now_ms)
    }

    /// After a successful write of `(bucket, key)` by `conn`: a session
    /// write makes `conn` one of its holders; any other write makes it
    /// permanent.
    fn settle_session(&mut self, conn: ConnId, bucket: &str, key: &str, session: bool) {
        if !session {
            self.clear_session(bucket, key);
            return;
        }
        let id = (bucket.to_owned(), key.to_owned());
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session_keys.insert(id.clone());
            self.sessions.entry(id).or_default().insert(conn);
        }
    }

    /// `(bucket, key)` is no longer a session key.
    fn clear_session(&mut self, bucket: &str, key: &str) {
        let id = (bucket.to_owned(), key.to_owned());
        if let Some(holders) = self.sessions.remove(&id) {
            for h in holders {
                if let Some(c) = self.conns.get_mut(&h) {
                    c.session_keys.remove(&id);
                }
            }
        }
    }

    /// No key of `bucket` is a session key any more (the bucket was dropped).
    fn clear_bucket_sessions(&mut self, bucket: &str) {
        let ids: Vec<(String, String)> = self
            .sessions
            .range((bucket.to_owned(), String::new())..)
            .take_while(|((b, _), _)| b == bucket)
            .map(|(id, _)| id.clone())
            .collect();
        for (b, k) in ids {
            self.clear_session(&b, &k);
        }
    }

    /// Sends `change` to every connection subscribed to its `(bucket, key)`
    /// except `origin`; the frame is encoded at most twice (with and
    /// without the value).
    fn broadcast(&mut self, origin: Option<ConnId>, change: &Change<'_>) {
        let recipients = self.subs.matching(change.bucket, change.key);
        let mut with_value: Option<SharedText> = None;
        let mut without_value: Option<SharedText> = None;
        for to in recipients {
            if Some(to) == origin {
                continue;
            }
            let Some(c) = self.conns.get(&to) else {
                continue;
            };
            let wants_value = c.send_values || c.replication;
            let slot = if wants_value {
                &mut with_value
            } else {
                &mut without_value
            };
            let text = slot
                .get_or_insert_with(|| encode_change(change, wants_value))
                .clone();
            self.outputs.push_back(Output::Text { conn: to, text });
        }
    }

    fn send(&mut self, conn: ConnId, msg: &ServerMessage) {
        self.outputs.push_back(Output::Text {
            conn,
            text: Arc::from(msg.encode()),
        });
    }

    fn respond(&mut self, conn: ConnId, id: Option<Value>, outcome: Outcome) {
        self.send(conn, &ServerMessage::Response(Response { id, outcome }));
    }

    fn bad_request(&mut self, conn: ConnId, message: &str) {
        self.respond(
            conn,
            None,
            Outcome::Err(WireError::Object {
                message: Some(message.into()),
                name: None,
                code: Some(codes::BAD_REQUEST.into()),
            }),
        );
    }
}

fn encode_change(change: &Change<'_>, with_value: bool) -> SharedText {
    let event = ChangeEvent {
        bucket: change.bucket.to_owned(),
        key: change.key.to_owned(),
        timestamp: change.timestamp.clone(),
        origin_request_id: change.origin_request_id.clone(),
        client_id: change.client_id.clone(),
        is_deleted: change.is_deleted,
        value: if with_value {
            change.value.cloned()
        } else {
            None
        },
    };
    Arc::from(ServerMessage::Event(event).encode())
}

/// The typed error object of a store failure.
fn store_error(e: &StoreError) -> WireError {
    let (name, code) = match e {
        StoreError::BucketNotFound { .. } | StoreError::KeyNotFound { .. } => {
            (None, codes::NOT_FOUND)
        }
        StoreError::AlreadyExists { .. } => (None, codes::EXISTS),
        StoreError::InvalidBucket { .. } => (None, codes::INVALID_BUCKET),
        // Keep the reference's `name` so its clients still classify it.
        StoreError::Patch(p) => (Some(p.kind.name().to_owned()), codes::INVALID_PATCH),
    };
    WireError::Object {
        message: Some(e.to_string()),
        name,
        code: Some(code.to_owned()),
    }
}

/// Compares in time that depends only on the length of `expected`, so the
/// apiKey cannot be guessed byte by byte from answer times.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(0) ^ e;
    }
    std::hint::black_box(diff) == 0
}
