//! Arbitrary sequences of commands, I/O facts and time steps into the client
//! state machine: it never panics, every operation completes exactly once,
//! and no frame is emitted for a socket that is not connected.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use cachearoo_core::{
    Client, Config, Event, HttpResponse, IncomingId, Instant, JobAnswer, OpId, OpOptions,
    Operation, ProducerId, RequestorId, SocketId, TaskId, Transmit,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Submit {
        op: u8,
        key: String,
        force_http: bool,
    },
    AddListener {
        bucket: String,
        key: String,
        values: bool,
    },
    RemoveListener(u64),
    Signal(String),
    Binary {
        kind: u8,
        bucket: String,
        payload: Vec<u8>,
    },
    Ping,
    Opened,
    Text(String),
    BinaryFrame(Vec<u8>),
    SocketClosed,
    Http {
        op: u64,
        status: u16,
        location: Option<String>,
        body: Vec<u8>,
    },
    HttpFailed(u64),
    Advance(u16),
    Close,
    // Messaging endpoints and their commands (ids are taken modulo what exists).
    CreateRequestor {
        progress_ms: u16,
    },
    Request(u8),
    CreateReplier,
    CreateProducer {
        progress_ms: u16,
    },
    AddJob(u8),
    CreateConsumer,
    Answer {
        task: u64,
        answer: u8,
    },
    JobDone {
        task: u64,
        ok: bool,
    },
    Reply {
        incoming: u64,
        ok: bool,
    },
}

fuzz_target!(|input: (u64, Vec<Input>)| {
    let (seed, inputs) = input;
    let mut now = Instant::ZERO;
    let mut c = Client::new(Config::default(), seed, now);
    let mut latest: Option<SocketId> = None;
    let mut completions: BTreeMap<OpId, u32> = BTreeMap::new();
    let mut submitted = 0u64;
    let mut requestors: Vec<RequestorId> = Vec::new();
    let mut producers: Vec<ProducerId> = Vec::new();
    let drain =
        |c: &mut Client, latest: &mut Option<SocketId>, completions: &mut BTreeMap<OpId, u32>| {
            while let Some(t) = c.poll_transmit() {
                match t {
                    Transmit::Connect { socket, .. } => *latest = Some(socket),
                    Transmit::Text { socket, .. } | Transmit::Binary { socket, .. } => {
                        assert!(c.is_connected(), "frame while not connected");
                        assert_eq!(Some(socket), *latest);
                    }
                    _ => {}
                }
            }
            while let Some(e) = c.poll_event() {
                if let Event::Completed { op, .. } = e {
                    *completions.entry(op).or_default() += 1;
                }
            }
        };
    drain(&mut c, &mut latest, &mut completions);
    for input in inputs {
        match input {
            Input::Submit {
                op,
                key,
                force_http,
            } => {
                let op = match op % 5 {
                    0 => Operation::Read { key },
                    1 => Operation::List {
                        keys_only: force_http,
                        filter: Some(key),
                    },
                    2 => Operation::Write {
                        key,
                        value: Some(serde_json::json!({})),
                        fail_if_exists: force_http,
                        expire_session: false,
                    },
                    3 => Operation::Patch {
                        key,
                        patch: serde_json::json!([]),
                        remove_data_from_reply: force_http,
                    },
                    _ => Operation::Remove { key },
                };
                c.submit(
                    now,
                    op,
                    OpOptions {
                        bucket: None,
                        force_http,
                    },
                );
                submitted += 1;
            }
            Input::AddListener {
                bucket,
                key,
                values,
            } => {
                c.add_listener(now, &bucket, &key, values);
            }
            Input::RemoveListener(id) => {
                c.remove_listener(now, cachearoo_core::ListenerId(id));
            }
            Input::Signal(key) => {
                let _ = c.signal_event(now, "b", &key, None);
            }
            Input::Binary {
                kind,
                bucket,
                payload,
            } => {
                let _ = c.send_binary(now, kind, &bucket, "k", &payload);
            }
            Input::Ping => {
                let _ = c.ping(now);
            }
            Input::Opened => {
                if let Some(s) = latest {
                    c.handle_socket_opened(now, s);
                }
            }
            Input::Text(t) => {
                if let Some(s) = latest {
                    c.handle_text(now, s, &t);
                }
            }
            Input::BinaryFrame(b) => {
                if let Some(s) = latest {
                    c.handle_binary(now, s, &b);
                }
            }
            Input::SocketClosed => {
                if let Some(s) = latest {
                    c.handle_socket_closed(now, s);
                }
            }
            Input::Http {
                op,
                status,
                location,
                body,
            } => {
                let mut resp = HttpResponse {
                    status,
                    headers: vec![],
                    body,
                };
                if let Some(l) = location {
                    resp.headers.push(("Location".into(), l));
                }
                c.handle_http_response(now, OpId(op % (submitted + 1)), &resp);
            }
            Input::HttpFailed(op) => {
                c.handle_http_failed(now, OpId(op % (submitted + 1)), "failed")
            }
            Input::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(ms));
                c.handle_timeout(now);
            }
            Input::Close => c.close(now),
            Input::CreateRequestor { progress_ms } => {
                let p = Duration::from_millis(u64::from(progress_ms));
                requestors.push(c.create_requestor(now, "ch", Duration::from_secs(5), p));
            }
            Input::Request(n) => {
                if let Some(r) = requestors.get(usize::from(n) % requestors.len().max(1)) {
                    c.request(now, *r, serde_json::json!(n));
                }
            }
            Input::CreateReplier => {
                c.create_replier(now, "ch");
            }
            Input::CreateProducer { progress_ms } => {
                let p = Duration::from_millis(u64::from(progress_ms));
                producers.push(c.create_producer(now, "ch", Duration::from_secs(5), p));
            }
            Input::AddJob(n) => {
                if let Some(p) = producers.get(usize::from(n) % producers.len().max(1)) {
                    c.add_job(now, *p, serde_json::json!(n));
                }
            }
            Input::CreateConsumer => {
                c.create_consumer(now, "ch", None);
            }
            Input::Answer { task, answer } => {
                let answer = [
                    JobAnswer::Accept,
                    JobAnswer::NotSupported,
                    JobAnswer::NoWorkerAvailable,
                ][usize::from(answer % 3)];
                c.answer_job_query(now, TaskId(task % 64), answer);
            }
            Input::JobDone { task, ok } => {
                let r = if ok {
                    Ok(serde_json::json!(1))
                } else {
                    Err(serde_json::json!("e"))
                };
                let _ = c.job_done(now, TaskId(task % 64), r);
            }
            Input::Reply { incoming, ok } => {
                let r = if ok {
                    Ok(serde_json::json!(1))
                } else {
                    Err(serde_json::json!("e"))
                };
                let _ = c.reply(now, IncomingId(incoming % 64), r);
            }
        }
        drain(&mut c, &mut latest, &mut completions);
        assert!(
            completions.values().all(|n| *n == 1),
            "an operation completed twice"
        );
    }
    c.close(now);
    drain(&mut c, &mut latest, &mut completions);
    assert_eq!(
        completions.len() as u64,
        submitted,
        "an operation never completed"
    );
    assert_eq!(c.pending_operations(), 0);
});
