//! The real-socket test suite, shared by every runtime: each runtime crate
//! instantiates it with [`real_socket_suite!`] in its own `tests/`, so
//! smol and async-std run exactly the same tests against an in-process
//! `cachearoo-server`. Timeouts in here only turn hangs into failures.

#![allow(dead_code)]

pub mod messaging;
pub mod support;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachearoo::{
    Cachearoo, ConnectionEvent, DisconnectReason, Error, Lagged, OpError, Runtime, SendError,
    TlsOptions,
};
use cachearoo_server::ServerConfig;
use futures_lite::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use messaging::*;
use support::*;

/// Instantiates every test of the suite for one runtime:
/// `real_socket_suite!(runtime_value, block_on_function);`
#[macro_export]
macro_rules! real_socket_suite {
    ($rt:expr, $block_on:path) => {
        $crate::real_socket_suite!(@each $rt, $block_on;
            read_and_write, write_options, session_keys, list_and_read_all, patch_operations,
            remove_operations, force_http_everything, events_with_and_without_values,
            wildcards_and_deletes, listener_removal, signal_events_between_clients,
            binary_events_between_clients, ping_pong, listeners_before_server_is_up,
            server_restart, pipelining_1000_operations, rest_burst, tls_with_private_ca, wrong_api_key,
            close_ends_everything, dropping_last_handle_ends_driver, unresponsive_server_times_out, slow_listener_lags,
            request_progress_reply, request_timeouts_and_late_replies, two_repliers_one_channel,
            replier_overflow, string_data_interop, competing_consumers_100_jobs, job_not_supported,
            no_worker_free_for_a_while, serve_with_a_concurrency_limit, consumer_disconnects_mid_job,
            messaging_close_and_offline);
    };
    (@each $rt:expr, $block_on:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let rt = $rt;
                $block_on(suite::support::with_deadline(rt.clone(), suite::$name(rt)));
            }
        )*
    };
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Car {
    make: String,
    year: u16,
}

fn saab() -> Car {
    Car {
        make: "Saab".into(),
        year: 1987,
    }
}

pub async fn read_and_write<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr()).client_id("suite client")).await;

    assert_eq!(c.write("car", &saab()).await.expect("write"), "car");
    assert_eq!(c.read::<Car>("car").await.expect("read"), saab());
    let raw: Value = c.read("car").await.expect("read raw");
    assert_eq!(raw, json!({"make": "Saab", "year": 1987}));

    assert!(c.read::<Value>("missing").await.unwrap_err().is_not_found());
    assert!(matches!(
        c.read::<u32>("car").await,
        Err(Error::Deserialize(_))
    ));

    // An empty key lets the server choose one.
    let generated = c.write("", &json!({"a": 1})).await.expect("write gen");
    assert!(!generated.is_empty());
    assert_eq!(
        c.read::<Value>(generated.as_str()).await.expect("read gen"),
        json!({"a": 1})
    );

    // Scalars can be written over the WebSocket.
    c.write("n", &5).await.expect("write scalar");
    assert_eq!(c.read::<i32>("n").await.expect("read scalar"), 5);

    // A key without a value reads as null.
    c.write("empty", &())
        .without_value()
        .await
        .expect("write empty");
    assert_eq!(
        c.read::<Option<Car>>("empty").await.expect("read empty"),
        None
    );

    // Per-call bucket.
    c.write("k", &json!({"b": 2}))
        .bucket("other")
        .await
        .expect("write other");
    assert!(c.read::<Value>("k").await.unwrap_err().is_not_found());
    assert_eq!(
        c.read::<Value>("k")
            .bucket("other")
            .await
            .expect("read other"),
        json!({"b": 2})
    );
    // Default bucket from the options.
    let d = connected(&rt, options(server.addr()).bucket("other")).await;
    assert_eq!(
        d.read::<Value>("k").await.expect("read default"),
        json!({"b": 2})
    );
    c.close().await;
    d.close().await;
    server.shutdown();
}

pub async fn write_options<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr())).await;
    c.write("x", &json!({"v": 1})).await.expect("write");
    let err = c
        .write("x", &json!({"v": 2}))
        .fail_if_exists()
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err:?}");
    let err = c
        .write("x", &json!({"v": 3}))
        .fail_if_exists()
        .force_http()
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err:?}");
    assert_eq!(c.read::<Value>("x").await.expect("read"), json!({"v": 1}));
    c.write("y", &json!({"v": 1}))
        .fail_if_exists()
        .await
        .expect("new key");
    // Session keys cannot go over REST.
    let err = c
        .write("s", &json!({}))
        .expire_session()
        .force_http()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Op(OpError::Unsupported(_))), "{err:?}");
    c.close().await;
    server.shutdown();
}

pub async fn session_keys<R: Runtime + Clone>(rt: R) {
    let server = server();
    let writer = connected(&rt, options(server.addr())).await;
    let watcher = connected(&rt, options(server.addr())).await;
    let mut events = watcher
        .connection()
        .add_listener("default", "session", false)
        .await
        .expect("listener");
    settled(&rt, &watcher).await;
    writer
        .write("session", &json!({"alive": true}))
        .expire_session()
        .await
        .expect("session write");
    let written = next_change(&rt, &mut events).await;
    assert!(!written.is_deleted);
    assert_eq!(
        watcher.read::<Value>("session").await.expect("read"),
        json!({"alive": true})
    );
    // The writer's connection closing removes the key.
    writer.close().await;
    let deleted = next_change(&rt, &mut events).await;
    assert!(deleted.is_deleted);
    assert!(watcher
        .read::<Value>("session")
        .await
        .unwrap_err()
        .is_not_found());
    watcher.close().await;
    server.shutdown();
}

pub async fn list_and_read_all<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr()).bucket("list")).await;
    for (k, v) in [("a1", 1), ("a2", 2), ("b1", 3)] {
        c.write(k, &json!({"v": v})).await.expect("write");
    }
    let keys = c.list().await.expect("list");
    let names: Vec<_> = keys.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(names, ["a1", "a2", "b1"]);
    assert!(keys.iter().all(|i| i.content.is_none() && i.size > 0));

    let full = c.list().keys_only(false).await.expect("list content");
    assert_eq!(full[1].content, Some(json!({"v": 2})));

    let filtered = c.list().filter("a").await.expect("filter");
    assert_eq!(filtered.len(), 2);

    let all = c.read_all().await.expect("read all");
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].content, Some(json!({"v": 3})));

    let over_rest = c
        .list()
        .keys_only(false)
        .force_http()
        .await
        .expect("rest list");
    assert_eq!(over_rest.len(), 3);
    assert_eq!(over_rest[0].content, Some(json!({"v": 1})));

    assert!(c
        .list()
        .bucket("nothing-here")
        .await
        .expect("empty")
        .is_empty());
    c.close().await;
    server.shutdown();
}

pub async fn patch_operations<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr())).await;
    c.write("p", &json!({"n": 1, "tags": []}))
        .await
        .expect("write");

    let typed: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/n", "value": 2}]))
            .expect("patch");
    let patched = c.patch("p", typed).await.expect("typed patch");
    assert_eq!(patched, json!({"n": 2, "tags": []}));

    let patched = c
        .patch("p", json!([{"op": "add", "path": "/tags/-", "value": "x"}]))
        .await
        .expect("raw patch");
    assert_eq!(patched, json!({"n": 2, "tags": ["x"]}));

    let reply = c
        .patch("p", json!([{"op": "replace", "path": "/n", "value": 3}]))
        .remove_data_from_reply()
        .await
        .expect("patch without data");
    assert_eq!(reply, json!({}));

    let patched = c
        .patch("p", json!([{"op": "replace", "path": "/n", "value": 4}]))
        .force_http()
        .await
        .expect("rest patch");
    assert_eq!(patched["n"], json!(4));

    let err = c
        .patch("p", json!([{"op": "test", "path": "/n", "value": 99}]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Op(OpError::InvalidPatch { .. })),
        "{err:?}"
    );
    let err = c
        .patch("nope", json!([{"op": "replace", "path": "/n", "value": 1}]))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        c.read::<Value>("p").await.expect("read"),
        json!({"n": 4, "tags": ["x"]})
    );
    c.close().await;
    server.shutdown();
}

pub async fn remove_operations<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr())).await;
    c.write("r", &json!({})).await.expect("write");
    c.remove("r").await.expect("remove");
    assert!(c.read::<Value>("r").await.unwrap_err().is_not_found());
    c.remove("never-there").await.expect("remove missing");
    c.write("r2", &json!({})).await.expect("write");
    c.remove("r2").force_http().await.expect("rest remove");
    assert!(c.read::<Value>("r2").await.unwrap_err().is_not_found());
    c.close().await;
    server.shutdown();
}

pub async fn force_http_everything<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr()).bucket("rest")).await;
    let key = c
        .write("car", &saab())
        .force_http()
        .await
        .expect("rest write");
    assert_eq!(key, "car");
    assert_eq!(
        c.read::<Car>("car").force_http().await.expect("rest read"),
        saab()
    );
    let generated = c
        .write("", &json!({"g": true}))
        .force_http()
        .await
        .expect("rest generated");
    assert!(!generated.is_empty());
    assert_eq!(c.read_all().force_http().await.expect("rest all").len(), 2);
    assert!(c
        .read::<Value>("missing")
        .force_http()
        .await
        .unwrap_err()
        .is_not_found());
    // The reference refuses bare scalars over REST; the client says so.
    let err = c.write("n", &5).force_http().await.unwrap_err();
    assert!(matches!(err, Error::Op(OpError::Unsupported(_))), "{err:?}");
    c.close().await;
    server.shutdown();
}

pub async fn events_with_and_without_values<R: Runtime + Clone>(rt: R) {
    let server = server();
    let a = connected(&rt, options(server.addr())).await;
    let plain = connected(&rt, options(server.addr())).await;
    let writer = connected(&rt, options(server.addr())).await;
    let mut with_values = a
        .connection()
        .add_listener("ev", "k1", true)
        .await
        .expect("listener");
    let mut without_values = a
        .connection()
        .add_listener("ev", "k1", false)
        .await
        .expect("listener");
    let mut only_without = plain
        .connection()
        .add_listener("ev", "k1", false)
        .await
        .expect("listener");
    settled(&rt, &a).await;
    settled(&rt, &plain).await;

    writer
        .write("k1", &json!({"v": 1}))
        .bucket("ev")
        .await
        .expect("write");
    let e = next_change(&rt, &mut with_values).await;
    assert_eq!((e.bucket.as_str(), e.key.as_str()), ("ev", "k1"));
    assert_eq!(e.value, Some(json!({"v": 1})));
    assert!(e.timestamp.is_some());
    assert!(!e.is_deleted);
    // Same connection, but this listener did not ask for values.
    assert_eq!(next_change(&rt, &mut without_values).await.value, None);
    // A connection with no listener wanting values gets none from the server.
    assert_eq!(next_change(&rt, &mut only_without).await.value, None);

    // A patch is an event too.
    writer
        .patch("k1", json!([{"op": "replace", "path": "/v", "value": 2}]))
        .bucket("ev")
        .await
        .expect("patch");
    assert_eq!(
        next_change(&rt, &mut with_values).await.value,
        Some(json!({"v": 2}))
    );
    for c in [a, plain, writer] {
        c.close().await;
    }
    server.shutdown();
}

pub async fn wildcards_and_deletes<R: Runtime + Clone>(rt: R) {
    let server = server();
    let a = connected(&rt, options(server.addr())).await;
    let writer = connected(&rt, options(server.addr())).await;
    let conn = a.connection();
    let mut exact = conn.add_listener("w", "k1", true).await.expect("l");
    let mut any_key = conn.add_listener("w", "*", true).await.expect("l");
    let mut any_bucket = conn.add_listener("*", "k1", true).await.expect("l");
    let mut everything = conn.add_listener("*", "*", false).await.expect("l");
    settled(&rt, &a).await;

    writer
        .write("k2", &json!(2))
        .bucket("w")
        .await
        .expect("w/k2");
    writer
        .write("k1", &json!(3))
        .bucket("x")
        .await
        .expect("x/k1");
    writer
        .write("k1", &json!(1))
        .bucket("w")
        .await
        .expect("w/k1");
    writer.remove("k1").bucket("w").await.expect("remove");

    // Events of one connection arrive in order, so "the next event is X"
    // also proves the earlier ones that did not match were not delivered.
    let e = next_change(&rt, &mut exact).await;
    assert_eq!((e.key.as_str(), e.value.clone()), ("k1", Some(json!(1))));
    let deleted = next_change(&rt, &mut exact).await;
    assert!(deleted.is_deleted);
    assert_eq!(deleted.key, "k1");

    let keys: Vec<_> = [
        next_change(&rt, &mut any_key).await,
        next_change(&rt, &mut any_key).await,
        next_change(&rt, &mut any_key).await,
    ]
    .into_iter()
    .map(|e| (e.bucket, e.key, e.is_deleted))
    .collect();
    assert_eq!(
        keys,
        [
            ("w".into(), "k2".into(), false),
            ("w".into(), "k1".into(), false),
            ("w".into(), "k1".into(), true)
        ]
    );
    let e = next_change(&rt, &mut any_bucket).await;
    assert_eq!((e.bucket.as_str(), e.key.as_str()), ("x", "k1"));
    let e = next_change(&rt, &mut any_bucket).await;
    assert_eq!((e.bucket.as_str(), e.key.as_str()), ("w", "k1"));
    for _ in 0..4 {
        next_change(&rt, &mut everything).await;
    }
    a.close().await;
    writer.close().await;
    server.shutdown();
}

pub async fn listener_removal<R: Runtime + Clone>(rt: R) {
    let server = server();
    let a = connected(&rt, options(server.addr())).await;
    let writer = connected(&rt, options(server.addr())).await;
    let conn = a.connection();

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let callback = conn
        .add_listener_callback("rm", "*", false, move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .expect("callback listener");
    let mut witness = conn.add_listener("rm", "*", false).await.expect("l");
    let mut removed = conn.add_listener("rm", "*", false).await.expect("l");
    settled(&rt, &a).await;

    writer
        .write("a", &json!({}))
        .bucket("rm")
        .await
        .expect("write");
    next_change(&rt, &mut witness).await;
    eventually(&rt, "the callback", || calls.load(Ordering::SeqCst) == 1).await;
    next_change(&rt, &mut removed).await;

    assert!(conn.remove_listener(callback).await.expect("remove"));
    assert!(!conn.remove_listener(callback).await.expect("remove twice"));
    assert!(conn
        .remove_listener(removed.id())
        .await
        .expect("remove stream"));
    // A removed stream ends.
    assert!(within(&rt, "the stream to end", removed.next())
        .await
        .is_none());

    writer
        .write("b", &json!({}))
        .bucket("rm")
        .await
        .expect("write");
    assert_eq!(next_change(&rt, &mut witness).await.key, "b");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Dropping the last listener unsubscribes; a new one still works.
    drop(witness);
    let mut again = conn.add_listener("rm", "*", true).await.expect("l");
    settled(&rt, &a).await;
    writer
        .write("c", &json!({"c": 1}))
        .bucket("rm")
        .await
        .expect("write");
    let e = next_change(&rt, &mut again).await;
    assert_eq!((e.key.as_str(), e.value), ("c", Some(json!({"c": 1}))));
    a.close().await;
    writer.close().await;
    server.shutdown();
}

pub async fn signal_events_between_clients<R: Runtime + Clone>(rt: R) {
    let server = server();
    let a = connected(&rt, options(server.addr())).await;
    let b = connected(&rt, options(server.addr())).await;
    let mut a_signals = a
        .connection()
        .add_listener("sig", "*", true)
        .await
        .expect("l");
    let mut b_signals = b
        .connection()
        .add_listener("sig", "*", true)
        .await
        .expect("l");
    settled(&rt, &a).await;
    settled(&rt, &b).await;

    b.connection()
        .signal_event("sig", "hello", &json!({"from": "b"}))
        .await
        .expect("signal");
    let e = next_change(&rt, &mut a_signals).await;
    assert_eq!(e.key, "hello");
    assert_eq!(e.value, Some(json!({"from": "b"})));

    // Not echoed to the sender: b's next event is a's answer.
    a.connection()
        .signal_event("sig", "answer", &json!({"from": "a"}))
        .await
        .expect("signal");
    let e = next_change(&rt, &mut b_signals).await;
    assert_eq!(
        (e.key.as_str(), e.value),
        ("answer", Some(json!({"from": "a"})))
    );
    // Signals are stored nowhere.
    assert!(a
        .read::<Value>("hello")
        .bucket("sig")
        .await
        .unwrap_err()
        .is_not_found());

    // No socket, no signal (there is no REST form).
    let offline = Cachearoo::new(options(([127, 0, 0, 1], free_port()).into()), rt.clone());
    let err = offline
        .connection()
        .signal_event("sig", "x", &json!(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Send(SendError::NotConnected)),
        "{err:?}"
    );
    offline.close().await;
    a.close().await;
    b.close().await;
    server.shutdown();
}

pub async fn binary_events_between_clients<R: Runtime + Clone>(rt: R) {
    let server = server();
    let a = connected(&rt, options(server.addr())).await;
    let b = connected(&rt, options(server.addr())).await;
    let mut frames = a
        .connection()
        .add_binary_listener("bin", "*")
        .await
        .expect("binary listener");
    settled(&rt, &a).await;
    let payload: Vec<u8> = (0..=255).collect();
    b.connection()
        .send_binary(7, "bin", "k", payload.clone())
        .await
        .expect("send");
    let e = match within(&rt, "a binary event", frames.next()).await {
        Some(Ok(e)) => e,
        other => panic!("expected a binary event, got {other:?}"),
    };
    assert_eq!((e.kind, e.bucket.as_str(), e.key.as_str()), (7, "bin", "k"));
    assert_eq!(e.payload, payload);

    let err = b
        .connection()
        .send_binary(1, "b".repeat(40), "k", vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Send(SendError::BinaryHeader(_))),
        "{err:?}"
    );
    a.close().await;
    b.close().await;
    server.shutdown();
}

pub async fn ping_pong<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr()).enable_ping(false)).await;
    let conn = c.connection();
    let (tx, rx) = async_channel::bounded::<String>(8);
    conn.on_pong(move |time| {
        let _ = tx.try_send(time.to_owned());
    })
    .await
    .expect("on_pong");
    let mut events = conn.events().await.expect("events");
    // Subscribing while connected starts with the current state.
    assert!(matches!(
        within(&rt, "state", events.next()).await,
        Some(Ok(ConnectionEvent::Connected { .. }))
    ));
    conn.ping().await.expect("ping");
    let time = within(&rt, "on_pong", rx.recv()).await.expect("pong");
    assert!(time.contains('T'), "an ISO time: {time}");
    assert!(matches!(
        within(&rt, "pong event", events.next()).await,
        Some(Ok(ConnectionEvent::Pong { .. }))
    ));

    // With enable_ping the client pings by itself.
    let auto = connected(
        &rt,
        options(server.addr())
            .enable_ping(true)
            .ping_interval(Duration::from_millis(50)),
    )
    .await;
    let mut auto_events = auto.connection().events().await.expect("events");
    let mut pongs = 0;
    while pongs < 3 {
        if let Some(Ok(ConnectionEvent::Pong { .. })) =
            within(&rt, "automatic pongs", auto_events.next()).await
        {
            pongs += 1;
        }
    }
    assert!(auto.is_connected());
    auto.close().await;
    c.close().await;
    server.shutdown();
}

pub async fn listeners_before_server_is_up<R: Runtime + Clone>(rt: R) {
    let port = free_port();
    let addr = ([127, 0, 0, 1], port).into();
    let early = Cachearoo::new(options(addr), rt.clone());
    let mut listener = early
        .connection()
        .add_listener("early", "*", true)
        .await
        .expect("listener");
    assert!(!early.is_connected());
    rt.sleep(Duration::from_millis(100)).await;

    let server = server_with(ServerConfig::default().port(port));
    within(&rt, "connect", early.connection().wait_connected())
        .await
        .expect("connected");
    settled(&rt, &early).await;
    let writer = connected(&rt, options(server.addr())).await;
    writer
        .write("k", &json!({"late": true}))
        .bucket("early")
        .await
        .expect("write");
    let e = next_change(&rt, &mut listener).await;
    assert_eq!(e.value, Some(json!({"late": true})));
    early.close().await;
    writer.close().await;
    server.shutdown();
}

pub async fn server_restart<R: Runtime + Clone>(rt: R) {
    let server = server();
    let addr = server.addr();
    let first_id = server.server_id().to_string();
    let c = connected(&rt, options(addr).request_timeout(Duration::from_secs(2))).await;
    let conn = c.connection();
    let connects = Arc::new(Mutex::new(Vec::<String>::new()));
    let disconnects = Arc::new(Mutex::new(Vec::<DisconnectReason>::new()));
    let (seen_c, seen_d) = (connects.clone(), disconnects.clone());
    conn.on_connect(move |id| seen_c.lock().expect("lock").push(id.to_owned()))
        .await
        .expect("on_connect");
    conn.on_disconnect(move |r| seen_d.lock().expect("lock").push(r))
        .await
        .expect("on_disconnect");
    let mut events = conn.events().await.expect("events");
    let mut listener = conn.add_listener("re", "*", true).await.expect("listener");
    assert!(matches!(
        within(&rt, "state", events.next()).await,
        Some(Ok(ConnectionEvent::Connected { .. }))
    ));

    server.shutdown();
    match within(&rt, "disconnect", events.next()).await {
        Some(Ok(ConnectionEvent::Disconnected { reason })) => {
            assert_eq!(reason, DisconnectReason::SocketClosed)
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert!(!c.is_connected());
    assert_eq!(disconnects.lock().expect("lock").len(), 1);

    // While the server is down, operations go over REST, which fails with
    // a clear error; none hangs.
    let err = c.read::<Value>("k").await.unwrap_err();
    assert!(
        matches!(err, Error::Op(OpError::Transport { .. } | OpError::Timeout)),
        "{err:?}"
    );
    let err = c.write("k", &json!({})).await.unwrap_err();
    assert!(
        matches!(err, Error::Op(OpError::Transport { .. } | OpError::Timeout)),
        "{err:?}"
    );

    let server = server_with(ServerConfig::default().port(addr.port()));
    let second_id = match within(&rt, "reconnect", events.next()).await {
        Some(Ok(ConnectionEvent::Connected { server_id })) => server_id,
        other => panic!("expected a reconnect, got {other:?}"),
    };
    assert_eq!(second_id, server.server_id());
    let seen = connects.lock().expect("lock").clone();
    // on_connect fired at registration (already connected) and on reconnect.
    assert_eq!(seen, [first_id, second_id]);

    // The listener was registered again with the new server.
    settled(&rt, &c).await;
    let writer = connected(&rt, options(addr)).await;
    writer
        .write("k", &json!({"back": 1}))
        .bucket("re")
        .await
        .expect("write");
    assert_eq!(
        next_change(&rt, &mut listener).await.value,
        Some(json!({"back": 1}))
    );
    assert_eq!(
        c.read::<Value>("k").bucket("re").await.expect("read"),
        json!({"back": 1})
    );
    c.close().await;
    writer.close().await;
    server.shutdown();
}

pub async fn pipelining_1000_operations<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr()).bucket("many")).await;
    let writes = (0..1000).map(|i| {
        let c = c.clone();
        async move { c.write(format!("k{i}"), &json!({"i": i})).await }
    });
    for (i, r) in futures_util::future::join_all(writes)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.expect("write"), format!("k{i}"));
    }
    let reads = (0..1000).map(|i| {
        let c = c.clone();
        async move { c.read::<Value>(format!("k{i}")).await }
    });
    for (i, r) in futures_util::future::join_all(reads)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.expect("read"), json!({"i": i}));
    }
    assert_eq!(c.list().await.expect("list").len(), 1000);
    c.close().await;
    server.shutdown();
}

pub async fn rest_burst<R: Runtime + Clone>(rt: R) {
    // More REST requests at once than the client runs concurrently: the
    // rest wait their turn, all complete.
    let server = server();
    let c = connected(&rt, options(server.addr()).bucket("burst")).await;
    let writes = (0..200).map(|i| {
        let c = c.clone();
        async move {
            c.write(format!("k{i}"), &json!({"i": i}))
                .force_http()
                .await
        }
    });
    for r in futures_util::future::join_all(writes).await {
        r.expect("rest write");
    }
    let reads = (0..200).map(|i| {
        let c = c.clone();
        async move { c.read::<Value>(format!("k{i}")).force_http().await }
    });
    for (i, r) in futures_util::future::join_all(reads)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.expect("rest read"), json!({"i": i}));
    }
    c.close().await;
    server.shutdown();
}

pub async fn tls_with_private_ca<R: Runtime + Clone>(rt: R) {
    let server = server();
    let pki = test_pki();
    let proxy = tls_proxy(server.addr(), &pki);
    let secure = |tls: TlsOptions| {
        options(proxy.addr)
            .host("localhost")
            .secure(true)
            .tls(tls)
            .request_timeout(Duration::from_secs(2))
    };
    let root = cachearoo::pki_types::CertificateDer::from(pki.ca_der.clone());
    let c = connected(&rt, secure(TlsOptions::new().add_root_certificate(root))).await;
    c.write("tls", &json!({"secret": 1}))
        .await
        .expect("wss write");
    assert_eq!(
        c.read::<Value>("tls")
            .force_http()
            .await
            .expect("https read"),
        json!({"secret": 1})
    );

    // Without the private CA the server is refused: no connection, and
    // REST fails with a transport error instead of hanging.
    let refused = Cachearoo::new(secure(TlsOptions::new()), rt.clone());
    rt.sleep(Duration::from_millis(300)).await;
    assert!(!refused.is_connected());
    let err = refused.read::<Value>("tls").await.unwrap_err();
    match err {
        Error::Op(OpError::Transport { message }) => {
            assert!(message.contains("TLS"), "{message}")
        }
        other => panic!("expected a TLS transport error, got {other:?}"),
    }
    refused.close().await;
    c.close().await;
    drop(proxy);
    server.shutdown();
}

pub async fn wrong_api_key<R: Runtime + Clone>(rt: R) {
    let server = server_with(ServerConfig::default().port(0).api_key("right"));
    let wrong = connected(&rt, options(server.addr()).api_key("wrong")).await;
    for force_http in [false, true] {
        let write = wrong.write("k", &json!({}));
        let write = if force_http {
            write.force_http()
        } else {
            write
        };
        let err = write.await.unwrap_err();
        assert!(
            err.is_not_authorized(),
            "write (http: {force_http}): {err:?}"
        );
        let read = wrong.read::<Value>("k");
        let read = if force_http { read.force_http() } else { read };
        let err = read.await.unwrap_err();
        assert!(
            err.is_not_authorized(),
            "read (http: {force_http}): {err:?}"
        );
    }
    // A signal with a wrong key is refused without an id: a server error.
    let mut events = wrong.connection().events().await.expect("events");
    wrong
        .connection()
        .signal_event("b", "k", &json!(1))
        .await
        .expect("sent");
    loop {
        match within(&rt, "the server's refusal", events.next()).await {
            Some(Ok(ConnectionEvent::ServerError { message })) => {
                assert!(message.contains("Not authorized"), "{message}");
                break;
            }
            Some(_) => continue,
            None => panic!("events ended"),
        }
    }
    let right = connected(&rt, options(server.addr()).api_key("right")).await;
    right.write("k", &json!({"ok": 1})).await.expect("write");
    assert_eq!(
        right.read::<Value>("k").force_http().await.expect("read"),
        json!({"ok": 1})
    );
    wrong.close().await;
    right.close().await;
    server.shutdown();
}

pub async fn close_ends_everything<R: Runtime + Clone>(rt: R) {
    // A peer that accepts connections and never answers: the WebSocket
    // handshake and REST requests stay pending until the client closes.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = Cachearoo::new(
        options(black_hole.local_addr().expect("addr")).request_timeout(Duration::from_secs(30)),
        rt.clone(),
    );
    let conn = c.connection();
    let mut listener = conn.add_listener("b", "*", true).await.expect("listener");
    let mut events = conn.events().await.expect("events");
    let pending = {
        let c = c.clone();
        async move { c.read::<Value>("k").await }
    };
    let closer = async {
        rt.sleep(Duration::from_millis(200)).await;
        c.close().await;
    };
    let (result, ()) = futures_lite::future::zip(pending, closer).await;
    let err = result.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    // After close: operations fail at once, streams end.
    assert!(c.read::<Value>("k").await.unwrap_err().is_closed());
    assert!(conn.ping().await.unwrap_err().is_closed());
    assert!(within(&rt, "listener end", listener.next()).await.is_none());
    assert!(within(&rt, "events end", events.next()).await.is_none());
    c.close().await;
}

pub async fn unresponsive_server_times_out<R: Runtime + Clone>(rt: R) {
    // Accepts TCP but never upgrades nor answers HTTP: connection attempts
    // are abandoned after the connect timeout and retried, operations (over
    // REST meanwhile) fail with a timeout.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = Cachearoo::new(
        options(black_hole.local_addr().expect("addr"))
            .connect_timeout(Duration::from_millis(100))
            .request_timeout(Duration::from_millis(300)),
        rt.clone(),
    );
    let (read, write) = futures_lite::future::zip(
        c.read::<Value>("k").into_future(),
        c.write("k", &json!({})).into_future(),
    )
    .await;
    assert!(read.unwrap_err().is_timeout());
    assert!(write.unwrap_err().is_timeout());
    assert!(!c.is_connected());
    c.close().await;
}

pub async fn dropping_last_handle_ends_driver<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr())).await;
    let mut listener = c
        .connection()
        .add_listener("d", "*", true)
        .await
        .expect("l");
    let mut events = c.connection().events().await.expect("events");
    drop(c);
    // Streams do not keep the client alive: the driver ends and they close.
    loop {
        match within(&rt, "events to end", events.next()).await {
            Some(Ok(ConnectionEvent::Disconnected { reason })) => {
                assert_eq!(reason, DisconnectReason::ClientClosed)
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(within(&rt, "listener end", listener.next()).await.is_none());
    server.shutdown();
}

pub async fn slow_listener_lags<R: Runtime + Clone>(rt: R) {
    let server = server();
    let c = connected(&rt, options(server.addr()).listener_capacity(4)).await;
    let writer = connected(&rt, options(server.addr())).await;
    let mut slow = c
        .connection()
        .add_listener("lag", "*", true)
        .await
        .expect("l");
    // A second listener on the same client that keeps up tells us when all
    // events have been dispatched (they are dispatched in one pass).
    let mut fast = c
        .connection()
        .add_listener("lag", "*", true)
        .await
        .expect("l");
    settled(&rt, &c).await;
    for i in 0..20 {
        writer
            .write(format!("k{i:02}"), &json!({"i": i}))
            .bucket("lag")
            .await
            .expect("write");
    }
    let mut seen = 0;
    while seen < 20 {
        match within(&rt, "fast listener", fast.next()).await {
            Some(Ok(_)) => seen += 1,
            Some(Err(Lagged(n))) => seen += n as usize,
            None => panic!("ended"),
        }
    }
    // The slow one kept the 4 newest and reports the 16 it lost first.
    assert_eq!(within(&rt, "lag", slow.next()).await, Some(Err(Lagged(16))));
    for i in 16..20 {
        let e = next_change(&rt, &mut slow).await;
        assert_eq!(e.key, format!("k{i:02}"));
    }
    c.close().await;
    writer.close().await;
    server.shutdown();
}
