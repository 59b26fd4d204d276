//! Bad input over real sockets: each gets its documented answer or is
//! dropped alone; the server never stalls the other connections.

mod common;

use std::time::Duration;

use cachearoo_core::wire::BinaryHeader;
use cachearoo_server::{start, ServerConfig};
use common::{guard, http, Frame, Ws};
use serde_json::json;
use smol::Timer;

fn binary(bucket: &str, key: &str, payload: &[u8]) -> Vec<u8> {
    BinaryHeader {
        kind: 1,
        bucket: bucket.into(),
        key: key.into(),
        api_key: String::new(),
    }
    .encode(payload)
    .expect("header")
}

#[test]
fn malformed_text_frames_get_the_documented_answers_and_the_connection_goes_on() {
    let server = start(ServerConfig::default().port(0)).expect("start");
    smol::block_on(async {
        let (mut a, _) = Ws::connect_greeted(server.addr(), Some("a")).await;
        let not_json = json!({"response":{"error":"Message is not valid JSON"}});
        for text in [
            "hello, not json",
            "{not json",
            "null",
            "[1,2]",
            "42",
            "\"str\"",
            "",
            "{\"msg\":",
        ] {
            a.send_text(text).await;
            assert_eq!(a.next().await, Frame::Json(not_json.clone()), "{text:?}");
        }
        // Wrong types: coerced or refused with a typed error.
        a.send_json(&json!({"msg":"datastore-operation","request":{"op":"write","id":1,"bucket":{},"key":[],"value":1}}))
            .await;
        assert_eq!(
            a.next().await.json()["response"]["error"]["code"],
            json!("EINVALIDBUCKET")
        );
        a.send_json(&json!({"msg":"datastore-operation","request":[1]}))
            .await;
        assert_eq!(
            a.next().await.json()["response"]["error"]["code"],
            json!("EBADREQUEST")
        );
        a.send_json(&json!({"msg":"register-events","events":{"bucket":"b"},"sendValues":true}))
            .await;
        assert_eq!(
            a.next().await.json()["response"]["error"]["code"],
            json!("EBADREQUEST")
        );
        a.send_json(&json!({"msg":"event-broadcast","event":"x"}))
            .await;
        assert_eq!(
            a.next().await.json()["response"]["error"]["code"],
            json!("EBADREQUEST")
        );
        a.send_json(&json!({"msg":"datastore-operation","request":{"op":"read","id":{"odd":true},"bucket":7,"key":8}}))
            .await;
        let r = a.next().await;
        assert_eq!(r.json()["response"]["id"], json!({"odd":true}));
        assert_eq!(r.json()["response"]["error"]["code"], json!("ENOTFOUND"));
        // Unknown op: an error with the request's id; unknown msg: silence.
        a.send_json(
            &json!({"msg":"datastore-operation","request":{"op":"bogus","id":"x1","bucket":"b"}}),
        )
        .await;
        assert_eq!(
            a.next().await,
            Frame::Json(
                json!({"response":{"id":"x1","error":{"message":"Unknown op bogus","code":"EUNKNOWNOP"}}})
            )
        );
        for silent in [
            json!({"msg":"no-such-msg"}),
            json!({"msg":7}),
            json!({"request":{"op":"read"}}),
        ] {
            a.send_json(&silent).await;
        }
        a.assert_quiet().await;
        // Still fully usable.
        a.send_json(&json!({"msg":"datastore-operation","request":{"op":"write","id":2,"bucket":"b","key":"k","value":1}}))
            .await;
        assert_eq!(
            a.next().await,
            Frame::Json(json!({"response":{"id":2,"location":"/_data/b/k"}}))
        );
    });
}

#[test]
fn truncated_or_corrupt_binary_headers_are_dropped() {
    let server = start(ServerConfig::default().port(0)).expect("start");
    smol::block_on(async {
        let (mut a, _) = Ws::connect_greeted(server.addr(), Some("a")).await;
        let (mut b, _) = Ws::connect_greeted(server.addr(), Some("b")).await;
        b.send_json(
            &json!({"msg":"register-events","events":[{"bucket":"*","key":"*"}],"sendValues":true}),
        )
        .await;
        b.assert_quiet().await;
        let good = binary("b1", "k", b"payload");
        let mut overrun = good.clone();
        overrun[1] = 100;
        overrun[2] = 100;
        let mut not_utf8 = good.clone();
        not_utf8[4] = 0xff;
        for bad in [
            vec![],
            vec![1, 2, 3],
            good[..127].to_vec(),
            overrun,
            not_utf8,
        ] {
            a.send_binary(bad).await;
        }
        a.assert_quiet().await;
        b.assert_quiet().await;
        a.send_binary(good.clone()).await;
        assert_eq!(b.next().await, Frame::Binary(good));
        a.assert_quiet().await;
    });
}

#[test]
fn an_oversize_frame_closes_that_connection_alone() {
    let server = start(ServerConfig::default().port(0).max_frame_bytes(1024)).expect("start");
    smol::block_on(async {
        let (mut big, _) = Ws::connect_greeted(server.addr(), Some("big")).await;
        let (mut other, _) = Ws::connect_greeted(server.addr(), Some("other")).await;
        // Just under the limit is fine.
        let ok = format!(
            r#"{{"msg":"event-broadcast","event":{{"bucket":"b","key":"k","value":"{}"}}}}"#,
            "x".repeat(900)
        );
        assert!(ok.len() <= 1024);
        big.send_text(&ok).await;
        big.assert_quiet().await;
        big.send_text(&"y".repeat(4096)).await;
        big.expect_closed().await;
        other.assert_quiet().await;
        let (mut bin, _) = Ws::connect_greeted(server.addr(), Some("bin")).await;
        bin.send_binary(binary("b", "k", &[0u8; 2048])).await;
        bin.expect_closed().await;
        other.assert_quiet().await;
        guard("stats", async {
            while server.stats().oversize_closes < 2 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert_eq!(server.stats().connections, 1);
    });
}

#[test]
fn a_client_that_stops_reading_is_closed_and_stalls_no_one() {
    // Small queues so that the test stays quick; the kernel's socket
    // buffers still absorb several MiB before the queue fills.
    let server = start(ServerConfig::default().port(0).send_queue(16, 1 << 20)).expect("start");
    smol::block_on(async {
        let addr = server.addr();
        let sub = json!({"msg":"register-events","events":[{"bucket":"flood","key":"*"}],"sendValues":true});
        let (mut stalled, _) = Ws::connect_greeted(addr, Some("stalled")).await;
        stalled.send_json(&sub).await;
        stalled.assert_quiet().await;
        let (mut reader, _) = Ws::connect_greeted(addr, Some("reader")).await;
        reader.send_json(&sub).await;
        reader.assert_quiet().await;
        let (mut writer, _) = Ws::connect_greeted(addr, Some("writer")).await;

        let frames = 640;
        let batch = 8;
        let frame = binary("flood", "k", &vec![7u8; 64 * 1024]);
        // The writer waits for the reader after each batch, so the reader's
        // queue stays short however slow the machine; the stalled client's
        // backlog only grows.
        let (ack_tx, ack_rx) = async_channel::unbounded::<()>();
        let read_all = async {
            for i in 0..frames {
                match reader.next().await {
                    Frame::Binary(b) => assert_eq!(b.len(), frame.len()),
                    other => panic!("frame {i}: {other:?}"),
                }
                ack_tx.send(()).await.expect("ack");
            }
            reader
        };
        let write_all = async {
            for _ in 0..frames / batch {
                for _ in 0..batch {
                    writer.send_binary(frame.clone()).await;
                }
                for _ in 0..batch {
                    ack_rx.recv().await.expect("ack");
                }
            }
            writer.assert_quiet().await;
            writer
        };
        let (mut reader, mut writer) =
            guard("flood", futures_lite::future::zip(read_all, write_all)).await;
        guard("slow consumer closed", async {
            while server.stats().slow_consumer_closes < 1 {
                Timer::after(Duration::from_millis(5)).await;
            }
        })
        .await;
        // The stalled client finds its connection closed once it reads.
        stalled.expect_closed().await;
        reader.assert_quiet().await;
        writer.send_json(&json!({"msg":"datastore-operation","request":{"op":"write","id":1,"bucket":"flood","key":"k","value":1}}))
            .await;
        assert_eq!(
            writer.next().await,
            Frame::Json(json!({"response":{"id":1,"location":"/_data/flood/k"}}))
        );
        assert_eq!(reader.next().await.json()["value"], json!(1));
        assert_eq!(server.stats().slow_consumer_closes, 1);
    });
}

#[test]
fn a_client_that_does_not_answer_pings_is_dropped() {
    let config = ServerConfig::default()
        .port(0)
        .ping(Some(Duration::from_millis(50)), Duration::from_millis(100));
    let server = start(config).expect("start");
    smol::block_on(async {
        let (mut silent, _) = Ws::connect_greeted(server.addr(), Some("silent")).await;
        let (mut live, _) = Ws::connect_greeted(server.addr(), Some("live")).await;
        // `live` keeps reading (so its pings are answered); `silent` does not.
        guard("ping timeout", async {
            while server.stats().ping_timeouts < 1 {
                live.assert_quiet().await;
                Timer::after(Duration::from_millis(10)).await;
            }
        })
        .await;
        silent.expect_closed().await;
        live.assert_quiet().await;
        assert_eq!(server.stats().connections, 1);
    });
}

#[test]
fn http_bad_input() {
    let server = start(ServerConfig::default().port(0).max_body_bytes(1024)).expect("start");
    smol::block_on(async {
        let addr = server.addr();
        let json_ct = [("Content-Type", "application/json")];
        let r = http(addr, "PUT", "/_data/b/k", &json_ct, Some(&vec![b' '; 4096])).await;
        assert_eq!(r.status, 413);
        let r = http(addr, "PUT", "/_data/b/k", &json_ct, Some(b"{bad")).await;
        assert_eq!(r.status, 400);
        let r = http(addr, "PUT", "/_data/b/k", &json_ct, Some(b"5")).await;
        assert_eq!(r.status, 400);
        let r = http(
            addr,
            "PUT",
            "/_data/b/k",
            &[("Content-Type", "text/plain")],
            Some(b"{}"),
        )
        .await;
        assert_eq!(
            (r.status, r.text()),
            (400, "Wrong content type text/plain".to_string())
        );
        let r = http(addr, "GET", "/_data/b/%ff%fe", &[], None).await;
        assert_eq!(r.status, 400);
        let r = http(addr, "BREW", "/_data/b/k", &[], None).await;
        assert_eq!(r.status, 404);
        // A WebSocket upgrade of another protocol version.
        let r = http(
            addr,
            "GET",
            "/?id=x",
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "8"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.header("sec-websocket-version")),
            (426, Some("13"))
        );
        let r = http(
            addr,
            "GET",
            "/",
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
            ],
            None,
        )
        .await;
        assert_eq!(r.status, 400);
        // The server still serves.
        let r = http(addr, "PUT", "/_data/b/k", &json_ct, Some(b"{\"ok\":true}")).await;
        assert_eq!(r.status, 200);
    });
}
