//! The wire codec against every WebSocket frame of the reference transcript
//! (`fixtures/ws-frames.jsonl`, a copy of `shared/reference/ws-frames.jsonl`).

use cachearoo_core::wire::{
    BinaryHeader, ChangeEvent, ClientMessage, DecodeError, Op, Outcome, Response, ServerMessage,
    Subscription, WireError,
};
use serde_json::{json, Value};

struct Frame {
    scenario: String,
    step: String,
    client: String,
    sent: bool,
    frame: Option<Value>,
    raw_text: Option<String>,
    binary: Option<Vec<u8>>,
}

fn frames() -> Vec<Frame> {
    include_str!("fixtures/ws-frames.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("fixture line is JSON");
            Frame {
                scenario: v["scenario"].as_str().unwrap().to_string(),
                step: v["step"].as_str().unwrap().to_string(),
                client: v["client"].as_str().unwrap().to_string(),
                sent: v["dir"] == "sent",
                frame: v.get("frame").cloned(),
                raw_text: v.get("raw_text").and_then(Value::as_str).map(String::from),
                binary: v.get("binary_hex").and_then(Value::as_str).map(|h| {
                    (0..h.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                        .collect()
                }),
            }
        })
        .collect()
}

fn step<'a>(all: &'a [Frame], scenario: &str, prefix: &str) -> Vec<&'a Frame> {
    all.iter()
        .filter(|f| f.scenario == scenario && f.step.starts_with(prefix))
        .collect()
}

fn decode_received(f: &Frame) -> ServerMessage {
    let text = serde_json::to_string(f.frame.as_ref().unwrap()).unwrap();
    ServerMessage::decode(&text)
        .unwrap_or_else(|e| panic!("{} {}: {e}: {text}", f.scenario, f.step))
}

/// Every text frame a server sent decodes, and re-encodes to the same JSON
/// (except a numeric event key, which we carry as text).
#[test]
fn every_received_frame_decodes_and_round_trips() {
    let all = frames();
    let mut count = 0;
    for f in all.iter().filter(|f| !f.sent && f.frame.is_some()) {
        let original = f.frame.clone().unwrap();
        let msg = decode_received(f);
        let reencoded: Value = serde_json::from_str(&msg.encode()).unwrap();
        let mut expected = original.clone();
        if let Some(k) = expected.get("key").filter(|k| k.is_number()).cloned() {
            expected["key"] = Value::String(k.to_string());
        }
        assert_eq!(
            reencoded, expected,
            "{} {} {}",
            f.scenario, f.step, f.client
        );
        count += 1;
    }
    assert!(count > 180, "only {count} received frames");
}

#[test]
fn typed_greeting_response_event_delete_pong() {
    let all = frames();
    let greeting = decode_received(step(&all, "WS-1", "1. ")[0]);
    assert_eq!(
        greeting,
        ServerMessage::Greeting {
            server_id: "8cb9e283-ac96-6e27-30e1-71a17c89873b".into()
        }
    );

    let s5 = step(&all, "WS-1", "5. ");
    let event = s5.iter().find(|f| f.client == "B").unwrap();
    assert_eq!(
        decode_received(event),
        ServerMessage::Event(ChangeEvent {
            bucket: "b1".into(),
            key: "k1".into(),
            timestamp: Some("2026-12-03T16:04:35.498Z".into()),
            origin_request_id: Some(json!(1)),
            client_id: None,
            is_deleted: false,
            value: Some(json!({"name":"x","n":1})),
        })
    );
    let resp = s5.iter().find(|f| f.client == "A" && !f.sent).unwrap();
    assert_eq!(
        decode_received(resp),
        ServerMessage::Response(Response {
            id: Some(json!(1)),
            outcome: Outcome::Ok {
                value: None,
                location: Some("/_data/b1/k1".into())
            }
        })
    );

    // Delete event: timestamp null, isDeleted, value null.
    let del = step(&all, "WS-1", "34. ")
        .into_iter()
        .find(|f| f.client == "B")
        .unwrap();
    match decode_received(del) {
        ServerMessage::Event(e) => {
            assert!(e.is_deleted);
            assert_eq!(e.timestamp, None);
            assert_eq!(e.origin_request_id, Some(json!(50)));
            assert_eq!(e.value, Some(Value::Null));
        }
        other => panic!("{other:?}"),
    }

    // Session-expiry delete: no originRequestId at all.
    let sess = step(&all, "WS-1", "63. ")
        .into_iter()
        .find(|f| f.client == "B" && !f.sent)
        .unwrap();
    match decode_received(sess) {
        ServerMessage::Event(e) => assert_eq!(e.origin_request_id, None),
        other => panic!("{other:?}"),
    }

    // Patch event: originRequestId null (present).
    let patch = step(&all, "WS-1", "27. ")
        .into_iter()
        .find(|f| f.client == "B")
        .unwrap();
    match decode_received(patch) {
        ServerMessage::Event(e) => assert_eq!(e.origin_request_id, Some(Value::Null)),
        other => panic!("{other:?}"),
    }

    // Event without value (sendValues false) and with a numeric key.
    let novalue = step(&all, "WS-1", "37. ")
        .into_iter()
        .find(|f| f.client == "B" && !f.sent)
        .unwrap();
    match decode_received(novalue) {
        ServerMessage::Event(e) => assert_eq!(e.value, None),
        other => panic!("{other:?}"),
    }
    let numeric = step(&all, "WS-1", "47. ")
        .into_iter()
        .find(|f| !f.sent)
        .unwrap();
    match decode_received(numeric) {
        ServerMessage::Event(e) => assert_eq!((e.bucket.as_str(), e.key.as_str()), ("7", "8")),
        other => panic!("{other:?}"),
    }

    let pong = step(&all, "WS-1", "50. ")
        .into_iter()
        .find(|f| !f.sent)
        .unwrap();
    assert_eq!(
        decode_received(pong),
        ServerMessage::Pong {
            time: "2026-12-03T16:04:52.558Z".into()
        }
    );
}

#[test]
fn typed_errors_in_every_shape() {
    let all = frames();
    let err_of = |scenario: &str, prefix: &str| -> Vec<(Option<Value>, WireError)> {
        step(&all, scenario, prefix)
            .into_iter()
            .filter(|f| !f.sent && f.frame.is_some())
            .filter_map(|f| match decode_received(f) {
                ServerMessage::Response(Response {
                    id,
                    outcome: Outcome::Err(e),
                }) => Some((id, e)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        err_of("WS-1", "8. "),
        vec![(Some(json!(4)), WireError::Empty)]
    );
    let patch_errors = err_of("WS-1", "32. ");
    assert_eq!(patch_errors.len(), 3);
    assert_eq!(
        patch_errors[0].1,
        WireError::Object {
            message: Some("invalid operation: bogus".into()),
            name: Some("InvalidPatch".into()),
            code: None
        }
    );
    assert_eq!(
        err_of("WS-2", "2. ")[0],
        (Some(json!(1)), WireError::Text("Not authorized".into()))
    );
    // Errors without an id.
    assert_eq!(
        err_of("WS-1", "55. "),
        vec![(None, WireError::Text("Message is not valid JSON".into()))]
    );
    assert_eq!(
        err_of("WS-2", "14. ")[0],
        (None, WireError::Text("Not authorized to send event".into()))
    );
}

#[test]
fn lists_and_replication_dump() {
    let all = frames();
    let list = step(&all, "WS-1", "19. ")
        .into_iter()
        .find(|f| !f.sent)
        .unwrap();
    let ServerMessage::Response(Response {
        outcome: Outcome::Ok { value: Some(v), .. },
        ..
    }) = decode_received(list)
    else {
        panic!()
    };
    let items: Vec<cachearoo_core::wire::ListItem> = serde_json::from_value(v).unwrap();
    assert_eq!(items.len(), 9);
    let kundef = items.iter().find(|i| i.key == "kundef").unwrap();
    assert_eq!((kundef.size, kundef.content.as_ref()), (0, None));
    let knull = items.iter().find(|i| i.key == "knull").unwrap();
    assert_eq!(knull.content, Some(Value::Null));
    assert!(items
        .iter()
        .find(|i| i.key == "sess1")
        .unwrap()
        .expire
        .is_session());

    let dump = step(&all, "WS-2", "18. ")
        .into_iter()
        .find(|f| f.client == "C" && !f.sent)
        .unwrap();
    match decode_received(dump) {
        ServerMessage::ReplicationDump { bucket, data } => {
            assert_eq!(bucket, "b1");
            assert_eq!(data.len(), 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn binary_frames_decode_and_reencode() {
    let all = frames();
    let mut n = 0;
    for f in all.iter().filter(|f| f.binary.is_some()) {
        let bytes = f.binary.as_ref().unwrap();
        match BinaryHeader::decode(bytes) {
            Ok((h, payload)) => {
                assert_eq!(
                    h.encode(payload).unwrap(),
                    *bytes,
                    "{} {}",
                    f.scenario,
                    f.step
                );
                n += 1;
            }
            Err(e) => assert!(bytes.len() < 128, "{} {}: {e}", f.scenario, f.step),
        }
    }
    assert!(n >= 10);
}

/// The client→server frames as our server reads them, and re-encoded the way
/// our client writes them: equal to the original, modulo the normalisations
/// our encoder always applies (explicit `keysOnly`, `events`, `sendValues`;
/// numeric bucket/key as text; falsy flags left out).
#[test]
fn every_sent_frame_decodes_and_reencodes() {
    let all = frames();
    let mut n = 0;
    for f in all.iter().filter(|f| f.sent) {
        let text = match (&f.frame, &f.raw_text) {
            (Some(v), _) => serde_json::to_string(v).unwrap(),
            (None, Some(t)) => t.clone(),
            _ => continue,
        };
        let decoded = ClientMessage::decode(&text);
        let Some(original) = f.frame.clone().filter(Value::is_object) else {
            assert!(
                matches!(
                    decoded,
                    Err(DecodeError::NotJson | DecodeError::NotAnObject)
                ),
                "{} {}: {decoded:?}",
                f.scenario,
                f.step
            );
            continue;
        };
        let msg = decoded.unwrap_or_else(|e| panic!("{} {}: {e}", f.scenario, f.step));
        let reencoded: Value = serde_json::from_str(&msg.encode()).unwrap();
        assert_eq!(reencoded, normalise(original), "{} {}", f.scenario, f.step);
        n += 1;
    }
    assert!(n > 130, "only {n}");
}

fn normalise(mut v: Value) -> Value {
    let obj = v.as_object_mut().unwrap();
    match obj.get("msg").and_then(Value::as_str) {
        Some("register-events") => {
            obj.entry("events").or_insert(json!([]));
            let sv = obj
                .get("sendValues")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            obj.insert("sendValues".into(), json!(sv));
        }
        Some("datastore-operation") => {
            if let Some(r) = obj.get_mut("request").and_then(Value::as_object_mut) {
                r.remove("apiKey");
                for k in ["bucket", "key"] {
                    if let Some(n) = r.get(k).filter(|x| x.is_number()).cloned() {
                        r.insert(k.into(), Value::String(n.to_string()));
                    }
                }
                if r.get("op").and_then(Value::as_str) == Some("filter") {
                    let ko = r.get("keysOnly").and_then(Value::as_bool).unwrap_or(false);
                    r.insert("keysOnly".into(), json!(ko));
                }
                for flag in ["failIfExists", "removeDataFromReply"] {
                    if r.get(flag) == Some(&json!(false)) {
                        r.remove(flag);
                    }
                }
                if r.get("bucket").is_none() {
                    r.insert("bucket".into(), json!(""));
                }
                let op = r
                    .get("op")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if !["read", "filter", "write", "patch", "remove"].contains(&op.as_str()) {
                    // Unknown ops keep only op, id and bucket.
                    r.retain(|k, _| k == "op" || k == "id" || k == "bucket");
                }
            }
        }
        Some("event-broadcast") => {
            if let Some(e) = obj.get_mut("event").and_then(Value::as_object_mut) {
                for k in ["bucket", "key"] {
                    if let Some(n) = e.get(k).filter(|x| x.is_number()).cloned() {
                        e.insert(k.into(), Value::String(n.to_string()));
                    }
                }
            }
        }
        Some("register-replication-client") | Some("ping") => {}
        // Unknown messages keep only their msg.
        _ => obj.retain(|k, _| k == "msg"),
    }
    v
}

#[test]
fn sent_frames_typed() {
    let all = frames();
    let s4 = step(&all, "WS-1", "4. ")[0];
    assert_eq!(
        ClientMessage::decode(&s4.frame.as_ref().unwrap().to_string()).unwrap(),
        ClientMessage::RegisterEvents {
            api_key: None,
            events: Some(vec![Subscription {
                bucket: "b1".into(),
                key: "*".into()
            }]),
            send_values: true
        }
    );
    let s68 = step(&all, "WS-1", "68. ")
        .into_iter()
        .find(|f| f.client == "F" && f.sent)
        .unwrap();
    assert!(matches!(
        ClientMessage::decode(&s68.frame.as_ref().unwrap().to_string()).unwrap(),
        ClientMessage::RegisterEvents { events: None, .. }
    ));
    let s12 = step(&all, "WS-1", "12. ");
    let nov = s12
        .iter()
        .find(|f| f.sent && f.frame.as_ref().unwrap()["request"]["id"] == 9)
        .unwrap();
    match ClientMessage::decode(&nov.frame.as_ref().unwrap().to_string()).unwrap() {
        ClientMessage::DatastoreOperation {
            request: Some(r), ..
        } => assert!(matches!(r.op, Op::Write { value: None, .. })),
        other => panic!("{other:?}"),
    }
    let s3 = step(&all, "WS-2", "3. ")[0];
    match ClientMessage::decode(&s3.frame.as_ref().unwrap().to_string()).unwrap() {
        ClientMessage::DatastoreOperation { api_key, .. } => assert_eq!(api_key, None),
        other => panic!("{other:?}"),
    }
}
