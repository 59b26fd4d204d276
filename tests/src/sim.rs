//! A deterministic simulated world: N client cores, one server hub, a
//! virtual clock and a simulated network between them.
//!
//! No threads, no real time: [`World::step`] always advances to the earliest
//! pending delivery or client deadline. Everything derives from the seed, so
//! a run is reproducible from it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cachearoo_core::rng::Prng;
use cachearoo_core::wire::ClientMessage;
use cachearoo_core::{
    Client, Config, Event, HttpRequest, HttpResponse, Instant, OpId, SocketId, Transmit,
};
use cachearoo_server::hub::{ConnId, Output, RestRequest};
use cachearoo_server::{Hub, HubConfig};

use crate::store::RecordingStore;

/// Wall-clock time (ms since the Unix epoch) of the simulation's instant zero.
pub const EPOCH_MS: u64 = 1_796_313_875_000;

/// Network behaviour of the world.
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    /// One-way latency of every frame and HTTP leg.
    pub latency: Duration,
    /// Extra random delay in `0..=jitter` per connection (frames on one
    /// connection stay in order, as on TCP).
    pub jitter: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
        }
    }
}

#[derive(Debug)]
enum Delivery {
    /// The result of a dial: the hub accepted (`Some(conn)`) or refused.
    Dialled {
        client: usize,
        socket: SocketId,
    },
    ToHubText {
        conn: ConnId,
        text: String,
    },
    ToHubBinary {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    ToHubClose {
        conn: ConnId,
    },
    ToClientText {
        client: usize,
        socket: SocketId,
        text: String,
    },
    ToClientBinary {
        client: usize,
        socket: SocketId,
        bytes: Vec<u8>,
    },
    ToClientClosed {
        client: usize,
        socket: SocketId,
    },
    HttpToHub {
        client: usize,
        op: OpId,
        request: HttpRequest,
    },
    HttpToClient {
        client: usize,
        op: OpId,
        response: HttpResponse,
    },
    /// The server side of a half-open connection gives up (WebSocket ping
    /// timeout of the network front).
    HubSideTimeout {
        conn: ConnId,
    },
}

/// How long the server keeps a silent (half-open) connection: the network
/// front pings every 20 s and drops a connection that does not answer in 10 s.
pub const SERVER_PING_TIMEOUT: Duration = Duration::from_secs(30);

/// One simulated client.
#[derive(Debug)]
pub struct SimClient {
    /// The client core under test.
    pub core: Client,
    /// Events the core emitted, in order (tests drain or inspect them).
    pub events: Vec<Event>,
    /// The live connection: our socket and the hub's connection id.
    link: Option<(SocketId, ConnId)>,
    /// HTTP requests the core cancelled (their answers are dropped).
    cancelled: BTreeSet<OpId>,
    /// Arrival time of the last frame sent to this client (keeps order).
    last_arrival_to_client: Instant,
    /// Arrival time of the last frame sent by this client to the hub.
    last_arrival_to_hub: Instant,
}

/// The simulated world.
pub struct World {
    /// Virtual time.
    pub now: Instant,
    /// The server's hub.
    pub hub: Hub<RecordingStore>,
    /// The hub's store (shared handle: its log survives restarts).
    pub store: RecordingStore,
    /// The clients, by index.
    pub clients: Vec<SimClient>,
    net: NetConfig,
    rng: Prng,
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    next_conn: ConnId,
    conn_owner: BTreeMap<ConnId, (usize, SocketId)>,
    server_up: bool,
    /// Dials are refused while REST still works.
    refuse_ws: bool,
    /// Connections whose frames are silently lost (half-open links).
    blackholed: BTreeSet<ConnId>,
    /// Every text frame a client sent to the hub, in arrival order (for
    /// wire-shape checks).
    pub frames_to_hub: Vec<(usize, String)>,
    /// When each client sent each datastore operation (over WebSocket or
    /// REST): `(client, op, time)`, in send order.
    pub sends: Vec<(usize, OpId, Instant)>,
}

impl World {
    /// An empty world whose randomness derives from `seed`.
    pub fn new(seed: u64, net: NetConfig) -> World {
        let store = RecordingStore::default();
        World {
            now: Instant::ZERO,
            hub: Hub::new(HubConfig::new("sim-server"), store.share_data()),
            store,
            clients: Vec::new(),
            net,
            rng: Prng::new(seed),
            queue: BTreeMap::new(),
            seq: 0,
            next_conn: 0,
            conn_owner: BTreeMap::new(),
            server_up: true,
            refuse_ws: false,
            blackholed: BTreeSet::new(),
            frames_to_hub: Vec::new(),
            sends: Vec::new(),
        }
    }

    /// Adds a client with `config`; its core is seeded from the world's seed.
    pub fn add_client(&mut self, config: Config) -> usize {
        let seed = self.rng.next_u64();
        let core = Client::new(config, seed, self.now);
        self.clients.push(SimClient {
            core,
            events: Vec::new(),
            link: None,
            cancelled: BTreeSet::new(),
            last_arrival_to_client: self.now,
            last_arrival_to_hub: self.now,
        });
        let i = self.clients.len() - 1;
        self.pump_client(i);
        i
    }

    /// Wall-clock milliseconds for the hub.
    pub fn now_ms(&self) -> u64 {
        EPOCH_MS + u64::try_from(self.now.since_epoch().as_millis()).unwrap_or(u64::MAX)
    }

    fn delay(&mut self) -> Duration {
        let jitter_ms = u64::try_from(self.net.jitter.as_millis()).unwrap_or(0);
        self.net.latency + Duration::from_millis(self.rng.below_inclusive(jitter_ms))
    }

    fn schedule(&mut self, at: Instant, d: Delivery) {
        self.seq += 1;
        self.queue.insert((at, self.seq), d);
    }

    fn send_to_hub(&mut self, client: usize, d: Delivery) {
        let at = (self.now + self.delay()).max(self.clients[client].last_arrival_to_hub);
        self.clients[client].last_arrival_to_hub = at;
        self.schedule(at, d);
    }

    fn send_to_client(&mut self, client: usize, d: Delivery) {
        let at = (self.now + self.delay()).max(self.clients[client].last_arrival_to_client);
        self.clients[client].last_arrival_to_client = at;
        self.schedule(at, d);
    }

    /// Drains a client's outputs into the network.
    pub fn pump_client(&mut self, i: usize) {
        while let Some(t) = self.clients[i].core.poll_transmit() {
            match t {
                Transmit::Connect { socket, .. } => {
                    self.send_to_hub(i, Delivery::Dialled { client: i, socket })
                }
                Transmit::Text { socket, text } => {
                    if let Ok(ClientMessage::DatastoreOperation {
                        request: Some(r), ..
                    }) = ClientMessage::decode(&text)
                    {
                        let id =
                            r.id.as_ref()
                                .and_then(|v| v.as_str())
                                .and_then(|s| s.parse().ok());
                        if let Some(id) = id {
                            self.sends.push((i, OpId(id), self.now));
                        }
                    }
                    if let Some((s, conn)) = self.clients[i].link {
                        if s == socket {
                            self.send_to_hub(i, Delivery::ToHubText { conn, text });
                        }
                    }
                }
                Transmit::Binary { socket, bytes } => {
                    if let Some((s, conn)) = self.clients[i].link {
                        if s == socket {
                            self.send_to_hub(i, Delivery::ToHubBinary { conn, bytes });
                        }
                    }
                }
                Transmit::Close { socket } => {
                    if let Some((s, conn)) = self.clients[i].link {
                        if s == socket {
                            self.clients[i].link = None;
                            self.send_to_hub(i, Delivery::ToHubClose { conn });
                        }
                    }
                }
                Transmit::Http { op, request } => self.send_to_hub(
                    i,
                    Delivery::HttpToHub {
                        client: i,
                        op,
                        request,
                    },
                ),
                Transmit::CancelHttp { op } => {
                    self.clients[i].cancelled.insert(op);
                }
            }
        }
        while let Some(e) = self.clients[i].core.poll_event() {
            self.clients[i].events.push(e);
        }
    }

    fn pump_hub(&mut self) {
        while let Some(out) = self.hub.poll_output() {
            match out {
                Output::Text { conn, text } => {
                    if let Some(&(client, socket)) = self.conn_owner.get(&conn) {
                        self.send_to_client(
                            client,
                            Delivery::ToClientText {
                                client,
                                socket,
                                text: text.to_string(),
                            },
                        );
                    }
                }
                Output::Binary { conn, bytes } => {
                    if let Some(&(client, socket)) = self.conn_owner.get(&conn) {
                        self.send_to_client(
                            client,
                            Delivery::ToClientBinary {
                                client,
                                socket,
                                bytes: bytes.to_vec(),
                            },
                        );
                    }
                }
                Output::Close { conn, .. } => {
                    if let Some((client, socket)) = self.conn_owner.remove(&conn) {
                        self.send_to_client(client, Delivery::ToClientClosed { client, socket });
                    }
                }
            }
        }
    }

    /// The earliest instant at which something happens.
    pub fn next_time(&self) -> Option<Instant> {
        let net = self.queue.keys().next().map(|(t, _)| *t);
        let clients = self
            .clients
            .iter()
            .filter_map(|c| c.core.poll_timeout())
            .min();
        [net, clients].into_iter().flatten().min()
    }

    /// Advances to the next event and handles everything due then.
    /// Returns `false` when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(t);
        let now = self.now;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let d = entry.remove();
            self.deliver(d);
        }
        for i in 0..self.clients.len() {
            if self.clients[i]
                .core
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.clients[i].core.handle_timeout(now);
            }
            self.pump_client(i);
        }
        true
    }

    /// Runs until `until` (virtual time) or until nothing is left.
    pub fn run_until(&mut self, until: Instant) {
        while self.next_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until `done` holds (checked after every step) or `limit` of
    /// virtual time passed; returns whether `done` held.
    pub fn run_until_cond(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut World) -> bool,
    ) -> bool {
        let until = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            match self.next_time() {
                Some(t) if t <= until => {
                    self.step();
                }
                _ => return done(self),
            }
        }
    }

    /// Whether `d` travels on a half-open link (and is lost).
    fn lost(&self, d: &Delivery) -> bool {
        let conn_of_client = |client: usize, socket: SocketId| {
            self.conn_owner
                .iter()
                .find(|(_, (c, s))| *c == client && *s == socket)
                .map(|(conn, _)| *conn)
        };
        let conn = match d {
            Delivery::ToHubText { conn, .. }
            | Delivery::ToHubBinary { conn, .. }
            | Delivery::ToHubClose { conn } => Some(*conn),
            Delivery::ToClientText { client, socket, .. }
            | Delivery::ToClientBinary { client, socket, .. }
            | Delivery::ToClientClosed { client, socket } => conn_of_client(*client, *socket),
            _ => None,
        };
        conn.is_some_and(|c| self.blackholed.contains(&c))
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        let now_ms = self.now_ms();
        self.store.set_clock(now_ms);
        if self.lost(&d) {
            return;
        }
        match d {
            Delivery::HubSideTimeout { conn } => {
                if self.blackholed.remove(&conn) && self.conn_owner.remove(&conn).is_some() {
                    self.hub.disconnect(conn, now_ms);
                    self.pump_hub();
                }
            }
            Delivery::Dialled { client, socket } => {
                if !self.server_up || self.refuse_ws {
                    self.clients[client].core.handle_socket_closed(now, socket);
                } else {
                    self.next_conn += 1;
                    let conn = self.next_conn;
                    let id = self.clients[client].core.config().client_id.clone();
                    match self.hub.connect(conn, id, now_ms) {
                        Ok(()) => {
                            self.conn_owner.insert(conn, (client, socket));
                            self.clients[client].link = Some((socket, conn));
                            self.clients[client].core.handle_socket_opened(now, socket);
                            self.pump_hub();
                        }
                        Err(_) => self.clients[client].core.handle_socket_closed(now, socket),
                    }
                }
                self.pump_client(client);
            }
            Delivery::ToHubText { conn, text } => {
                if let Some(&(client, _)) = self.conn_owner.get(&conn) {
                    self.frames_to_hub.push((client, text.clone()));
                    self.hub.handle_text(conn, &text, now_ms);
                    self.pump_hub();
                }
            }
            Delivery::ToHubBinary { conn, bytes } => {
                if self.conn_owner.contains_key(&conn) {
                    self.hub.handle_binary(conn, &bytes, now_ms);
                    self.pump_hub();
                }
            }
            Delivery::ToHubClose { conn } => {
                if self.conn_owner.remove(&conn).is_some() {
                    self.hub.disconnect(conn, now_ms);
                    self.pump_hub();
                }
            }
            Delivery::ToClientText {
                client,
                socket,
                text,
            } => {
                self.clients[client].core.handle_text(now, socket, &text);
                self.pump_client(client);
            }
            Delivery::ToClientBinary {
                client,
                socket,
                bytes,
            } => {
                self.clients[client].core.handle_binary(now, socket, &bytes);
                self.pump_client(client);
            }
            Delivery::ToClientClosed { client, socket } => {
                if self.clients[client].link.is_some_and(|(s, _)| s == socket) {
                    self.clients[client].link = None;
                }
                self.clients[client].core.handle_socket_closed(now, socket);
                self.pump_client(client);
            }
            Delivery::HttpToHub {
                client,
                op,
                request,
            } => {
                let response = if self.server_up {
                    let mut req =
                        RestRequest::new(request.method.as_str(), &request.path_and_query);
                    for (n, v) in &request.headers {
                        req = req.header(n, v);
                    }
                    if let Some(b) = &request.body {
                        req = req.body(b.clone());
                    }
                    let r = self.hub.handle_rest(&req, now_ms);
                    self.pump_hub();
                    Some(HttpResponse {
                        status: r.status,
                        headers: r
                            .headers
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.clone()))
                            .collect(),
                        body: r.body,
                    })
                } else {
                    None
                };
                match response {
                    Some(response) => self.send_to_client(
                        client,
                        Delivery::HttpToClient {
                            client,
                            op,
                            response,
                        },
                    ),
                    None => {
                        if !self.clients[client].cancelled.remove(&op) {
                            self.clients[client].core.handle_http_failed(
                                now,
                                op,
                                "connection refused",
                            );
                            self.pump_client(client);
                        }
                    }
                }
            }
            Delivery::HttpToClient {
                client,
                op,
                response,
            } => {
                if !self.clients[client].cancelled.remove(&op) {
                    self.clients[client]
                        .core
                        .handle_http_response(now, op, &response);
                    self.pump_client(client);
                }
            }
        }
    }

    /// Runs until every client is connected (or `limit` passes).
    pub fn connect_all(&mut self) -> bool {
        self.run_until_cond(Duration::from_secs(30), |w| {
            w.clients.iter().all(|c| c.core.is_connected())
        })
    }

    /// Takes the events client `i` emitted so far.
    pub fn take_events(&mut self, i: usize) -> Vec<Event> {
        std::mem::take(&mut self.clients[i].events)
    }

    /// Drops every connection of client `i` abruptly (both sides see it).
    pub fn drop_connection(&mut self, i: usize) {
        if let Some((socket, conn)) = self.clients[i].link.take() {
            let now_ms = self.now_ms();
            self.store.set_clock(now_ms);
            self.blackholed.remove(&conn);
            self.conn_owner.remove(&conn);
            self.hub.disconnect(conn, now_ms);
            self.pump_hub();
            self.clients[i].core.handle_socket_closed(self.now, socket);
            self.pump_client(i);
        }
    }

    /// Stops the server: every connection drops; dials and REST fail until
    /// [`World::start_server`].
    pub fn stop_server(&mut self) {
        self.server_up = false;
        for i in 0..self.clients.len() {
            self.drop_connection(i);
        }
    }

    /// Starts the server again.
    pub fn start_server(&mut self) {
        self.server_up = true;
    }

    /// Whether the server is up.
    pub fn server_up(&self) -> bool {
        self.server_up
    }

    /// Restarts the server at once: every connection vanishes (clients see
    /// their sockets close) and a new hub starts over the same data
    /// (`keep_data`) or an empty store.
    pub fn restart_server(&mut self, keep_data: bool) {
        self.stop_server();
        let store = if keep_data {
            self.store.share_data()
        } else {
            self.store.fresh_data()
        };
        self.store = store.share_data();
        self.hub = Hub::new(HubConfig::new("sim-server"), store);
        self.conn_owner.clear();
        self.blackholed.clear();
        self.start_server();
    }

    /// Refuses (or again accepts) WebSocket dials; REST keeps working.
    pub fn set_refuse_ws(&mut self, refuse: bool) {
        self.refuse_ws = refuse;
    }

    /// Makes client `i`'s link half-open: from now on its frames are lost in
    /// both directions without either side being told; the server side
    /// gives up after [`SERVER_PING_TIMEOUT`], the client after its missed
    /// pongs.
    pub fn half_open(&mut self, i: usize) {
        if let Some((_, conn)) = self.clients[i].link {
            if self.blackholed.insert(conn) {
                let at = self.now + SERVER_PING_TIMEOUT;
                self.schedule(at, Delivery::HubSideTimeout { conn });
            }
        }
    }

    /// Whether nothing is in flight on the network.
    pub fn network_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// The hub connection of client `i`, when it has one that is not half-open.
    pub fn hub_conn(&self, i: usize) -> Option<ConnId> {
        self.clients[i]
            .link
            .map(|(_, c)| c)
            .filter(|c| !self.blackholed.contains(c) && self.conn_owner.contains_key(c))
    }
}
