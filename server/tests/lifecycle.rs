//! Starting and stopping in-process servers: ephemeral and fixed ports,
//! restarts on the same port, shutdown closing every connection, use from
//! synchronous code; and the documented differences seen over sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use async_tungstenite::tungstenite;
use cachearoo_server::{start, Error, RunningServer, ServerConfig};
use common::{http, Ws, HANG_GUARD};
use serde_json::{json, Value};

/// Shuts `server` down on another thread, failing if that hangs.
fn shutdown_guarded(server: RunningServer) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        server.shutdown();
        let _ = tx.send(());
    });
    rx.recv_timeout(HANG_GUARD).expect("shutdown finished");
}

#[test]
fn shutdown_closes_every_connection_and_releases_the_port() {
    let server = start(ServerConfig::default().port(0)).expect("start");
    let addr = server.addr();
    assert_ne!(addr.port(), 0);
    // An idle TCP connection that never sends a request must not hold
    // shutdown up either.
    let idle = TcpStream::connect(addr).expect("idle connect");
    let (mut a, mut b) = smol::block_on(async {
        let (a, sid) = Ws::connect_greeted(addr, Some("a")).await;
        assert_eq!(sid, server.server_id());
        let (b, _) = Ws::connect_greeted(addr, None).await;
        (a, b)
    });
    assert_eq!(server.stats().connections, 2);
    shutdown_guarded(server);
    smol::block_on(async {
        a.expect_closed().await;
        b.expect_closed().await;
    });
    drop(idle);

    for round in 0..3 {
        let config = ServerConfig::default()
            .port(addr.port())
            .server_id(format!("s{round}"));
        let server = start(config).expect("restart on the same port");
        assert_eq!(server.addr(), addr);
        assert_eq!(server.stats().connections_total, 0);
        let mut c = smol::block_on(async {
            let (mut c, sid) = Ws::connect_greeted(addr, Some("c")).await;
            assert_eq!(sid, format!("s{round}"));
            c.send_json(&json!({"msg":"datastore-operation","request":{"op":"read","id":1,"bucket":"b","key":"k"}}))
                .await;
            // A fresh store every time.
            assert_eq!(
                c.next().await.json()["response"]["error"]["code"],
                json!("ENOTFOUND")
            );
            c
        });
        shutdown_guarded(server);
        smol::block_on(c.expect_closed());
    }
}

#[test]
fn dropping_the_server_stops_it() {
    let server = start(ServerConfig::default().port(0)).expect("start");
    let addr = server.addr();
    drop(server);
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
    let again = start(ServerConfig::default().port(addr.port())).expect("the port is free");
    drop(again);
}

#[test]
fn a_busy_port_is_an_error() {
    let server = start(ServerConfig::default().port(0)).expect("start");
    match start(ServerConfig::default().port(server.addr().port())) {
        Err(Error::Bind { addr, .. }) => assert_eq!(addr, server.addr()),
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert!(matches!(
        start(ServerConfig::default().host("no such host.invalid").port(0)),
        Err(Error::Resolve { .. })
    ));
}

#[test]
fn usable_from_plain_synchronous_code() {
    let server = start(ServerConfig::default().port(0).api_key("k")).expect("start");
    let tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    let (mut ws, _) = tungstenite::client::client(format!("ws://{}/?id=sync", server.addr()), tcp)
        .expect("handshake");
    let read_json = |ws: &mut tungstenite::WebSocket<TcpStream>| -> Value {
        match ws.read().expect("read") {
            tungstenite::Message::Text(t) => serde_json::from_str(t.as_str()).expect("json"),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(read_json(&mut ws), json!({ "id": server.server_id() }));
    ws.send(tungstenite::Message::text(
        r#"{"msg":"datastore-operation","apiKey":"k","request":{"op":"write","id":"1","bucket":"b","key":"k","value":[1]}}"#,
    ))
    .expect("send");
    assert_eq!(
        read_json(&mut ws),
        json!({"response":{"id":"1","location":"/_data/b/k"}})
    );
    ws.close(None).expect("close");

    // And plain HTTP over a std socket.
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    write!(
        tcp,
        "GET /_data/b/k HTTP/1.1\r\nHost: x\r\nAPI-Key: k\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n[1]"), "{answer}");
    drop(server);
}

#[test]
fn servers_run_side_by_side_and_from_inside_an_executor() {
    smol::block_on(async {
        let one = start(ServerConfig::default().port(0).threads(2)).expect("one");
        let two = start(ServerConfig::default().port(0)).expect("two");
        assert_ne!(one.addr(), two.addr());
        assert_ne!(one.server_id(), two.server_id());
        let (_a, sid) = Ws::connect_greeted(one.addr(), None).await;
        assert_eq!(sid, one.server_id());
        let r = http(two.addr(), "GET", "/_id", &[], None).await;
        assert_eq!(r.json(), json!({ "id": two.server_id() }));
    });
}

#[test]
fn an_upgrade_with_the_server_id_is_refused() {
    let server = start(ServerConfig::default().port(0).server_id("me")).expect("start");
    smol::block_on(async {
        match Ws::connect(server.addr(), Some("me")).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => panic!("should be refused"),
        }
        let (_ok, _) = Ws::connect_greeted(server.addr(), Some("not-me")).await;
        // The greeting proves the connection is registered.
        assert_eq!(server.stats().refused_upgrades, 1);
        assert_eq!(server.stats().connections, 1);
    });
}

#[test]
fn events_carry_the_writers_client_id() {
    let server = start(ServerConfig::default().port(0)).expect("start");
    smol::block_on(async {
        let addr = server.addr();
        let (mut named, _) = Ws::connect_greeted(addr, Some("writer%20one")).await;
        let (mut anon, _) = Ws::connect_greeted(addr, None).await;
        let (mut sub, _) = Ws::connect_greeted(addr, Some("sub")).await;
        sub.send_json(
            &json!({"msg":"register-events","events":[{"bucket":"b","key":"*"}],"sendValues":true}),
        )
        .await;
        sub.assert_quiet().await;
        named
            .send_json(&json!({"msg":"datastore-operation","request":{"op":"write","id":1,"bucket":"b","key":"k","value":1}}))
            .await;
        named.next().await;
        let e = sub.next().await;
        assert_eq!(e.json()["clientId"], json!("writer one"));
        anon.send_json(
            &json!({"msg":"event-broadcast","event":{"bucket":"b","key":"s","value":2}}),
        )
        .await;
        let e = sub.next().await;
        assert!(e.json().get("clientId").is_none(), "{e:?}");
        // REST changes reach everyone, without a clientId.
        let r = http(
            addr,
            "PUT",
            "/_data/b/r",
            &[("Content-Type", "application/json")],
            Some(b"{}"),
        )
        .await;
        assert_eq!(r.status, 200);
        let e = sub.next().await;
        assert_eq!(e.json()["originRequestId"], Value::Null);
        assert!(e.json().get("clientId").is_none());
    });
}

#[test]
fn ping_intervals_are_configurable_and_live_clients_stay() {
    let config = ServerConfig::default()
        .port(0)
        .ping(Some(Duration::from_millis(20)), Duration::from_secs(5));
    let server = start(config).expect("start");
    smol::block_on(async {
        let (mut ws, _) = Ws::connect_greeted(server.addr(), None).await;
        // Reading answers the server's pings; the connection survives many.
        for _ in 0..10 {
            ws.assert_quiet().await;
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        assert_eq!(server.stats().ping_timeouts, 0);
        assert_eq!(server.stats().connections, 1);
    });
}

#[test]
fn the_config_debug_output_never_shows_the_api_key() {
    let c = ServerConfig::default().api_key("sup3r-secret");
    assert!(!format!("{c:?}").contains("sup3r-secret"));
}
