//! Unit tests of the client state machine: lifecycle, every operation over
//! the WebSocket and over REST, listeners, timeouts, backoff, pings.

use std::time::Duration;

use cachearoo_core::wire::{ClientMessage, Op};
use cachearoo_core::{
    Client, Config, DisconnectReason, Event, HttpResponse, Instant, Method, OpError, OpId,
    OpOptions, Operation, ProtocolError, Reply, SendError, SocketId, Transmit,
};
use serde_json::{json, Value};

/// A client with its outputs collected.
struct Harness {
    c: Client,
    now: Instant,
    tx: Vec<Transmit>,
    ev: Vec<Event>,
}

impl Harness {
    fn new(config: Config) -> Harness {
        let c = Client::new(config, 1, Instant::ZERO);
        let mut h = Harness {
            c,
            now: Instant::ZERO,
            tx: vec![],
            ev: vec![],
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(t) = self.c.poll_transmit() {
            self.tx.push(t);
        }
        while let Some(e) = self.c.poll_event() {
            self.ev.push(e);
        }
    }

    fn take_tx(&mut self) -> Vec<Transmit> {
        self.drain();
        std::mem::take(&mut self.tx)
    }

    fn take_ev(&mut self) -> Vec<Event> {
        self.drain();
        std::mem::take(&mut self.ev)
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.c.handle_timeout(self.now);
        self.drain();
    }

    /// Runs timers until `t` (inclusive), in deadline order.
    fn run_until(&mut self, t: Instant) {
        while let Some(next) = self.c.poll_timeout() {
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            self.c.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(t);
    }

    fn connect_socket(&mut self) -> SocketId {
        let tx = self.take_tx();
        let socket = tx
            .iter()
            .find_map(|t| match t {
                Transmit::Connect { socket, .. } => Some(*socket),
                _ => None,
            })
            .expect("a Connect transmit");
        self.c.handle_socket_opened(self.now, socket);
        self.c.handle_text(self.now, socket, r#"{"id":"srv"}"#);
        self.drain();
        socket
    }

    fn texts(&mut self) -> Vec<Value> {
        self.take_tx()
            .into_iter()
            .filter_map(|t| match t {
                Transmit::Text { text, .. } => Some(serde_json::from_str(&text).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn submit(&mut self, op: Operation) -> OpId {
        self.c.submit(self.now, op, OpOptions::default())
    }

    fn completed(&mut self, op: OpId) -> Vec<Result<Reply, OpError>> {
        self.take_ev()
            .into_iter()
            .filter_map(|e| match e {
                Event::Completed { op: o, result } if o == op => Some(result),
                _ => None,
            })
            .collect()
    }
}

fn cfg() -> Config {
    Config {
        enable_ping: false,
        ..Config::default()
    }
}

fn read(k: &str) -> Operation {
    Operation::Read { key: k.into() }
}

#[test]
fn lifecycle_connect_greeting_disconnect_reconnect() {
    let mut h = Harness::new(Config {
        client_id: Some("me".into()),
        ..cfg()
    });
    let tx = h.take_tx();
    assert_eq!(tx.len(), 1);
    let Transmit::Connect { socket, url, .. } = &tx[0] else {
        panic!("{tx:?}")
    };
    assert_eq!(url, "ws://127.0.0.1:4300/?id=me");
    let socket = *socket;
    h.c.handle_socket_opened(h.now, socket);
    assert!(!h.c.is_connected(), "not usable before the greeting");
    h.c.handle_text(h.now, socket, r#"{"id":"srv-1"}"#);
    assert_eq!(
        h.take_ev(),
        vec![Event::Connected {
            server_id: "srv-1".into()
        }]
    );
    assert_eq!(h.c.server_id(), Some("srv-1"));

    h.c.handle_socket_closed(h.now, socket);
    assert_eq!(
        h.take_ev(),
        vec![Event::Disconnected {
            reason: DisconnectReason::SocketClosed
        }]
    );
    // Reconnect after the (jittered) first backoff step: within 125..=250 ms.
    h.advance(Duration::from_millis(124));
    assert!(h.take_tx().is_empty());
    h.advance(Duration::from_millis(126));
    assert!(
        matches!(h.take_tx().as_slice(), [Transmit::Connect { socket: s, .. }] if *s != socket)
    );
}

#[test]
fn stale_socket_facts_are_ignored() {
    let mut h = Harness::new(cfg());
    let s1 = h.connect_socket();
    h.c.handle_socket_closed(h.now, s1);
    h.run_until(h.now + Duration::from_secs(1));
    let s2 = h.connect_socket();
    h.take_ev();
    h.c.handle_socket_closed(h.now, s1);
    h.c.handle_text(h.now, s1, r#"{"pong":"x"}"#);
    assert!(h.take_ev().is_empty());
    assert!(h.c.is_connected());
    assert_ne!(s1, s2);
}

#[test]
fn every_operation_over_the_websocket() {
    let mut h = Harness::new(Config {
        api_key: Some("k".into()),
        ..cfg()
    });
    let s = h.connect_socket();
    h.take_ev();
    let ops = vec![
        (
            read("k1"),
            r#"{"value":{"a":1}}"#,
            Ok(Reply::Value(Some(json!({"a":1})))),
        ),
        (read("kundef"), r#"{}"#, Ok(Reply::Value(None))),
        (
            read(""),
            r#"{"value":[{"key":"x","timestamp":"t","size":1,"content":1}]}"#,
            Ok(Reply::List(vec![cachearoo_core::wire::ListItem {
                key: "x".into(),
                timestamp: Some("t".into()),
                size: 1,
                expire: Default::default(),
                content: Some(json!(1)),
            }])),
        ),
        (
            Operation::List {
                keys_only: true,
                filter: Some("k".into()),
            },
            r#"{"value":[]}"#,
            Ok(Reply::List(vec![])),
        ),
        (
            Operation::Write {
                key: "".into(),
                value: Some(json!("s")),
                fail_if_exists: false,
                expire_session: true,
            },
            r#"{"location":"/_data/default/gen_17"}"#,
            Ok(Reply::Written {
                key: "gen_17".into(),
            }),
        ),
        (
            Operation::Write {
                key: "k".into(),
                value: Some(json!(1)),
                fail_if_exists: true,
                expire_session: false,
            },
            r#"{"error":{}}"#,
            Err(OpError::AlreadyExists),
        ),
        (
            Operation::Patch {
                key: "k".into(),
                patch: json!([{"op":"add","path":"/a","value":1}]),
                remove_data_from_reply: true,
            },
            r#"{"value":{}}"#,
            Ok(Reply::Patched(json!({}))),
        ),
        (
            Operation::Remove { key: "k".into() },
            r#"{}"#,
            Ok(Reply::Removed),
        ),
        (
            read("k"),
            r#"{"error":"Not authorized"}"#,
            Err(OpError::NotAuthorized),
        ),
    ];
    let ids: Vec<OpId> = ops.iter().map(|(op, ..)| h.submit(op.clone())).collect();
    let frames = h.texts();
    assert_eq!(frames.len(), ops.len());
    for (f, id) in frames.iter().zip(&ids) {
        assert_eq!(f["msg"], "datastore-operation");
        assert_eq!(f["apiKey"], "k");
        assert_eq!(f["request"]["id"], json!(id.0.to_string()));
        assert_eq!(f["request"]["bucket"], "default");
    }
    assert_eq!(frames[4]["request"]["expire"], "session");
    assert!(frames[4]["request"].get("key").is_none());
    assert_eq!(frames[5]["request"]["failIfExists"], true);
    assert_eq!(frames[6]["request"]["removeDataFromReply"], true);
    assert_eq!(frames[3]["request"]["op"], "filter");
    // Answer in reverse order: matching is by id, not by order.
    for ((_, body, _), id) in ops.iter().zip(&ids).rev() {
        let mut resp: Value = serde_json::from_str(body).unwrap();
        resp["id"] = json!(id.0.to_string());
        h.c.handle_text(h.now, s, &json!({ "response": resp }).to_string());
    }
    let events = h.take_ev();
    for ((_, _, expected), id) in ops.iter().zip(&ids) {
        let got: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Completed { op, result } if op == id => Some(result.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![expected.clone()], "op {id:?}");
    }
    assert_eq!(h.c.pending_operations(), 0);
}

#[test]
fn numeric_ids_match_too_and_late_answers_are_dropped() {
    let mut h = Harness::new(cfg());
    let s = h.connect_socket();
    h.take_ev();
    let id = h.submit(read("k"));
    h.c.handle_text(
        h.now,
        s,
        &format!(r#"{{"response":{{"id":{},"value":1}}}}"#, id.0),
    );
    assert_eq!(h.completed(id), vec![Ok(Reply::Value(Some(json!(1))))]);
    // Same answer again: already completed, silently dropped.
    h.c.handle_text(
        h.now,
        s,
        &format!(r#"{{"response":{{"id":{},"value":1}}}}"#, id.0),
    );
    assert!(h.take_ev().is_empty());
    // An id we never issued is a protocol error.
    h.c.handle_text(h.now, s, r#"{"response":{"id":"zz","value":1}}"#);
    assert_eq!(
        h.take_ev(),
        vec![Event::ProtocolError(ProtocolError::UnknownResponseId)]
    );
}

#[test]
fn every_operation_over_rest_while_disconnected() {
    let mut h = Harness::new(Config {
        api_key: Some("k".into()),
        path: "api".into(),
        ..cfg()
    });
    h.take_tx(); // the Connect, never answered
    type Case = (
        Operation,
        Method,
        &'static str,
        u16,
        &'static str,
        Result<Reply, OpError>,
    );
    let cases: Vec<Case> = vec![
        (
            read("k1"),
            Method::Get,
            "/api/_data/default/k1",
            200,
            "{\"a\":1}",
            Ok(Reply::Value(Some(json!({"a":1})))),
        ),
        (
            read("k1"),
            Method::Get,
            "/api/_data/default/k1",
            404,
            "{\"error\":\"Key not found in database [k1]\"}",
            Err(OpError::NotFound),
        ),
        (
            read(""),
            Method::Get,
            "/api/_data/default",
            200,
            "[]",
            Ok(Reply::List(vec![])),
        ),
        (
            Operation::List {
                keys_only: false,
                filter: None,
            },
            Method::Get,
            "/api/_data/default?keysOnly=false",
            200,
            "[]",
            Ok(Reply::List(vec![])),
        ),
        (
            Operation::Write {
                key: "a b".into(),
                value: Some(json!({"x":1})),
                fail_if_exists: true,
                expire_session: false,
            },
            Method::Put,
            "/api/_data/default/a%20b",
            500,
            "{\"error\":\"EEXISTS\"}",
            Err(OpError::AlreadyExists),
        ),
        (
            Operation::Patch {
                key: "k".into(),
                patch: json!([]),
                remove_data_from_reply: false,
            },
            Method::Patch,
            "/api/_data/default/k",
            200,
            "{\"a\":2}",
            Ok(Reply::Patched(json!({"a":2}))),
        ),
        (
            Operation::Remove { key: "k".into() },
            Method::Delete,
            "/api/_data/default/k",
            200,
            "ok",
            Ok(Reply::Removed),
        ),
        (
            read("k"),
            Method::Get,
            "/api/_data/default/k",
            401,
            "401 Unauthorized",
            Err(OpError::NotAuthorized),
        ),
    ];
    for (op, method, path, status, body, expected) in cases {
        let id = h.submit(op);
        let tx = h.take_tx();
        let [Transmit::Http { op: oid, request }] = tx.as_slice() else {
            panic!("{tx:?}")
        };
        assert_eq!(*oid, id);
        assert_eq!(request.method, method);
        assert_eq!(request.path_and_query, path);
        assert!(request.headers.contains(&("API-Key", "k".to_string())));
        let resp = HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        h.c.handle_http_response(h.now, id, &resp);
        assert_eq!(h.completed(id), vec![expected]);
    }
    // REST cannot carry a session write or a scalar: refused at once.
    let id = h.submit(Operation::Write {
        key: "k".into(),
        value: Some(json!(5)),
        fail_if_exists: false,
        expire_session: false,
    });
    assert!(matches!(
        h.completed(id).as_slice(),
        [Err(OpError::Unsupported(_))]
    ));
    // A transport failure is typed too.
    let id = h.submit(read("k"));
    h.c.handle_http_failed(h.now, id, "connection refused");
    assert!(matches!(
        h.completed(id).as_slice(),
        [Err(OpError::Transport { .. })]
    ));
}

#[test]
fn force_http_and_bucket_override_while_connected() {
    let mut h = Harness::new(cfg());
    h.connect_socket();
    let id = h.c.submit(
        h.now,
        read("k"),
        OpOptions {
            bucket: Some("other".into()),
            force_http: true,
        },
    );
    let tx = h.take_tx();
    assert!(
        matches!(tx.as_slice(), [Transmit::Http { op, request }] if *op == id && request.path_and_query == "/_data/other/k")
    );
}

#[test]
fn every_request_times_out_and_rest_is_cancelled() {
    let mut h = Harness::new(cfg());
    let s = h.connect_socket();
    h.take_ev();
    let ws = h.submit(read("k"));
    let rest = h.c.submit(
        h.now,
        read("k"),
        OpOptions {
            force_http: true,
            ..Default::default()
        },
    );
    h.take_tx();
    h.advance(Duration::from_millis(9_999));
    assert!(h.take_ev().is_empty());
    h.advance(Duration::from_millis(1));
    let ev = h.take_ev();
    assert!(ev.contains(&Event::Completed {
        op: ws,
        result: Err(OpError::Timeout)
    }));
    assert!(ev.contains(&Event::Completed {
        op: rest,
        result: Err(OpError::Timeout)
    }));
    // The abandoned HTTP request is cancelled; the socket one needs nothing.
    assert_eq!(h.take_tx(), vec![Transmit::CancelHttp { op: rest }]);
    // A late answer after the timeout changes nothing.
    h.c.handle_text(
        h.now,
        s,
        &format!(r#"{{"response":{{"id":"{}","value":1}}}}"#, ws.0),
    );
    assert!(h.take_ev().is_empty());
    assert_eq!(h.c.pending_operations(), 0);
}

#[test]
fn in_flight_on_drop_reads_retry_over_rest_writes_fail() {
    let mut h = Harness::new(cfg());
    let s = h.connect_socket();
    h.take_ev();
    let r = h.submit(read("k"));
    let w = h.submit(Operation::Write {
        key: "k".into(),
        value: Some(json!({})),
        fail_if_exists: false,
        expire_session: false,
    });
    h.take_tx();
    h.c.handle_socket_closed(h.now, s);
    let ev = h.take_ev();
    assert!(ev.contains(&Event::Completed {
        op: w,
        result: Err(OpError::Disconnected)
    }));
    assert!(!ev
        .iter()
        .any(|e| matches!(e, Event::Completed { op, .. } if *op == r)));
    let tx = h.take_tx();
    assert!(matches!(tx.as_slice(), [Transmit::Http { op, .. }] if *op == r));
    h.c.handle_http_response(
        h.now,
        r,
        &HttpResponse {
            status: 200,
            headers: vec![],
            body: b"{}".to_vec(),
        },
    );
    assert_eq!(h.completed(r), vec![Ok(Reply::Value(Some(json!({}))))]);
}

#[test]
fn listeners_registered_before_connect_and_after_every_greeting() {
    let mut h = Harness::new(Config {
        api_key: Some("k".into()),
        ..cfg()
    });
    let a = h.c.add_listener(h.now, "b1", "*", false);
    let b = h.c.add_listener(h.now, "*", "k1", true);
    let _dup = h.c.add_listener(h.now, "b1", "*", false);
    let s = h.connect_socket();
    let frames = h.texts();
    assert_eq!(
        frames,
        vec![
            json!({"msg":"register-events","events":[{"bucket":"*","key":"k1"},{"bucket":"b1","key":"*"}],"sendValues":true,"apiKey":"k"})
        ]
    );
    // Routing.
    h.take_ev();
    h.c.handle_text(
        h.now,
        s,
        r#"{"bucket":"b1","key":"k1","timestamp":null,"value":1}"#,
    );
    h.c.handle_text(
        h.now,
        s,
        r#"{"bucket":"b2","key":"k2","timestamp":null,"value":1}"#,
    );
    // Routed to every matching listener; those that did not ask for values
    // get the event without (sendValues is per connection).
    let ev = h.take_ev();
    assert_eq!(ev.len(), 2);
    assert!(
        matches!(&ev[0], Event::Change { listeners, event } if *listeners == vec![a, _dup] && event.key == "k1" && event.value.is_none())
    );
    assert!(
        matches!(&ev[1], Event::Change { listeners, event } if *listeners == vec![b] && event.value == Some(json!(1)))
    );
    // An event without a value needs no split.
    h.c.handle_text(h.now, s, r#"{"bucket":"b1","key":"k1","timestamp":null}"#);
    let ev = h.take_ev();
    assert!(
        matches!(&ev[..], [Event::Change { listeners, .. }] if *listeners == vec![a, b, _dup]),
        "{ev:?}"
    );
    // Removing b changes the set: re-sent; removing the duplicate does not.
    assert!(h.c.remove_listener(h.now, b));
    let frames = h.texts();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["events"], json!([{"bucket":"b1","key":"*"}]));
    assert_eq!(frames[0]["sendValues"], false);
    assert!(h.c.remove_listener(h.now, _dup));
    assert!(h.texts().is_empty());
    // After a reconnect the registration is sent again.
    h.c.handle_socket_closed(h.now, s);
    h.run_until(h.now + Duration::from_secs(1));
    h.connect_socket();
    let frames = h.texts();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["msg"], "register-events");
    // Removing the last listener sends an empty list.
    assert!(h.c.remove_listener(h.now, a));
    assert_eq!(h.texts()[0]["events"], json!([]));
}

#[test]
fn signal_binary_and_ping_need_a_connection() {
    let mut h = Harness::new(Config {
        api_key: Some("key".into()),
        ..cfg()
    });
    assert_eq!(
        h.c.signal_event(h.now, "b", "k", None),
        Err(SendError::NotConnected)
    );
    assert_eq!(h.c.ping(h.now), Err(SendError::NotConnected));
    assert_eq!(
        h.c.send_binary(h.now, 1, "b", "k", b"x"),
        Err(SendError::NotConnected)
    );
    let s = h.connect_socket();
    h.c.signal_event(h.now, "b1", "evt", Some(json!({"hello":"world"})))
        .unwrap();
    h.c.ping(h.now).unwrap();
    assert_eq!(
        h.texts(),
        vec![
            json!({"msg":"event-broadcast","apiKey":"key","event":{"bucket":"b1","key":"evt","value":{"hello":"world"}}}),
            json!({"msg":"ping"})
        ]
    );
    h.c.send_binary(h.now, 1, "b1", "bin1", b"PAYLOAD!")
        .unwrap();
    let tx = h.take_tx();
    let [Transmit::Binary { bytes, .. }] = tx.as_slice() else {
        panic!()
    };
    assert_eq!(bytes.len(), 136);
    assert_eq!(&bytes[..4], &[1, 2, 4, 3]);
    assert!(matches!(
        h.c.send_binary(h.now, 1, &"b".repeat(37), "k", b""),
        Err(SendError::BinaryHeader(_))
    ));
    // Incoming binary is routed like events.
    let l = h.c.add_listener(h.now, "b1", "*", false);
    h.take_tx();
    h.take_ev();
    h.c.handle_binary(h.now, s, bytes);
    let ev = h.take_ev();
    assert!(
        matches!(&ev[..], [Event::Binary { listeners, payload, .. }] if *listeners == vec![l] && payload == b"PAYLOAD!")
    );
    h.c.handle_binary(h.now, s, &[0u8; 5]);
    assert!(matches!(
        &h.take_ev()[..],
        [Event::ProtocolError(ProtocolError::Binary(_))]
    ));
}

#[test]
fn malformed_frames_become_error_events_and_the_connection_goes_on() {
    let mut h = Harness::new(cfg());
    let s = h.connect_socket();
    h.take_ev();
    for bad in [
        "hello, not json",
        "null",
        "[1,2]",
        r#"{"foo":1}"#,
        r#"{"bucket":{"x":1},"key":"k"}"#,
    ] {
        h.c.handle_text(h.now, s, bad);
        let ev = h.take_ev();
        assert!(
            matches!(&ev[..], [Event::ProtocolError(ProtocolError::Text(_))]),
            "{bad}: {ev:?}"
        );
    }
    h.c.handle_text(
        h.now,
        s,
        r#"{"response":{"error":"Message is not valid JSON"}}"#,
    );
    assert_eq!(
        h.take_ev(),
        vec![Event::ServerError {
            message: "Message is not valid JSON".into()
        }]
    );
    assert!(h.c.is_connected());
}

#[test]
fn backoff_grows_and_caps_with_jitter() {
    let mut h = Harness::new(Config {
        connect_timeout: Duration::from_secs(1),
        ..cfg()
    });
    let mut gaps = vec![];
    let mut last_fail = h.now;
    for _ in 0..10 {
        let tx = h.take_tx();
        let Some(Transmit::Connect { socket, .. }) = tx
            .into_iter()
            .find(|t| matches!(t, Transmit::Connect { .. }))
        else {
            panic!("no connect")
        };
        if !gaps.is_empty() || last_fail != h.now {
            gaps.push(h.now - last_fail);
        }
        h.c.handle_socket_closed(h.now, socket); // refused
        last_fail = h.now;
        let next = h.c.poll_timeout().unwrap();
        h.run_until(next);
    }
    // Attempt n waits in [d/2, d], d = min(250ms·2ⁿ, 10s).
    for (n, gap) in gaps.iter().enumerate() {
        let ceiling = Duration::from_millis(250)
            .saturating_mul(1 << n.min(20))
            .min(Duration::from_secs(10));
        assert!(
            *gap <= ceiling && *gap >= ceiling / 2,
            "attempt {n}: {gap:?} vs {ceiling:?}"
        );
    }
    assert!(gaps.last().unwrap() >= &Duration::from_secs(5));
}

#[test]
fn connect_timeout_abandons_a_hanging_attempt() {
    let mut h = Harness::new(cfg());
    let tx = h.take_tx();
    let Transmit::Connect { socket, .. } = tx[0].clone() else {
        panic!()
    };
    h.advance(Duration::from_secs(10));
    let tx = h.take_tx();
    assert_eq!(tx, vec![Transmit::Close { socket }]);
    assert!(
        h.take_ev().is_empty(),
        "never connected: no Disconnected event"
    );
}

#[test]
fn missed_pongs_close_and_reconnect() {
    let mut h = Harness::new(Config {
        enable_ping: true,
        ping_interval: Duration::from_secs(5),
        missed_pong_limit: 2,
        ..Config::default()
    });
    let s = h.connect_socket();
    h.take_ev();
    // A ping every 5 s; an answered one resets the count.
    h.advance(Duration::from_secs(5));
    assert_eq!(h.texts(), vec![json!({"msg":"ping"})]);
    h.c.handle_text(h.now, s, r#"{"pong":"2026-12-03T16:02:23.511Z"}"#);
    assert_eq!(
        h.take_ev(),
        vec![Event::Pong {
            time: "2026-12-03T16:02:23.511Z".into()
        }]
    );
    h.advance(Duration::from_secs(5));
    h.advance(Duration::from_secs(5));
    assert_eq!(h.texts().len(), 2);
    assert!(h.c.is_connected());
    h.advance(Duration::from_secs(5));
    assert!(!h.c.is_connected());
    assert!(h.take_tx().contains(&Transmit::Close { socket: s }));
    assert_eq!(
        h.take_ev(),
        vec![Event::Disconnected {
            reason: DisconnectReason::PongTimeout
        }]
    );
    h.run_until(h.now + Duration::from_secs(1));
    assert!(h
        .take_tx()
        .iter()
        .any(|t| matches!(t, Transmit::Connect { .. })));
}

#[test]
fn close_fails_everything_and_stops_for_good() {
    let mut h = Harness::new(cfg());
    let s = h.connect_socket();
    h.take_ev();
    let a = h.submit(read("k"));
    let b = h.c.submit(
        h.now,
        read("k"),
        OpOptions {
            force_http: true,
            ..Default::default()
        },
    );
    h.take_tx();
    h.c.close(h.now);
    let ev = h.take_ev();
    assert!(ev.contains(&Event::Disconnected {
        reason: DisconnectReason::ClientClosed
    }));
    assert!(ev.contains(&Event::Completed {
        op: a,
        result: Err(OpError::Closed)
    }));
    assert!(ev.contains(&Event::Completed {
        op: b,
        result: Err(OpError::Closed)
    }));
    assert!(h.take_tx().contains(&Transmit::Close { socket: s }));
    let c = h.submit(read("k"));
    assert_eq!(h.completed(c), vec![Err(OpError::Closed)]);
    assert_eq!(
        h.c.signal_event(h.now, "b", "k", None),
        Err(SendError::Closed)
    );
    assert_eq!(h.c.poll_timeout(), None);
    h.advance(Duration::from_secs(100));
    assert!(h.take_tx().is_empty());
}

#[test]
fn request_frame_matches_transcript_shape() {
    // WS-1 step 5, with our string id.
    let mut h = Harness::new(Config {
        bucket: "b1".into(),
        ..cfg()
    });
    h.connect_socket();
    h.submit(Operation::Write {
        key: "k1".into(),
        value: Some(json!({"name":"x","n":1})),
        fail_if_exists: false,
        expire_session: false,
    });
    let f = h.texts().remove(0);
    assert_eq!(
        f,
        json!({"msg":"datastore-operation","request":{"op":"write","id":"1","bucket":"b1","key":"k1","value":{"name":"x","n":1}}})
    );
    match ClientMessage::decode(&f.to_string()).unwrap() {
        ClientMessage::DatastoreOperation {
            request: Some(r), ..
        } => assert!(matches!(r.op, Op::Write { .. })),
        other => panic!("{other:?}"),
    }
}
