//! Wire codec benches: each of our decoders/encoders beside the baseline
//! `serde_json::from_slice::<Value>` / `serde_json::to_vec` of the very
//! same bytes, in one criterion group, so the report shows the ratio
//! directly (the machines are shared and noisy; only ratios travel).
//!
//! Run: `cargo bench -p cachearoo-core --bench wire`
//! Smoke (CI, runs each bench once, no timing): `cargo bench -p cachearoo-core --bench wire -- --test`
//!
//! Measurement time is kept short on purpose: these are sub-millisecond
//! functions and a second per bench is plenty for a stable median.

use std::hint::black_box;
use std::time::Duration;

use cachearoo_core::wire::{BinaryHeader, ClientMessage, ListItem, Outcome, ServerMessage};
use cachearoo_core::{Client, Config, Instant, OpOptions, Operation, Transmit};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use serde_json::{json, Value};

/// A value of the size and shape applications store (a small record).
fn record() -> Value {
    json!({
        "make": "Saab",
        "model": "900 Turbo",
        "year": 1987,
        "tags": ["classic", "turbo", "hatchback"],
        "owner": {"name": "Ada Lovelace", "since": 2001, "verified": true},
        "mileage": 312_456.5
    })
}

/// A change event with a value, as our server sends it to listeners.
fn change_event_frame() -> String {
    json!({
        "bucket": "cars",
        "key": "saab-900",
        "timestamp": "2026-12-03T16:02:23.511Z",
        "originRequestId": "17",
        "value": record(),
    })
    .to_string()
}

/// The answer to a read of one key.
fn response_frame() -> String {
    json!({"response": {"id": "17", "value": record()}}).to_string()
}

/// The answer to a `read` of a whole bucket: 1 000 list items with content.
fn list_frame() -> String {
    let items: Vec<Value> = (0..1000)
        .map(|i| {
            json!({
                "key": format!("key-{i:05}"),
                "timestamp": "2026-12-03T15:54:34.000Z",
                "size": 42,
                "content": {"n": i, "name": format!("item {i}"), "ok": i % 2 == 0},
            })
        })
        .collect();
    json!({"response": {"id": "3", "value": items}}).to_string()
}

/// The answer to a read of a 64 KiB value (an object holding one long
/// string plus an array of numbers, so both string and number scanning
/// are exercised).
fn big_value_frame() -> String {
    let numbers: Vec<u32> = (0..4096).collect();
    let text = "x".repeat(64 * 1024 - 20_000);
    let frame = json!({"response": {"id": "9", "value": {"blob": text, "numbers": numbers}}});
    frame.to_string()
}

/// The operation a `client.write("saab-900", &record)` submits.
fn write_op() -> Operation {
    Operation::Write {
        key: "saab-900".into(),
        value: Some(record()),
        fail_if_exists: false,
        expire_session: false,
    }
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, bytes: usize) {
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
        .throughput(Throughput::Bytes(bytes as u64));
}

/// Baseline and ours for one server frame.
fn decode_group(c: &mut Criterion, name: &str, frame: &str) {
    let bytes = frame.as_bytes();
    // The frame must decode: a bench of an error path would be meaningless.
    assert!(
        ServerMessage::decode_slice(bytes).is_ok(),
        "{name}: fixture does not decode"
    );
    let mut group = c.benchmark_group(name);
    configure(&mut group, bytes.len());
    group.bench_function("baseline serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(bytes)))
    });
    group.bench_function("ServerMessage::decode", |b| {
        b.iter(|| ServerMessage::decode_slice(black_box(bytes)))
    });
    group.finish();
}

fn decode_change_event(c: &mut Criterion) {
    let frame = change_event_frame();
    decode_group(c, "decode change event", &frame);

    // The whole receive path of the client state machine for that frame:
    // decode, listener matching, event queued and drained. This is what a
    // driver pays per event on top of the WebSocket.
    let mut group = c.benchmark_group("client handle_text change event");
    configure(&mut group, frame.len());
    let now = Instant::ZERO;
    let mut client = Client::new(Config::default(), 1, now);
    let socket = match client.poll_transmit() {
        Some(Transmit::Connect { socket, .. }) => socket,
        other => panic!("expected a connect, got {other:?}"),
    };
    client.handle_socket_opened(now, socket);
    client.handle_text(now, socket, r#"{"id":"server"}"#);
    client.add_listener(now, "cars", "*", true);
    while client.poll_transmit().is_some() {}
    while client.poll_event().is_some() {}
    group.bench_function("baseline serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(frame.as_bytes())))
    });
    group.bench_function("Client::handle_text + poll_event", |b| {
        b.iter(|| {
            client.handle_text(now, socket, black_box(&frame));
            client.poll_event()
        })
    });
    group.finish();
}

fn decode_response(c: &mut Criterion) {
    decode_group(c, "decode response", &response_frame());
}

fn decode_list(c: &mut Criterion) {
    let frame = list_frame();
    decode_group(c, "decode list of 1000 items", &frame);

    // What the client does for a list answer today: the envelope decode
    // yields a `Value`, which `op.rs` then converts into `ListItem`s (a
    // second pass over the tree). Measured against the same baseline.
    let mut group = c.benchmark_group("decode list of 1000 items into ListItem");
    configure(&mut group, frame.len());
    group.bench_function("baseline serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(frame.as_bytes())))
    });
    group.bench_function("ServerMessage::decode + Vec<ListItem>", |b| {
        b.iter(|| {
            let msg = ServerMessage::decode_slice(black_box(frame.as_bytes()));
            match msg {
                Ok(ServerMessage::Response(r)) => match r.outcome {
                    Outcome::Ok { value: Some(v), .. } => {
                        serde_json::from_value::<Vec<ListItem>>(v).map(|l| l.len())
                    }
                    _ => Ok(0),
                },
                _ => Ok(0),
            }
        })
    });
    group.finish();
}

fn decode_big_value(c: &mut Criterion) {
    let frame = big_value_frame();
    decode_group(c, "decode 64 KiB value", &frame);
}

fn encode_write(c: &mut Criterion) {
    let op = write_op();
    let message = ClientMessage::DatastoreOperation {
        api_key: None,
        request: Some(op.to_wire(Value::String("17".into()), "cars")),
    };
    let text = message.encode();
    // Baseline: serialising a `Value` of the same frame to the same bytes.
    let as_value: Value = serde_json::from_str(&text).expect("our frame is JSON");
    assert_eq!(
        serde_json::to_vec(&as_value).expect("serialises").len(),
        text.len(),
        "baseline must produce the same bytes"
    );

    let mut group = c.benchmark_group("encode write request");
    configure(&mut group, text.len());
    group.bench_function("baseline serde_json::to_vec(Value)", |b| {
        b.iter(|| serde_json::to_vec(black_box(&as_value)))
    });
    group.bench_function("ClientMessage::encode", |b| {
        b.iter(|| black_box(&message).encode())
    });
    // What `Client::submit` does per write: build the wire request from the
    // operation (cloning the value), then encode it.
    group.bench_function("Operation::to_wire + encode", |b| {
        b.iter(|| {
            ClientMessage::DatastoreOperation {
                api_key: None,
                request: Some(black_box(&op).to_wire(Value::String("17".into()), "cars")),
            }
            .encode()
        })
    });
    // The same through the state machine (id, timeout table, pending map,
    // transmit queue): the per-operation cost a driver sees on the way out.
    let now = Instant::ZERO;
    let mut client = Client::new(Config::default(), 1, now);
    let socket = match client.poll_transmit() {
        Some(Transmit::Connect { socket, .. }) => socket,
        other => panic!("expected a connect, got {other:?}"),
    };
    client.handle_socket_opened(now, socket);
    client.handle_text(now, socket, r#"{"id":"server"}"#);
    while client.poll_event().is_some() {}
    group.bench_function("Client::submit + poll_transmit (+ answer)", |b| {
        b.iter(|| {
            let id = client.submit(now, black_box(&op).clone(), OpOptions::default());
            let sent = client.poll_transmit();
            // Answer it so the pending table does not grow across iterations.
            let answer = format!(
                r#"{{"response":{{"id":"{}","location":"/_data/cars/saab-900"}}}}"#,
                id.0
            );
            client.handle_text(now, socket, &answer);
            (sent, client.poll_event())
        })
    });
    group.finish();
}

/// What the server does with every request frame (the hub's first step).
/// The server-alone profile (BENCHMARKS.md) found two thirds of the hub's
/// time per read here when the frame went through a whole `Value` tree.
fn decode_read_request(c: &mut Criterion) {
    let text = ClientMessage::DatastoreOperation {
        api_key: None,
        request: Some(
            Operation::Read {
                key: "saab-900".into(),
            }
            .to_wire(Value::String("17".into()), "cars"),
        ),
    }
    .encode();
    assert!(ClientMessage::decode(&text).is_ok(), "fixture decodes");
    let mut group = c.benchmark_group("decode read request (server side)");
    configure(&mut group, text.len());
    group.bench_function("baseline serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(text.as_bytes())))
    });
    group.bench_function("ClientMessage::decode", |b| {
        b.iter(|| ClientMessage::decode(black_box(&text)))
    });
    // The tolerant path through a JSON tree: what `decode` did before its
    // one-pass fast path, and still does for unusual frames.
    group.bench_function("ClientMessage::decode_tolerant", |b| {
        b.iter(|| ClientMessage::decode_tolerant(black_box(&text)))
    });
    group.finish();
}

fn binary_header(c: &mut Criterion) {
    let header = BinaryHeader {
        kind: 7,
        bucket: "sensors".into(),
        key: "temperature/hall-3".into(),
        api_key: "secret-key".into(),
    };
    let payload = vec![0xabu8; 256];
    let frame = header.encode(&payload).expect("names fit");
    // Baseline: the same information as JSON text, the way a text event
    // would carry it (header fields only; the payload stays binary).
    let as_json = serde_json::to_vec(&json!({
        "type": header.kind, "bucket": header.bucket, "key": header.key, "apiKey": header.api_key,
    }))
    .expect("serialises");
    let as_value: Value = serde_json::from_slice(&as_json).expect("is JSON");

    let mut group = c.benchmark_group("binary header encode+decode");
    configure(&mut group, 128);
    group.bench_function("baseline serde_json to_vec+from_slice (same fields)", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(black_box(&as_value)).expect("serialises");
            serde_json::from_slice::<Value>(&bytes).map(|v| v.is_object())
        })
    });
    group.bench_function("BinaryHeader encode+decode", |b| {
        let mut out = Vec::with_capacity(frame.len());
        b.iter(|| {
            out.clear();
            black_box(&header).encode_into(&mut out).expect("names fit");
            out.extend_from_slice(&payload);
            BinaryHeader::decode(black_box(&out)).map(|(h, p)| (h.kind, p.len()))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    decode_change_event,
    decode_response,
    decode_list,
    decode_big_value,
    encode_write,
    decode_read_request,
    binary_header
);
criterion_main!(benches);
