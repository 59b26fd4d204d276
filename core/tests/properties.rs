//! Property tests: codec round trips, and random input sequences into the
//! client state machine checking its invariants.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cachearoo_core::wire::{
    BinaryHeader, ChangeEvent, ClientMessage, Op, Outcome, Request, Response, ServerMessage,
    SignalEvent, Subscription, WireError,
};
use cachearoo_core::{
    Client, Config, Event, HttpResponse, Instant, ListenerId, OpId, OpOptions, Operation, SocketId,
    Transmit,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("*".to_string()), "[a-z0-9 /_.-]{0,12}", "\\PC{0,8}"]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "\\PC{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn id_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        any::<u32>().prop_map(|n| Some(json!(n))),
        "[a-z0-9-]{0,8}".prop_map(|s| Some(Value::String(s))),
        Just(Some(Value::Null)),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of("\\PC{0,10}")
}

fn wire_error() -> impl Strategy<Value = WireError> {
    prop_oneof![
        Just(WireError::Empty),
        "\\PC{0,12}".prop_map(WireError::Text),
        (opt_text(), opt_text(), opt_text())
            .prop_filter("some field", |(a, b, c)| a.is_some()
                || b.is_some()
                || c.is_some())
            .prop_map(|(message, name, code)| WireError::Object {
                message,
                name,
                code
            }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        "\\PC{1,20}".prop_map(|server_id| ServerMessage::Greeting { server_id }),
        "\\PC{0,20}".prop_map(|time| ServerMessage::Pong { time }),
        (id_value(), prop::option::of(json_value()), opt_text()).prop_map(
            |(id, value, location)| ServerMessage::Response(Response {
                id,
                outcome: Outcome::Ok { value, location }
            })
        ),
        (id_value(), wire_error()).prop_map(|(id, e)| ServerMessage::Response(Response {
            id,
            outcome: Outcome::Err(e)
        })),
        (
            name(),
            name(),
            opt_text(),
            id_value(),
            opt_text(),
            any::<bool>(),
            prop::option::of(json_value())
        )
            .prop_map(
                |(bucket, key, timestamp, origin_request_id, client_id, is_deleted, value)| {
                    ServerMessage::Event(ChangeEvent {
                        bucket,
                        key,
                        timestamp,
                        origin_request_id,
                        client_id,
                        is_deleted,
                        value,
                    })
                }
            ),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    let op = prop_oneof![
        opt_text().prop_map(|key| Op::Read { key }),
        (any::<bool>(), opt_text())
            .prop_map(|(keys_only, filter)| Op::Filter { keys_only, filter }),
        (
            opt_text(),
            prop::option::of(json_value()),
            any::<bool>(),
            opt_text()
        )
            .prop_map(|(key, value, fail_if_exists, expire)| Op::Write {
                key,
                value,
                fail_if_exists,
                expire
            }),
        (opt_text(), prop::option::of(json_value()), any::<bool>()).prop_map(|(key, patch, r)| {
            Op::Patch {
                key,
                patch,
                remove_data_from_reply: r,
            }
        }),
        opt_text().prop_map(|key| Op::Remove { key }),
    ];
    let subs = prop::collection::vec(
        (name(), name()).prop_map(|(bucket, key)| Subscription { bucket, key }),
        0..4,
    );
    prop_oneof![
        (opt_text(), id_value(), name(), op).prop_map(|(api_key, id, bucket, op)| {
            ClientMessage::DatastoreOperation {
                api_key,
                // A present-but-null id decodes as Some(Null): keep it.
                request: Some(Request { id, bucket, op }),
            }
        }),
        (opt_text(), subs, any::<bool>()).prop_map(|(api_key, events, send_values)| {
            ClientMessage::RegisterEvents {
                api_key,
                events: Some(events),
                send_values,
            }
        }),
        (opt_text(), name(), name(), prop::option::of(json_value())).prop_map(
            |(api_key, bucket, key, value)| {
                ClientMessage::EventBroadcast {
                    api_key,
                    event: Some(SignalEvent { bucket, key, value }),
                }
            }
        ),
        Just(ClientMessage::Ping),
    ]
}

proptest! {
    #[test]
    fn server_messages_round_trip(msg in server_message()) {
        let decoded = ServerMessage::decode(&msg.encode()).unwrap();
        prop_assert_eq!(decoded, msg);
    }

    #[test]
    fn client_messages_round_trip(msg in client_message()) {
        let decoded = ClientMessage::decode(&msg.encode()).unwrap();
        prop_assert_eq!(decoded, msg);
    }

    #[test]
    fn binary_headers_round_trip(kind in any::<u8>(), b in "\\PC{0,9}", k in "\\PC{0,9}", a in "\\PC{0,9}",
                                 payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let h = BinaryHeader { kind, bucket: b, key: k, api_key: a };
        let frame = h.encode(&payload).unwrap();
        let (back, p) = BinaryHeader::decode(&frame).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(p, &payload[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = BinaryHeader::decode(&bytes);
        let _ = ServerMessage::decode_slice(&bytes);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = ClientMessage::decode(s);
        }
    }
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Submit { op: u8, key: u8, force_http: bool },
    AddListener { bucket: u8, key: u8, values: bool },
    RemoveListener(u8),
    Signal,
    Ping,
    OpenLatest,
    Greet,
    CloseSocket,
    AnswerText { pick: u8, error: bool },
    AnswerHttp { pick: u8, status: u16 },
    FailHttp(u8),
    Garbage(u8),
    Event { bucket: u8, key: u8 },
    Advance(u16),
    Close,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..5, 0u8..3, any::<bool>()).prop_map(|(op, key, force_http)| Step::Submit { op, key, force_http }),
        2 => (0u8..3, 0u8..3, any::<bool>()).prop_map(|(bucket, key, values)| Step::AddListener { bucket, key, values }),
        1 => any::<u8>().prop_map(Step::RemoveListener),
        1 => Just(Step::Signal),
        1 => Just(Step::Ping),
        2 => Just(Step::OpenLatest),
        2 => Just(Step::Greet),
        1 => Just(Step::CloseSocket),
        4 => (any::<u8>(), any::<bool>()).prop_map(|(pick, error)| Step::AnswerText { pick, error }),
        3 => (any::<u8>(), prop::sample::select(vec![200u16, 201, 401, 404, 412, 500])).prop_map(|(pick, status)| Step::AnswerHttp { pick, status }),
        1 => any::<u8>().prop_map(Step::FailHttp),
        1 => any::<u8>().prop_map(Step::Garbage),
        2 => (0u8..3, 0u8..3).prop_map(|(bucket, key)| Step::Event { bucket, key }),
        3 => (0u16..15_000).prop_map(Step::Advance),
    ]
}

const NAMES: [&str; 3] = ["*", "b", "c"];

/// The driver's view, used to check the client's invariants.
#[derive(Default)]
struct World {
    now: Instant,
    latest: Option<SocketId>,
    opened: BTreeSet<SocketId>,
    greeted: Option<SocketId>,
    submitted: BTreeSet<OpId>,
    completed: BTreeMap<OpId, u32>,
    ws_inflight: BTreeMap<OpId, SocketId>,
    http_inflight: BTreeSet<OpId>,
    listeners: Vec<ListenerId>,
    expect_registration: bool,
}

impl World {
    fn drain(&mut self, c: &mut Client) -> Result<(), TestCaseError> {
        while let Some(t) = c.poll_transmit() {
            match t {
                Transmit::Connect { socket, .. } => self.latest = Some(socket),
                Transmit::Text { socket, text } => {
                    prop_assert_eq!(
                        Some(socket),
                        self.greeted,
                        "frame on a socket that is not connected"
                    );
                    let msg = ClientMessage::decode(&text).unwrap();
                    match msg {
                        ClientMessage::DatastoreOperation {
                            request: Some(r), ..
                        } => {
                            let id: u64 =
                                r.id.as_ref()
                                    .and_then(Value::as_str)
                                    .unwrap()
                                    .parse()
                                    .unwrap();
                            self.ws_inflight.insert(OpId(id), socket);
                        }
                        ClientMessage::RegisterEvents {
                            events,
                            send_values,
                            ..
                        } => {
                            let reg = c.registration();
                            prop_assert_eq!(events.unwrap(), reg.events);
                            prop_assert_eq!(send_values, reg.send_values);
                            self.expect_registration = false;
                        }
                        _ => {}
                    }
                }
                Transmit::Binary { socket, .. } => prop_assert_eq!(Some(socket), self.greeted),
                Transmit::Close { socket } => {
                    if self.greeted == Some(socket) {
                        self.greeted = None;
                    }
                }
                Transmit::Http { op, .. } => {
                    self.ws_inflight.remove(&op);
                    self.http_inflight.insert(op);
                }
                Transmit::CancelHttp { op } => {
                    prop_assert!(self.http_inflight.remove(&op));
                }
            }
        }
        prop_assert!(
            !self.expect_registration,
            "registration not re-sent after the greeting"
        );
        while let Some(e) = c.poll_event() {
            match e {
                Event::Completed { op, .. } => {
                    *self.completed.entry(op).or_default() += 1;
                    self.ws_inflight.remove(&op);
                    self.http_inflight.remove(&op);
                }
                Event::Disconnected { .. } => self.greeted = None,
                Event::Change { listeners, event } => {
                    prop_assert!(!listeners.is_empty());
                    prop_assert!(
                        listeners.iter().all(|l| self.listeners.contains(l)),
                        "{:?}",
                        event
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn pick<T: Copy>(items: impl IntoIterator<Item = T>, n: u8) -> Option<T> {
    let v: Vec<T> = items.into_iter().collect();
    (!v.is_empty()).then(|| v[usize::from(n) % v.len()])
}

fn run(steps: Vec<Step>, seed: u64) -> Result<(), TestCaseError> {
    let mut c = Client::new(Config::default(), seed, Instant::ZERO);
    let mut w = World::default();
    w.drain(&mut c)?;
    for s in steps {
        let now = w.now;
        match s {
            Step::Submit {
                op,
                key,
                force_http,
            } => {
                let key = ["k", "", "a b"][usize::from(key)].to_string();
                let op = match op {
                    0 => Operation::Read { key },
                    1 => Operation::List {
                        keys_only: true,
                        filter: None,
                    },
                    2 => Operation::Write {
                        key,
                        value: Some(json!({"v":1})),
                        fail_if_exists: force_http,
                        expire_session: false,
                    },
                    3 => Operation::Patch {
                        key,
                        patch: json!([]),
                        remove_data_from_reply: false,
                    },
                    _ => Operation::Remove { key },
                };
                let id = c.submit(
                    now,
                    op,
                    OpOptions {
                        bucket: None,
                        force_http,
                    },
                );
                prop_assert!(w.submitted.insert(id));
            }
            Step::AddListener {
                bucket,
                key,
                values,
            } => {
                w.listeners.push(c.add_listener(
                    now,
                    NAMES[usize::from(bucket)],
                    NAMES[usize::from(key)],
                    values,
                ));
            }
            Step::RemoveListener(n) => {
                if let Some(id) = pick(w.listeners.iter().copied(), n) {
                    prop_assert!(c.remove_listener(now, id));
                    w.listeners.retain(|l| *l != id);
                }
            }
            Step::Signal => {
                let r = c.signal_event(now, "b", "k", Some(json!(1)));
                prop_assert_eq!(r.is_ok(), w.greeted.is_some());
            }
            Step::Ping => {
                let r = c.ping(now);
                prop_assert_eq!(r.is_ok(), w.greeted.is_some());
            }
            Step::OpenLatest => {
                if let Some(s) = w.latest {
                    w.opened.insert(s);
                    c.handle_socket_opened(now, s);
                }
            }
            Step::Greet => {
                if let Some(s) = w.latest.filter(|s| w.opened.contains(s)) {
                    let was = c.is_connected();
                    c.handle_text(now, s, r#"{"id":"srv"}"#);
                    if !was && c.is_connected() {
                        w.greeted = Some(s);
                        w.expect_registration = !c.registration().events.is_empty();
                    }
                }
            }
            Step::CloseSocket => {
                if let Some(s) = w.latest {
                    c.handle_socket_closed(now, s);
                    if w.greeted == Some(s) {
                        w.greeted = None;
                    }
                }
            }
            Step::AnswerText { pick: n, error } => {
                if let Some((op, s)) = pick(w.ws_inflight.iter().map(|(o, s)| (*o, *s)), n) {
                    let body = if error {
                        json!({"id": op.0.to_string(), "error": {}})
                    } else {
                        json!({"id": op.0, "value": [], "location": "/_data/b/k"})
                    };
                    c.handle_text(now, s, &json!({"response": body}).to_string());
                }
            }
            Step::AnswerHttp { pick: n, status } => {
                if let Some(op) = pick(w.http_inflight.iter().copied(), n) {
                    let resp = HttpResponse {
                        status,
                        headers: vec![("Location".into(), "/_data/b/gen_1".into())],
                        body: b"[]".to_vec(),
                    };
                    c.handle_http_response(now, op, &resp);
                }
            }
            Step::FailHttp(n) => {
                if let Some(op) = pick(w.http_inflight.iter().copied(), n) {
                    c.handle_http_failed(now, op, "reset");
                }
            }
            Step::Garbage(n) => {
                if let Some(s) = w.greeted {
                    let junk = [
                        "",
                        "{",
                        "null",
                        "[]",
                        r#"{"response":{"id":"999999"}}"#,
                        r#"{"pong":1}"#,
                    ];
                    c.handle_text(now, s, junk[usize::from(n) % junk.len()]);
                    c.handle_binary(now, s, &vec![n; usize::from(n)]);
                }
            }
            Step::Event { bucket, key } => {
                if let Some(s) = w.greeted {
                    let e = json!({"bucket": NAMES[usize::from(bucket)], "key": NAMES[usize::from(key)], "timestamp": null, "value": 1});
                    c.handle_text(now, s, &e.to_string());
                }
            }
            Step::Advance(ms) => {
                let target = now + Duration::from_millis(u64::from(ms));
                while let Some(t) = c.poll_timeout() {
                    if t > target {
                        break;
                    }
                    w.now = w.now.max(t);
                    c.handle_timeout(w.now);
                    w.drain(&mut c)?;
                }
                w.now = target;
                c.handle_timeout(w.now);
            }
            Step::Close => c.close(now),
        }
        w.drain(&mut c)?;
        // Never more than one completion per operation.
        prop_assert!(w.completed.values().all(|n| *n == 1));
        prop_assert_eq!(
            c.pending_operations(),
            w.submitted.len() - w.completed.len()
        );
    }
    // Everything still pending resolves by its deadline.
    let end = w.now + Duration::from_secs(11);
    while let Some(t) = c.poll_timeout() {
        if t > end {
            break;
        }
        w.now = w.now.max(t);
        c.handle_timeout(w.now);
        w.drain(&mut c)?;
    }
    prop_assert_eq!(c.pending_operations(), 0);
    c.close(w.now);
    w.drain(&mut c)?;
    prop_assert_eq!(
        &w.submitted,
        &w.completed.keys().copied().collect::<BTreeSet<_>>()
    );
    prop_assert!(w.completed.values().all(|n| *n == 1));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn client_invariants_hold_for_random_inputs(steps in prop::collection::vec(step(), 0..120), seed in any::<u64>()) {
        run(steps, seed)?;
    }

    #[test]
    fn client_invariants_hold_with_close(mut steps in prop::collection::vec(step(), 0..60), at in any::<prop::sample::Index>(), seed in any::<u64>()) {
        let i = at.index(steps.len() + 1);
        steps.insert(i, Step::Close);
        run(steps, seed)?;
    }
}

/// A JSON value of any type, for fields the reference reads loosely.
fn loose() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(|n| json!(n)),
        prop_oneof![
            Just("read"),
            Just("write"),
            Just("filter"),
            Just("patch"),
            Just("remove"),
            Just("*"),
            Just("")
        ]
        .prop_map(|s| json!(s)),
        Just(json!({"a": 1})),
        Just(json!([1])),
        Just(json!([{"bucket": "b", "key": "*"}, {"bucket": 1}, 7])),
    ]
}

/// A client frame with the reference's field names holding values of any
/// type (sometimes absent).
fn loose_frame() -> impl Strategy<Value = String> {
    let request = prop::collection::btree_map(
        prop::sample::select(vec![
            "id",
            "op",
            "bucket",
            "key",
            "value",
            "patch",
            "filter",
            "expire",
            "keysOnly",
            "failIfExists",
            "removeDataFromReply",
        ]),
        loose(),
        0..8,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    let msg = prop_oneof![
        Just(json!("datastore-operation")),
        Just(json!("register-events")),
        Just(json!("event-broadcast")),
        Just(json!("ping")),
        Just(json!("register-replication-client")),
        loose(),
    ];
    (
        prop::option::of(msg),
        prop::option::of(loose()),
        prop::option::of(prop_oneof![request, loose()]),
        prop::option::of(loose()),
        prop::option::of(loose()),
        prop::option::of(prop_oneof![
            (loose(), loose(), loose())
                .prop_map(|(b, k, v)| json!({"bucket": b, "key": k, "value": v})),
            loose()
        ]),
    )
        .prop_map(|(msg, api_key, request, events, send_values, event)| {
            let mut o = serde_json::Map::new();
            for (k, v) in [
                ("msg", msg),
                ("apiKey", api_key),
                ("request", request),
                ("events", events),
                ("sendValues", send_values),
                ("event", event),
            ] {
                if let Some(v) = v {
                    o.insert(k.to_string(), v);
                }
            }
            Value::Object(o).to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// The one-pass decoder agrees with the tolerant reference path on
    /// frames whose fields have any type.
    #[test]
    fn fast_client_decode_agrees_with_the_tolerant_path(text in loose_frame()) {
        prop_assert_eq!(ClientMessage::decode(&text), ClientMessage::decode_tolerant(&text));
    }

    #[test]
    fn fast_client_decode_agrees_on_arbitrary_text(text in "\\PC{0,40}") {
        prop_assert_eq!(ClientMessage::decode(&text), ClientMessage::decode_tolerant(&text));
    }
}
