//! Unit tests of every hub rule, driven without I/O.

use super::*;
use serde_json::json;

const SID: &str = "server-1";
const T0: u64 = 1_796_313_875_834;
const T0_ISO: &str = "2026-12-03T16:04:35.834Z";

struct H {
    hub: Hub,
}

impl H {
    fn new() -> Self {
        Self::with(None, false)
    }

    fn with(api_key: Option<&str>, public_read: bool) -> Self {
        let mut config = HubConfig::new(SID);
        config.api_key = api_key.map(String::from);
        config.public_read = public_read;
        H {
            hub: Hub::new(config, MemoryStore::new()),
        }
    }

    /// Connects `conn` and swallows the greeting.
    fn conn(&mut self, conn: ConnId, client_id: Option<&str>) {
        self.hub
            .connect(conn, client_id.map(String::from), T0)
            .unwrap();
        assert_eq!(self.out(), vec![(conn, json!({ "id": SID }))]);
    }

    fn send(&mut self, conn: ConnId, msg: Value) -> Vec<(ConnId, Value)> {
        self.hub.handle_text(conn, &msg.to_string(), T0);
        self.out()
    }

    fn raw(&mut self, conn: ConnId, text: &str) -> Vec<(ConnId, Value)> {
        self.hub.handle_text(conn, text, T0);
        self.out()
    }

    fn out(&mut self) -> Vec<(ConnId, Value)> {
        let mut v = Vec::new();
        while let Some(o) = self.hub.poll_output() {
            match o {
                Output::Text { conn, text } => {
                    v.push((conn, serde_json::from_str(&text).expect("hub sends JSON")))
                }
                Output::Binary { conn, bytes } => v.push((conn, json!({ "binary": bytes.len() }))),
                Output::Close { conn, reason } => {
                    v.push((conn, json!({ "close": format!("{reason:?}") })))
                }
            }
        }
        v
    }

    /// Raw text of the next outputs (to check field order).
    fn texts(&mut self) -> Vec<(ConnId, String)> {
        let mut v = Vec::new();
        while let Some(o) = self.hub.poll_output() {
            if let Output::Text { conn, text } = o {
                v.push((conn, text.to_string()));
            }
        }
        v
    }

    fn register(&mut self, conn: ConnId, events: Value, send_values: bool) {
        let out = self.send(
            conn,
            json!({"msg":"register-events","events":events,"sendValues":send_values}),
        );
        assert_eq!(out, vec![], "register-events has no reply");
    }

    fn op(&mut self, conn: ConnId, request: Value) -> Vec<(ConnId, Value)> {
        self.send(conn, json!({"msg":"datastore-operation","request":request}))
    }

    fn rest(&mut self, req: RestRequest) -> RestResponse {
        self.hub.handle_rest(&req, T0)
    }
}

fn op_ok(id: Value, field: &str, v: Value) -> Value {
    let mut r = serde_json::Map::new();
    r.insert("id".into(), id);
    r.insert(field.into(), v);
    json!({ "response": r })
}

fn err_obj(id: i64, message: &str, code: &str) -> Value {
    json!({"response":{"id":id,"error":{"message":message,"code":code}}})
}

#[test]
fn greets_and_refuses_the_server_id() {
    let mut h = H::new();
    h.hub.connect(1, Some("clientA".into()), T0).unwrap();
    assert_eq!(h.texts(), vec![(1, format!("{{\"id\":\"{SID}\"}}"))]);
    assert_eq!(
        h.hub.connect(2, Some(SID.into()), T0),
        Err(ConnectError::ServerIdConflict)
    );
    assert_eq!(
        h.hub.connect(1, None, T0),
        Err(ConnectError::DuplicateConnection(1))
    );
    h.hub.connect(3, None, T0).unwrap();
    assert_eq!(h.out(), vec![(3, json!({ "id": SID }))]);
    assert_eq!(h.hub.stats().connections, 2);
    assert_eq!(h.hub.client_id(1), Some("clientA"));
    assert_eq!(h.hub.client_id(3), None);
}

#[test]
fn write_answers_the_writer_and_notifies_other_subscribers_in_reference_field_order() {
    let mut h = H::new();
    h.conn(1, Some("clientA"));
    h.conn(2, Some("clientB"));
    h.register(2, json!([{"bucket":"b1","key":"*"}]), true);
    h.register(1, json!([{"bucket":"b1","key":"*"}]), true);
    h.hub.handle_text(
        1,
        r#"{"msg":"datastore-operation","request":{"op":"write","id":1,"bucket":"b1","key":"k1","value":{"name":"x","n":1}}}"#,
        T0,
    );
    assert_eq!(
        h.texts(),
        vec![
            (
                2,
                format!(
                    r#"{{"bucket":"b1","key":"k1","timestamp":"{T0_ISO}","originRequestId":1,"clientId":"clientA","value":{{"name":"x","n":1}}}}"#
                )
            ),
            (
                1,
                r#"{"response":{"id":1,"location":"/_data/b1/k1"}}"#.to_string()
            ),
        ]
    );
}

#[test]
fn ids_keep_their_json_type_and_absent_ids_stay_absent() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(2, None);
    h.register(2, json!([{"bucket":"b1","key":"*"}]), true);
    let out = h.op(
        1,
        json!({"op":"write","id":"w2","bucket":"b1","key":"k","value":0}),
    );
    assert_eq!(
        out[0],
        (
            2,
            json!({"bucket":"b1","key":"k","timestamp":T0_ISO,"originRequestId":"w2","value":0})
        )
    );
    assert_eq!(
        out[1],
        (1, op_ok(json!("w2"), "location", json!("/_data/b1/k")))
    );
    let out = h.op(
        1,
        json!({"op":"write","bucket":"b1","key":"noid","value":0}),
    );
    assert_eq!(
        out,
        vec![
            (
                2,
                json!({"bucket":"b1","key":"noid","timestamp":T0_ISO,"value":0})
            ),
            (1, json!({"response":{"location":"/_data/b1/noid"}})),
        ]
    );
}

#[test]
fn generated_keys_and_coerced_names() {
    let mut h = H::new();
    h.conn(1, None);
    let out = h.op(
        1,
        json!({"op":"write","id":2,"bucket":"b1","value":{"auto":true}}),
    );
    assert_eq!(
        out,
        vec![(
            1,
            op_ok(json!(2), "location", json!(format!("/_data/b1/gen_{T0}")))
        )]
    );
    let out = h.op(
        1,
        json!({"op":"write","id":3,"bucket":"b1","key":"","value":"str"}),
    );
    assert_eq!(
        out,
        vec![(
            1,
            op_ok(json!(3), "location", json!(format!("/_data/b1/gen_{T0}-1")))
        )]
    );
    let out = h.op(
        1,
        json!({"op":"write","id":10,"bucket":123,"key":456,"value":"n"}),
    );
    assert_eq!(
        out,
        vec![(1, op_ok(json!(10), "location", json!("/_data/123/456")))]
    );
    let out = h.op(
        1,
        json!({"op":"write","id":11,"bucket":"b1","key":"a b/c","value":"sp"}),
    );
    assert_eq!(
        out,
        vec![(1, op_ok(json!(11), "location", json!("/_data/b1/a b/c")))]
    );
}

#[test]
fn fail_if_exists_and_invalid_buckets_answer_typed_errors_without_events() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(2, None);
    h.register(2, json!([{"bucket":"*","key":"*"}]), true);
    h.op(
        1,
        json!({"op":"write","id":1,"bucket":"b1","key":"k1","value":1}),
    );
    let out = h.op(
        1,
        json!({"op":"write","id":4,"bucket":"b1","key":"k1","value":2,"failIfExists":true}),
    );
    assert_eq!(
        out,
        vec![(1, err_obj(4, "Key k1 already exists", "EEXISTS"))]
    );
    let out = h.op(
        1,
        json!({"op":"write","id":5,"bucket":"b1","key":"k2","value":[1],"failIfExists":true}),
    );
    assert_eq!(out.len(), 2);
    let out = h.op(
        1,
        json!({"op":"write","id":12,"bucket":"CON","key":"k","value":1}),
    );
    assert_eq!(
        out,
        vec![(1, err_obj(12, "Invalid bucket name", "EINVALIDBUCKET"))]
    );
}

#[test]
fn reads_values_lists_and_not_found() {
    let mut h = H::new();
    h.conn(1, None);
    h.op(
        1,
        json!({"op":"write","id":1,"bucket":"b1","key":"k1","value":{"a":1}}),
    );
    h.op(
        1,
        json!({"op":"write","id":2,"bucket":"b1","key":"knull","value":null}),
    );
    h.op(1, json!({"op":"write","id":3,"bucket":"b1","key":"kundef"}));
    assert_eq!(
        h.op(1, json!({"op":"read","id":20,"bucket":"b1","key":"k1"})),
        vec![(1, op_ok(json!(20), "value", json!({"a":1})))]
    );
    assert_eq!(
        h.op(1, json!({"op":"read","id":23,"bucket":"b1","key":"knull"})),
        vec![(1, op_ok(json!(23), "value", json!(null)))]
    );
    assert_eq!(
        h.op(1, json!({"op":"read","id":24,"bucket":"b1","key":"kundef"})),
        vec![(1, json!({"response":{"id":24}}))]
    );
    assert_eq!(
        h.op(
            1,
            json!({"op":"read","id":21,"bucket":"b1","key":"missing"})
        ),
        vec![(1, err_obj(21, "Key missing not found", "ENOTFOUND"))]
    );
    assert_eq!(
        h.op(1, json!({"op":"read","id":22,"bucket":"nob","key":"k"})),
        vec![(1, err_obj(22, "Bucket nob not found", "ENOTFOUND"))]
    );
    let list = json!([
        {"key":"k1","timestamp":T0_ISO,"size":7,"content":{"a":1}},
        {"key":"knull","timestamp":T0_ISO,"size":4,"content":null},
        {"key":"kundef","timestamp":T0_ISO,"size":0},
    ]);
    assert_eq!(
        h.op(1, json!({"op":"read","id":25,"bucket":"b1","key":""})),
        vec![(1, op_ok(json!(25), "value", list.clone()))]
    );
    assert_eq!(
        h.op(1, json!({"op":"read","id":26,"bucket":"b1"})),
        vec![(1, op_ok(json!(26), "value", list))]
    );
    assert_eq!(
        h.op(1, json!({"op":"read","id":27,"bucket":"nob"})),
        vec![(1, op_ok(json!(27), "value", json!([])))]
    );
}

#[test]
fn filter_is_an_inclusive_prefix_match() {
    let mut h = H::new();
    h.conn(1, None);
    for k in ["a", "k1", "k2", "sess"] {
        h.op(
            1,
            json!({"op":"write","id":1,"bucket":"b1","key":k,"value":1}),
        );
    }
    let keys = |out: Vec<(ConnId, Value)>| -> Vec<String> {
        out[0].1["response"]["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap().to_string())
            .collect()
    };
    let out = h.op(
        1,
        json!({"op":"filter","id":33,"bucket":"b1","filter":"k1","keysOnly":true}),
    );
    assert_eq!(keys(out.clone()), ["k1"]);
    assert!(out[0].1["response"]["value"][0].get("content").is_none());
    let out = h.op(
        1,
        json!({"op":"filter","id":31,"bucket":"b1","filter":"k","keysOnly":false}),
    );
    assert_eq!(keys(out.clone()), ["k1", "k2"]);
    assert_eq!(out[0].1["response"]["value"][0]["content"], json!(1));
    assert_eq!(
        keys(h.op(
            1,
            json!({"op":"filter","id":30,"bucket":"b1","keysOnly":true})
        ))
        .len(),
        4
    );
    assert_eq!(
        h.op(
            1,
            json!({"op":"filter","id":35,"bucket":"nob","filter":"k"})
        ),
        vec![(1, op_ok(json!(35), "value", json!([])))]
    );
}

#[test]
fn patches_answer_the_document_and_notify_like_the_reference() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(2, None);
    h.register(2, json!([{"bucket":"b1","key":"*"}]), true);
    h.op(
        1,
        json!({"op":"write","id":1,"bucket":"b1","key":"k1","value":{"name":"x","n":1}}),
    );
    h.out();
    let out = h.op(1, json!({"op":"patch","id":40,"bucket":"b1","key":"k1","patch":[{"op":"replace","path":"/n","value":2},{"op":"add","path":"/tags","value":["a"]}]}));
    let doc = json!({"name":"x","n":2,"tags":["a"]});
    assert_eq!(
        out,
        vec![
            (
                2,
                json!({"bucket":"b1","key":"k1","timestamp":null,"originRequestId":null,"value":doc})
            ),
            (1, op_ok(json!(40), "value", doc.clone())),
        ]
    );
    let out = h.op(1, json!({"op":"patch","id":41,"bucket":"b1","key":"k1","patch":[{"op":"remove","path":"/tags"}],"removeDataFromReply":true}));
    assert_eq!(out[1], (1, op_ok(json!(41), "value", json!({}))));
    let out = h.op(1, json!({"op":"patch","id":48,"bucket":"b1","key":"k1","patch":{"op":"replace","path":"/n","value":3}}));
    assert_eq!(
        out[1],
        (1, op_ok(json!(48), "value", json!({"name":"x","n":3})))
    );

    let out = h.op(
        1,
        json!({"op":"patch","id":45,"bucket":"b1","key":"k1","patch":[{"op":"bogus","path":"/n"}]}),
    );
    assert_eq!(
        out,
        vec![(
            1,
            json!({"response":{"id":45,"error":{"message":"invalid operation: bogus","name":"InvalidPatch","code":"EINVALIDPATCH"}}})
        )]
    );
    let out = h.op(1, json!({"op":"patch","id":46,"bucket":"b1","key":"k1","patch":[{"op":"replace","path":"/nope/deeper","value":1}]}));
    assert_eq!(
        out[0].1["response"]["error"]["name"],
        json!("PatchConflictError")
    );
    assert_eq!(
        out[0].1["response"]["error"]["code"],
        json!("EINVALIDPATCH")
    );
    let out = h.op(1, json!({"op":"patch","id":47,"bucket":"b1","key":"k1","patch":[{"op":"test","path":"/n","value":999}]}));
    assert_eq!(
        out,
        vec![(
            1,
            json!({"response":{"id":47,"error":{"message":"Patch test failed","name":"PatchTestFailed","code":"EINVALIDPATCH"}}})
        )]
    );
    let out = h.op(1, json!({"op":"patch","id":43,"bucket":"b1","key":"missing","patch":[{"op":"add","path":"/a","value":1}]}));
    assert_eq!(
        out,
        vec![(1, err_obj(43, "Key missing not found", "ENOTFOUND"))]
    );
    let out = h.op(
        1,
        json!({"op":"patch","id":44,"bucket":"nob","key":"k","patch":[]}),
    );
    assert_eq!(
        out,
        vec![(1, err_obj(44, "Bucket nob not found", "ENOTFOUND"))]
    );
    assert_eq!(
        h.op(1, json!({"op":"read","id":49,"bucket":"b1","key":"k1"})),
        vec![(1, op_ok(json!(49), "value", json!({"name":"x","n":3})))]
    );
}

#[test]
fn removes_announce_deletes_even_for_missing_keys() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(2, None);
    h.register(2, json!([{"bucket":"b1","key":"*"}]), true);
    h.op(
        1,
        json!({"op":"write","id":1,"bucket":"b1","key":"k2","value":1}),
    );
    h.out();
    let delete = json!({"bucket":"b1","key":"k2","timestamp":null,"originRequestId":50,"isDeleted":true,"value":null});
    assert_eq!(
        h.op(1, json!({"op":"remove","id":50,"bucket":"b1","key":"k2"})),
        vec![(2, delete), (1, json!({"response":{"id":50}}))]
    );
    let out = h.op(1, json!({"op":"remove","id":51,"bucket":"b1","key":"k2"}));
    assert_eq!(out[0].1["isDeleted"], json!(true));
    assert_eq!(out[1], (1, json!({"response":{"id":51}})));
    assert_eq!(
        h.op(1, json!({"op":"remove","id":52,"bucket":"nob","key":"k"})),
        vec![(1, err_obj(52, "Bucket nob not found", "ENOTFOUND"))]
    );
}

#[test]
fn registrations_replace_each_other_and_control_values() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(2, None);
    let write = |h: &mut H, id: i64, b: &str, k: &str| {
        h.op(
            1,
            json!({"op":"write","id":id,"bucket":b,"key":k,"value":"v"}),
        )
    };
    h.register(2, json!([{"bucket":"b1","key":"*"}]), false);
    assert_eq!(
        write(&mut h, 60, "b1", "k3")[0],
        (
            2,
            json!({"bucket":"b1","key":"k3","timestamp":T0_ISO,"originRequestId":60})
        )
    );
    // sendValues absent counts as false (the reference's behaviour).
    h.send(
        2,
        json!({"msg":"register-events","events":[{"bucket":"b1","key":"*"}]}),
    );
    assert!(write(&mut h, 61, "b1", "k3")[0].1.get("value").is_none());
    h.register(
        2,
        json!([{"bucket":"*","key":"k1"},{"bucket":"b2","key":"x"}]),
        true,
    );
    assert_eq!(write(&mut h, 62, "b1", "k1").len(), 2);
    assert_eq!(write(&mut h, 63, "b2", "k1").len(), 2);
    assert_eq!(write(&mut h, 64, "b1", "k3").len(), 1);
    assert_eq!(write(&mut h, 65, "b2", "x").len(), 2);
    h.register(2, json!([{"bucket":"b1","key":"k*"}]), true);
    assert_eq!(
        write(&mut h, 66, "b1", "k1").len(),
        1,
        "no partial wildcards"
    );
    h.register(
        2,
        json!([{"bucket":"*","key":"*"},{"bucket":"*","key":"*"}]),
        true,
    );
    h.register(1, json!([{"bucket":"b1","key":"*"}]), true);
    let out = write(&mut h, 67, "b1", "k1");
    assert_eq!(
        out.iter().filter(|(c, _)| *c == 1).count(),
        1,
        "the writer gets only its response"
    );
    assert_eq!(
        out.iter().filter(|(c, _)| *c == 2).count(),
        1,
        "duplicates count once"
    );
    h.register(2, json!([]), true);
    assert_eq!(
        write(&mut h, 68, "b1", "k1").len(),
        1,
        "events:[] unsubscribes"
    );
}

#[test]
fn register_events_without_an_events_array_is_refused_for_that_connection_alone() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(2, None);
    h.conn(6, Some("clientF"));
    h.register(2, json!([{"bucket":"b1","key":"*"}]), true);
    h.register(6, json!([{"bucket":"b1","key":"*"}]), true);
    for bad in [
        json!({"msg":"register-events","sendValues":true}),
        json!({"msg":"register-events","events":"b1","sendValues":true}),
    ] {
        let out = h.send(6, bad);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 6);
        assert_eq!(out[0].1["response"]["error"]["code"], json!("EBADREQUEST"));
        assert!(out[0].1["response"].get("id").is_none());
    }
    let out = h.op(
        1,
        json!({"op":"write","id":95,"bucket":"b1","key":"k1","value":"afterF"}),
    );
    assert_eq!(
        out.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [2, 6, 1],
        "old registration kept, others unaffected"
    );
    assert_eq!(
        out[2].1,
        op_ok(json!(95), "location", json!("/_data/b1/k1"))
    );
}

#[test]
fn signal_events_are_relayed_to_others_and_never_stored() {
    let mut h = H::new();
    h.conn(1, Some("clientA"));
    h.conn(2, None);
    h.register(1, json!([{"bucket":"*","key":"*"}]), true);
    h.register(2, json!([{"bucket":"*","key":"*"}]), true);
    let out = h.send(1, json!({"msg":"event-broadcast","event":{"bucket":"b1","key":"evt","value":{"hello":"world"}}}));
    assert_eq!(
        out,
        vec![(
            2,
            json!({"bucket":"b1","key":"evt","timestamp":T0_ISO,"clientId":"clientA","value":{"hello":"world"}})
        )]
    );
    let out = h.send(
        1,
        json!({"msg":"event-broadcast","event":{"bucket":7,"key":8,"value":1}}),
    );
    assert_eq!(out[0].1["bucket"], json!("7"));
    assert_eq!(out[0].1["key"], json!("8"));
    let out = h.send(
        1,
        json!({"msg":"event-broadcast","event":{"bucket":"b1","key":"evt2"}}),
    );
    assert!(out[0].1.get("value").is_none());
    assert_eq!(
        h.op(1, json!({"op":"read","id":70,"bucket":"b1","key":"evt"})),
        vec![(1, err_obj(70, "Bucket b1 not found", "ENOTFOUND"))]
    );
    let out = h.send(1, json!({"msg":"event-broadcast"}));
    assert_eq!(out[0].1["response"]["error"]["code"], json!("EBADREQUEST"));
}

#[test]
fn ping_pongs_with_the_time() {
    let mut h = H::new();
    h.conn(1, None);
    h.hub.handle_text(1, r#"{"msg":"ping"}"#, T0);
    assert_eq!(h.texts(), vec![(1, format!(r#"{{"pong":"{T0_ISO}"}}"#))]);
}

fn binary(kind: u8, bucket: &str, key: &str, api_key: &str, payload: &[u8]) -> Vec<u8> {
    BinaryHeader {
        kind,
        bucket: bucket.into(),
        key: key.into(),
        api_key: api_key.into(),
    }
    .encode(payload)
    .unwrap()
}

#[test]
fn binary_frames_are_relayed_whole_to_other_subscribers() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(2, None);
    h.conn(3, None);
    h.register(1, json!([{"bucket":"b1","key":"*"}]), true);
    h.register(2, json!([{"bucket":"b1","key":"bin1"}]), false);
    let frame = binary(1, "b1", "bin1", "", b"PAYLOAD!");
    h.hub.handle_binary(1, &frame, T0);
    match h.hub.poll_output() {
        Some(Output::Binary { conn: 2, bytes }) => assert_eq!(&bytes[..], &frame[..]),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(h.hub.poll_output(), None);
    // Exactly 128 bytes is relayed; 127 is dropped; so is a bad header.
    h.hub
        .handle_binary(1, &binary(2, "b1", "bin1", "", b""), T0);
    assert_eq!(h.out(), vec![(2, json!({"binary":128}))]);
    h.hub
        .handle_binary(1, &binary(2, "b1", "bin1", "", b"")[..127], T0);
    let mut overrun = binary(2, "b1", "bin1", "", b"x");
    overrun[1] = 120;
    h.hub.handle_binary(1, &overrun, T0);
    let mut not_utf8 = binary(2, "b1", "bin1", "", b"x");
    not_utf8[4] = 0xff;
    h.hub.handle_binary(1, &not_utf8, T0);
    h.hub.handle_binary(1, &binary(1, "b9", "x", "", b"zz"), T0);
    h.hub.handle_binary(1, &[], T0);
    assert_eq!(h.out(), vec![]);
}

#[test]
fn bad_frames_get_the_documented_answers() {
    let mut h = H::new();
    h.conn(1, None);
    let not_json = json!({"response":{"error":"Message is not valid JSON"}});
    for text in [
        "hello, not json",
        "null",
        "{not json",
        "[1]",
        "5",
        "\"x\"",
        "",
    ] {
        assert_eq!(h.raw(1, text), vec![(1, not_json.clone())], "{text:?}");
    }
    assert_eq!(h.send(1, json!({"msg":"no-such-msg","foo":1})), vec![]);
    assert_eq!(
        h.send(
            1,
            json!({"request":{"op":"read","id":81,"bucket":"b1","key":"k1"}})
        ),
        vec![]
    );
    assert_eq!(h.send(1, json!({"msg":5})), vec![]);
    assert_eq!(
        h.op(1, json!({"op":"bogus","id":80,"bucket":"b1","key":"k1"})),
        vec![(1, err_obj(80, "Unknown op bogus", "EUNKNOWNOP"))]
    );
    let out = h.send(1, json!({"msg":"datastore-operation"}));
    assert_eq!(out[0].1["response"]["error"]["code"], json!("EBADREQUEST"));
    let out = h.send(1, json!({"msg":"datastore-operation","request":"x"}));
    assert_eq!(out[0].1["response"]["error"]["code"], json!("EBADREQUEST"));
    // Wrong types inside a request are coerced or refused, never a panic.
    let out = h.op(
        1,
        json!({"op":"write","id":1,"bucket":{"x":1},"key":[1],"value":1}),
    );
    assert_eq!(
        out,
        vec![(1, err_obj(1, "Invalid bucket name", "EINVALIDBUCKET"))]
    );
    let out = h.op(1, json!({"op":"read","id":[1],"bucket":null,"key":{"a":1}}));
    assert_eq!(out[0].1["response"]["id"], json!([1]));
    // Frames from unknown connections are ignored.
    h.hub.handle_text(99, "{\"msg\":\"ping\"}", T0);
    h.hub.handle_binary(99, &binary(1, "b", "k", "", b""), T0);
    assert_eq!(h.out(), vec![]);
}

#[test]
fn api_key_rules_for_every_message_kind() {
    let mut h = H::with(Some("secret"), false);
    h.conn(1, None);
    h.conn(2, None);
    let na = |id: i64| json!({"response":{"id":id,"error":"Not authorized"}});
    let req = |op: &str, id: i64| json!({"op":op,"id":id,"bucket":"b1","key":"k1","value":{"v":1},"patch":[]});
    for (i, op) in ["write", "read", "filter", "patch", "remove", "bogus"]
        .iter()
        .enumerate()
    {
        let id = i as i64;
        assert_eq!(h.op(1, req(op, id)), vec![(1, na(id))], "{op} without key");
        let out = h.send(
            1,
            json!({"msg":"datastore-operation","apiKey":"wrong","request":req(op, id)}),
        );
        assert_eq!(out, vec![(1, na(id))], "{op} with wrong key");
    }
    // An apiKey inside the request is not honoured.
    let mut inner = req("write", 4);
    inner["apiKey"] = json!("secret");
    assert_eq!(h.op(1, inner), vec![(1, na(4))]);
    let out = h.send(
        1,
        json!({"msg":"datastore-operation","apiKey":"secret","request":req("write", 3)}),
    );
    assert_eq!(
        out,
        vec![(1, op_ok(json!(3), "location", json!("/_data/b1/k1")))]
    );
    // Registration: refused with a reason, old registration kept.
    h.send(2, json!({"msg":"register-events","apiKey":"secret","events":[{"bucket":"b1","key":"*"}],"sendValues":true}));
    let out = h.send(
        2,
        json!({"msg":"register-events","apiKey":"wrong","events":[],"sendValues":true}),
    );
    assert_eq!(
        out,
        vec![(2, json!({"response":{"error":"Not authorized"}}))]
    );
    let out = h.send(
        1,
        json!({"msg":"datastore-operation","apiKey":"secret","request":req("write", 43)}),
    );
    assert_eq!(out.len(), 2, "B still registered");
    // Signals and binary events need the key.
    let nae = json!({"response":{"error":"Not authorized to send event"}});
    assert_eq!(
        h.send(
            1,
            json!({"msg":"event-broadcast","event":{"bucket":"b1","key":"e","value":1}})
        ),
        vec![(1, nae.clone())]
    );
    assert_eq!(
        h.send(
            1,
            json!({"msg":"event-broadcast","apiKey":"wrong","event":{"bucket":"b1","key":"e"}})
        ),
        vec![(1, nae.clone())]
    );
    assert_eq!(h.send(1, json!({"msg":"event-broadcast","apiKey":"secret","event":{"bucket":"b1","key":"e","value":3}})).len(), 1);
    for key in ["", "wrong", "secre", "secrett"] {
        h.hub
            .handle_binary(1, &binary(1, "b1", "bin", key, b"p1"), T0);
        assert_eq!(h.out(), vec![(1, nae.clone())], "binary with {key:?}");
    }
    h.hub
        .handle_binary(1, &binary(1, "b1", "bin", "secret", b"p3"), T0);
    assert_eq!(h.out(), vec![(2, json!({"binary":130}))]);
    // Ping needs no key.
    assert_eq!(h.send(1, json!({"msg":"ping"})).len(), 1);
    // Replication clients need it too.
    assert_eq!(
        h.send(
            1,
            json!({"msg":"register-replication-client","events":[{"bucket":"b1","key":"*"}]})
        ),
        vec![(1, json!({"response":{"error":"Not authorized"}}))]
    );
}

#[test]
fn public_read_lets_reads_and_registrations_through_only() {
    let mut h = H::with(Some("secret"), true);
    h.conn(1, None);
    h.conn(2, None);
    h.send(1, json!({"msg":"datastore-operation","apiKey":"secret","request":{"op":"write","id":3,"bucket":"b1","key":"k1","value":{"v":3}}}));
    assert_eq!(
        h.op(1, json!({"op":"read","id":10,"bucket":"b1","key":"k1"})),
        vec![(1, op_ok(json!(10), "value", json!({"v":3})))]
    );
    assert_eq!(
        h.op(
            1,
            json!({"op":"read","id":13,"bucket":"b1","key":"missing"})
        ),
        vec![(1, err_obj(13, "Key missing not found", "ENOTFOUND"))]
    );
    assert_eq!(
        h.op(
            1,
            json!({"op":"filter","id":20,"bucket":"b1","keysOnly":true})
        )[0]
        .1["response"]["value"][0]["key"],
        json!("k1")
    );
    for op in ["write", "patch", "remove", "bogus"] {
        let out = h.op(
            1,
            json!({"op":op,"id":30,"bucket":"b1","key":"k1","value":1,"patch":[]}),
        );
        assert_eq!(
            out,
            vec![(1, json!({"response":{"id":30,"error":"Not authorized"}}))],
            "{op}"
        );
    }
    h.send(2, json!({"msg":"register-events","apiKey":"wrong","events":[{"bucket":"b1","key":"*"}],"sendValues":true}));
    let out = h.send(1, json!({"msg":"datastore-operation","apiKey":"secret","request":{"op":"write","id":40,"bucket":"b1","key":"k2","value":"a"}}));
    assert_eq!(out.len(), 2, "registered without a key");
    assert_eq!(
        h.send(
            1,
            json!({"msg":"event-broadcast","event":{"bucket":"b1","key":"e","value":1}})
        ),
        vec![(
            1,
            json!({"response":{"error":"Not authorized to send event"}})
        )]
    );
    let out = h.send(
        2,
        json!({"msg":"register-replication-client","events":[{"bucket":"b1","key":"*"}]}),
    );
    assert_eq!(out[0].1["bucket"], json!("b1"));
    assert_eq!(out[0].1["data"].as_array().map(Vec::len), Some(2));
}

#[test]
fn replication_clients_get_dumps_and_always_values() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(3, None);
    h.op(
        1,
        json!({"op":"write","id":1,"bucket":"b1","key":"k1","value":{"v":3}}),
    );
    h.op(
        1,
        json!({"op":"write","id":1,"bucket":"b2","key":"x","value":1}),
    );
    let out = h.send(
        3,
        json!({"msg":"register-replication-client","events":[{"bucket":"b1","key":"*"}]}),
    );
    assert_eq!(
        out,
        vec![(
            3,
            json!({"bucket":"b1","data":[{"key":"k1","timestamp":T0_ISO,"size":7,"content":{"v":3}}]})
        )]
    );
    let out = h.send(
        3,
        json!({"msg":"register-replication-client","events":[{"bucket":"*","key":"*"}]}),
    );
    assert_eq!(
        out.iter()
            .map(|(_, v)| v["bucket"].clone())
            .collect::<Vec<_>>(),
        [json!("b1"), json!("b2")]
    );
    let out = h.op(
        1,
        json!({"op":"write","id":50,"bucket":"b1","key":"k3","value":{"r":1}}),
    );
    assert_eq!(out[0].1["value"], json!({"r":1}));
}

#[test]
fn session_keys_follow_their_last_holder() {
    let mut h = H::new();
    h.conn(1, Some("A"));
    h.conn(2, Some("B"));
    h.conn(3, Some("C"));
    h.conn(4, Some("D"));
    h.register(2, json!([{"bucket":"b1","key":"*"}]), true);
    let w = |h: &mut H, c: ConnId, k: &str, session: bool| {
        let mut r = json!({"op":"write","id":1,"bucket":"b1","key":k,"value":"v"});
        if session {
            r["expire"] = json!("session");
        }
        h.op(c, r);
    };
    let delete =
        |k: &str| json!({"bucket":"b1","key":k,"timestamp":null,"isDeleted":true,"value":null});
    // One holder: removed when it closes; list shows expire "session".
    w(&mut h, 3, "sessC", true);
    let out = h.op(
        1,
        json!({"op":"filter","id":90,"bucket":"b1","filter":"sess","keysOnly":true}),
    );
    assert_eq!(out[0].1["response"]["value"][0]["expire"], json!("session"));
    h.hub.disconnect(3, T0);
    assert_eq!(h.out(), vec![(2, delete("sessC"))]);
    assert_eq!(
        h.op(1, json!({"op":"read","id":91,"bucket":"b1","key":"sessC"}))[0].1["response"]["error"]
            ["code"],
        json!("ENOTFOUND")
    );
    // Two holders: the key lives until the last one closes.
    h.conn(3, Some("C"));
    w(&mut h, 3, "shared", true);
    w(&mut h, 4, "shared", true);
    h.out();
    h.hub.disconnect(4, T0);
    assert_eq!(h.out(), vec![]);
    assert_eq!(
        h.op(1, json!({"op":"read","id":92,"bucket":"b1","key":"shared"})),
        vec![(1, op_ok(json!(92), "value", json!("v")))]
    );
    h.hub.disconnect(3, T0);
    assert_eq!(h.out(), vec![(2, delete("shared"))]);
    // A later normal write makes it permanent (WS or REST).
    h.conn(3, Some("C"));
    w(&mut h, 3, "perm", true);
    w(&mut h, 1, "perm", false);
    w(&mut h, 3, "perm2", true);
    let r = h.rest(
        RestRequest::new("PUT", "/_data/b1/perm2")
            .header("Content-Type", "application/json")
            .body("{\"x\":1}"),
    );
    assert_eq!(r.status, 200);
    h.out();
    h.hub.disconnect(3, T0);
    assert_eq!(h.out(), vec![]);
    assert_eq!(
        h.op(1, json!({"op":"read","id":93,"bucket":"b1","key":"perm"}))
            .len(),
        1
    );
    let out = h.op(
        1,
        json!({"op":"filter","id":94,"bucket":"b1","filter":"perm","keysOnly":true}),
    );
    assert_eq!(
        out[0].1["response"]["value"],
        json!([{"key":"perm","timestamp":T0_ISO,"size":3},{"key":"perm2","timestamp":T0_ISO,"size":7,"expire":null}])
    );
    // A removed session key is forgotten: no delete when its holder closes.
    h.conn(3, Some("C"));
    w(&mut h, 3, "gone", true);
    h.op(1, json!({"op":"remove","id":95,"bucket":"b1","key":"gone"}));
    h.out();
    h.hub.disconnect(3, T0);
    assert_eq!(h.out(), vec![]);
    // Patches keep the session status.
    h.conn(3, Some("C"));
    h.op(
        3,
        json!({"op":"write","id":1,"bucket":"b1","key":"p","value":{"a":1},"expire":"session"}),
    );
    h.op(1, json!({"op":"patch","id":96,"bucket":"b1","key":"p","patch":[{"op":"replace","path":"/a","value":2}]}));
    h.out();
    h.hub.disconnect(3, T0);
    assert_eq!(h.out(), vec![(2, delete("p"))]);
    // Dropping the bucket over REST forgets its session keys.
    h.conn(3, Some("C"));
    w(&mut h, 3, "s", true);
    assert_eq!(h.rest(RestRequest::new("DELETE", "/_data/b1")).status, 200);
    h.out();
    h.hub.disconnect(3, T0);
    assert_eq!(h.out(), vec![]);
}

#[test]
fn close_drops_the_connection_and_counts_slow_consumers() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(2, None);
    h.register(2, json!([{"bucket":"b1","key":"*"}]), true);
    h.op(
        1,
        json!({"op":"write","id":1,"bucket":"b1","key":"s","value":1,"expire":"session"}),
    );
    h.out();
    h.hub.close(1, CloseReason::SlowConsumer, T0);
    assert_eq!(
        h.out(),
        vec![
            (
                2,
                json!({"bucket":"b1","key":"s","timestamp":null,"isDeleted":true,"value":null})
            ),
            (1, json!({"close":"SlowConsumer"})),
        ]
    );
    assert!(!h.hub.is_connected(1));
    h.hub.close(1, CloseReason::SlowConsumer, T0);
    assert_eq!(h.out(), vec![]);
    let s = h.hub.stats();
    assert_eq!(
        (s.connections, s.connections_total, s.slow_consumer_closes),
        (1, 2, 1)
    );
    h.hub.close(2, CloseReason::Shutdown, T0);
    assert_eq!(h.hub.stats().slow_consumer_closes, 1);
}

fn json_put(path: &str, body: &str) -> RestRequest {
    RestRequest::new("PUT", path)
        .header("Content-Type", "application/json")
        .body(body)
}

#[test]
fn rest_reads_writes_and_lists() {
    let mut h = H::new();
    h.conn(1, None);
    h.register(1, json!([{"bucket":"*","key":"*"}]), true);
    let r = h.rest(json_put("/_data/b1/k1", r#"{"name":"x","n":1}"#));
    assert_eq!(
        (r.status, r.body.len(), r.header("Content-Type")),
        (200, 0, None)
    );
    assert_eq!(r.header("X-Timestamp"), Some(T0_ISO));
    assert!(r.header("X-Served-By").is_some());
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(
        h.out(),
        vec![(
            1,
            json!({"bucket":"b1","key":"k1","timestamp":T0_ISO,"originRequestId":null,"value":{"name":"x","n":1}})
        )]
    );
    let r = h.rest(
        RestRequest::new("POST", "/_data/b1/k2")
            .header("content-type", "application/json; charset=utf-8")
            .body("[1,2,3]"),
    );
    assert_eq!(r.status, 200);
    let r = h.rest(
        RestRequest::new("POST", "/_data/b1")
            .header("Content-Type", "application/json")
            .body(r#"{"auto":true}"#),
    );
    assert_eq!((r.status, r.text()), (201, "Created".to_string()));
    assert_eq!(
        r.header("Location"),
        Some(format!("/_data/b1/gen_{T0}").as_str())
    );
    assert_eq!(r.header("Access-Control-Expose-Headers"), Some("Location"));
    h.out();
    let r = h.rest(RestRequest::new("GET", "/_data/b1/k1"));
    assert_eq!(
        (r.status, r.text()),
        (200, r#"{"name":"x","n":1}"#.to_string())
    );
    assert_eq!(r.header("X-Write-Timestamp"), Some(T0_ISO));
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    let r = h.rest(RestRequest::new("GET", "/_data/b1/missing"));
    assert_eq!(
        (r.status, r.text()),
        (
            404,
            r#"{"error":"Key not found in database [missing]"}"#.to_string()
        )
    );
    let r = h.rest(RestRequest::new("GET", "/_data/nob/k"));
    assert_eq!(
        (r.status, r.text()),
        (404, r#"{"error":"Bucket nob not found"}"#.to_string())
    );
    let r = h.rest(RestRequest::new("GET", "/_data/b1?keysOnly=1&filter=k"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        json!([{"key":"k1","timestamp":T0_ISO,"size":18,"expire":null},{"key":"k2","timestamp":T0_ISO,"size":7,"expire":null}])
    );
    let r = h.rest(RestRequest::new("GET", "/_data/b1?filter=k1"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        json!([{"key":"k1","timestamp":T0_ISO,"size":18,"expire":null,"content":{"name":"x","n":1}}])
    );
    assert_eq!(h.rest(RestRequest::new("GET", "/_data/nob")).text(), "[]");
    assert_eq!(
        h.rest(RestRequest::new("GET", "/_meta/b1"))
            .text()
            .matches("\"key\"")
            .count(),
        3
    );
    // Percent-encoded names, `+` in queries and a path prefix.
    assert_eq!(
        h.rest(json_put("/_data/b1/a%20b", r#"{"s":1}"#)).status,
        200
    );
    assert_eq!(
        h.rest(RestRequest::new("GET", "/api/_data/b1/a%20b"))
            .text(),
        r#"{"s":1}"#
    );
    let r = h.rest(RestRequest::new(
        "GET",
        "/_data/b1?filter=a+b&keysOnly=true",
    ));
    assert!(r.text().contains("\"a b\""));
    assert_eq!(h.rest(RestRequest::new("GET", "/_data/b1/%zz")).status, 400);
    // Empty body: stored without content.
    assert_eq!(h.rest(json_put("/_data/b1/k9", "")).status, 200);
    let r = h.rest(RestRequest::new("GET", "/_data/b1/k9"));
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    let r = h.rest(RestRequest::new("GET", "/_id"));
    assert_eq!(r.text(), format!("{{\"id\":\"{SID}\"}}"));
}

#[test]
fn rest_write_rules_and_errors() {
    let mut h = H::new();
    h.conn(1, None);
    h.register(1, json!([{"bucket":"*","key":"*"}]), true);
    h.rest(json_put("/_data/b1/k1", "{}"));
    h.out();
    let r = h.rest(json_put("/_data/b1/k1", "{}").header("FailIfExists", "true"));
    assert_eq!(
        (r.status, r.text()),
        (412, r#"{"error":"EEXISTS"}"#.to_string())
    );
    assert_eq!(
        h.rest(json_put("/_data/b1/k4", "{}").header("FailIfExists", "true"))
            .status,
        200
    );
    let r = h.rest(json_put("/_data/b1/k5", "{}").header("Expire", "session"));
    assert_eq!(
        (r.status, r.text()),
        (
            400,
            "Session expiration keys cannot be written with REST protocol".to_string()
        )
    );
    let r = h.rest(
        RestRequest::new("POST", "/_data/b1")
            .header("Content-Type", "application/json")
            .header("Expire", "session")
            .body("{}"),
    );
    assert_eq!((r.status, r.header("Location")), (400, None));
    assert_eq!(
        h.rest(json_put("/_data/b1/k6", "{}").header("Expire", "60"))
            .status,
        200
    );
    for (ct, status) in [
        ("text/plain", 400),
        ("application/x-www-form-urlencoded", 400),
    ] {
        let r = h.rest(
            RestRequest::new("PUT", "/_data/b1/k7")
                .header("Content-Type", ct)
                .body("{}"),
        );
        assert_eq!(
            (r.status, r.text()),
            (status, format!("Wrong content type {ct}"))
        );
    }
    assert_eq!(
        h.rest(RestRequest::new("PUT", "/_data/b1/k7").body("{}"))
            .status,
        400
    );
    for bad in ["{bad", "5", "\"x\"", "true", "null"] {
        let r = h.rest(json_put("/_data/b1/k8", bad));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.text().contains("<pre>Bad Request</pre>"));
    }
    assert_eq!(
        h.rest(json_put("/_data/CON/k", "{}")).text(),
        r#"{"error":"Invalid bucket name"}"#
    );
    h.out();
    // Patch.
    let patch = |h: &mut H, path: &str, body: &str| {
        h.rest(
            RestRequest::new("PATCH", path)
                .header("Content-Type", "application/json")
                .body(body),
        )
    };
    let r = patch(
        &mut h,
        "/_data/b1/k1",
        r#"[{"op":"add","path":"/n","value":2}]"#,
    );
    assert_eq!((r.status, r.text()), (200, r#"{"n":2}"#.to_string()));
    assert_eq!(
        h.out(),
        vec![(
            1,
            json!({"bucket":"b1","key":"k1","timestamp":null,"originRequestId":null,"value":{"n":2}})
        )]
    );
    let r = h.rest(
        RestRequest::new("PATCH", "/_data/b1/k1")
            .header("Content-Type", "application/json")
            .header("RemoveDataFromReply", "true")
            .body(r#"[{"op":"add","path":"/t","value":true}]"#),
    );
    assert_eq!((r.status, r.text()), (200, "{}".to_string()));
    assert_eq!(
        patch(&mut h, "/_data/b1/missing", "[]").text(),
        r#"{"error":"Key not found in database [missing]"}"#
    );
    assert_eq!(patch(&mut h, "/_data/nob/k", "[]").status, 500);
    assert_eq!(
        patch(&mut h, "/_data/b1/k1", r#"[{"op":"bogus","path":"/n"}]"#).text(),
        r#"{"error":"invalid operation: bogus"}"#
    );
    assert_eq!(
        patch(
            &mut h,
            "/_data/b1/k1",
            r#"[{"op":"test","path":"/n","value":999}]"#
        )
        .text(),
        r#"{"error":"Patch test failed"}"#
    );
    let r = patch(&mut h, "/_data/b1", "[]");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("Cannot PATCH /_data/b1"));
    h.out();
    // Delete.
    let r = h.rest(RestRequest::new("DELETE", "/_data/b1/k1"));
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));
    assert_eq!(
        h.out(),
        vec![(
            1,
            json!({"bucket":"b1","key":"k1","timestamp":null,"isDeleted":true,"value":null})
        )]
    );
    assert_eq!(
        h.rest(RestRequest::new("DELETE", "/_data/b1/k1")).status,
        200
    );
    let r = h.rest(RestRequest::new("DELETE", "/_data/nob/k"));
    assert_eq!(
        (r.status, r.text()),
        (
            500,
            r#"{"error":"Could not delete bucket=nob, key=k"}"#.to_string()
        )
    );
    assert_eq!(h.rest(RestRequest::new("DELETE", "/_data/b1")).text(), "ok");
    assert_eq!(
        h.rest(RestRequest::new("GET", "/_data/b1/k4")).text(),
        r#"{"error":"Bucket b1 not found"}"#
    );
    // Routing leftovers.
    let r = h.rest(RestRequest::new("OPTIONS", "/_data/b1/k1"));
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(
        r.header("Access-Control-Allow-Methods"),
        Some("GET,PUT,POST,DELETE,OPTIONS,PATCH")
    );
    assert_eq!(h.rest(RestRequest::new("GET", "/")).status, 404);
    assert_eq!(
        h.rest(RestRequest::new("GET", "/_auth")).status,
        404,
        "no /_auth"
    );
    assert_eq!(
        h.rest(RestRequest::new("GET", "/_data/b/k/extra")).status,
        404
    );
    assert_eq!(h.rest(RestRequest::new("PUT", "/_data/b1")).status, 404);
}

#[test]
fn rest_api_key_rules() {
    for public_read in [false, true] {
        let mut h = H::with(Some("secret"), public_read);
        let put = || json_put("/_data/b1/k1", r#"{"v":1}"#);
        assert_eq!(h.rest(put()).status, 401);
        assert_eq!(h.rest(put()).text(), "401 Unauthorized");
        assert_eq!(h.rest(put().header("API-Key", "wrong")).status, 401);
        assert_eq!(h.rest(put().header("api-key", "secret")).status, 200);
        let get_status = if public_read { 200 } else { 401 };
        assert_eq!(
            h.rest(RestRequest::new("GET", "/_data/b1/k1")).status,
            get_status
        );
        assert_eq!(
            h.rest(RestRequest::new("GET", "/_data/b1/k1").header("API-Key", "wrong"))
                .status,
            get_status
        );
        assert_eq!(
            h.rest(RestRequest::new("GET", "/_data/b1")).status,
            get_status
        );
        assert_eq!(
            h.rest(RestRequest::new("GET", "/_meta/b1")).status,
            get_status
        );
        assert_eq!(
            h.rest(RestRequest::new("GET", "/_data/b1/k1").header("API-Key", "secret"))
                .status,
            200
        );
        assert_eq!(
            h.rest(RestRequest::new("DELETE", "/_data/b1/k1")).status,
            401
        );
        assert_eq!(
            h.rest(
                RestRequest::new("POST", "/_data/b1")
                    .header("Content-Type", "application/json")
                    .body("{}")
            )
            .status,
            401
        );
        // The content type is checked before the apiKey.
        let r = h.rest(
            RestRequest::new("PUT", "/_data/b1/k1")
                .header("Content-Type", "text/plain")
                .body("x"),
        );
        assert_eq!(
            (r.status, r.text()),
            (400, "Wrong content type text/plain".to_string())
        );
        assert_eq!(
            h.rest(RestRequest::new("OPTIONS", "/_data/b1/k1")).status,
            200
        );
        assert_eq!(h.rest(RestRequest::new("GET", "/_id")).status, 200);
    }
}

#[test]
fn rest_changes_notify_every_websocket_connection() {
    let mut h = H::new();
    h.conn(1, None);
    h.conn(2, None);
    h.register(1, json!([{"bucket":"b1","key":"*"}]), true);
    h.register(2, json!([{"bucket":"b1","key":"rest1"}]), false);
    h.rest(json_put("/_data/b1/rest1", r#"{"r":1}"#));
    assert_eq!(
        h.out(),
        vec![
            (
                1,
                json!({"bucket":"b1","key":"rest1","timestamp":T0_ISO,"originRequestId":null,"value":{"r":1}})
            ),
            (
                2,
                json!({"bucket":"b1","key":"rest1","timestamp":T0_ISO,"originRequestId":null})
            ),
        ]
    );
}

#[test]
fn same_inputs_same_outputs() {
    let run = || {
        let mut h = H::new();
        h.conn(1, Some("a"));
        h.conn(2, Some("b"));
        h.register(2, json!([{"bucket":"*","key":"*"}]), true);
        let mut all = Vec::new();
        for i in 0..20u64 {
            let t = T0 + i / 3;
            h.hub.handle_text(1, &json!({"msg":"datastore-operation","request":{"op":"write","id":i,"bucket":"b","value":i}}).to_string(), t);
            h.hub.handle_text(2, r#"{"msg":"ping"}"#, t);
            all.extend(h.texts());
        }
        h.hub.disconnect(1, T0);
        all.extend(h.texts());
        all
    };
    assert_eq!(run(), run());
}

#[test]
fn many_connections_broadcast_without_quadratic_work() {
    // Correctness at scale; the index makes each event cost O(recipients).
    let mut h = H::new();
    for c in 0..2000 {
        h.hub.connect(c, None, T0).unwrap();
        let bucket = if c % 2 == 0 { "even" } else { "odd" };
        h.hub.handle_text(c, &json!({"msg":"register-events","events":[{"bucket":bucket,"key":"*"}],"sendValues":c % 4 == 0}).to_string(), T0);
    }
    h.out();
    h.hub.handle_text(0, r#"{"msg":"datastore-operation","request":{"op":"write","id":1,"bucket":"even","key":"k","value":1}}"#, T0);
    let out = h.out();
    assert_eq!(out.len(), 1000);
    assert_eq!(
        out.iter().filter(|(_, v)| v.get("value").is_some()).count(),
        499
    );
}

#[test]
fn debug_output_never_shows_the_api_key() {
    let h = H::with(Some("sup3r-secret"), false);
    assert!(!format!("{:?}", h.hub).contains("sup3r-secret"));
    assert!(!format!("{:?}", h.hub.config()).contains("sup3r-secret"));
    let req = RestRequest::new("GET", "/_data/b").header("api-key", "sup3r-secret");
    assert!(!format!("{req:?}").contains("sup3r-secret"));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop_oneof![
                Just("b"),
                Just("*"),
                Just(""),
                Just("k1"),
                Just("CON"),
                Just("session"),
                Just("secret")
            ]
            .prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("op".to_string()),
                        Just("path".to_string()),
                        Just("value".to_string()),
                        Just("bucket".to_string()),
                        Just("key".to_string()),
                        ".{0,4}"
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Messages of every kind with fields of random types.
    fn message() -> impl Strategy<Value = String> {
        let msg = prop_oneof![
            Just("datastore-operation"),
            Just("register-events"),
            Just("event-broadcast"),
            Just("ping"),
            Just("register-replication-client"),
            Just("other"),
        ];
        let op = prop_oneof![
            Just("read"),
            Just("filter"),
            Just("write"),
            Just("patch"),
            Just("remove"),
            Just("x")
        ];
        (msg, op, json_value(), json_value(), json_value(), json_value(), scalar(), any::<bool>()).prop_map(
            |(msg, op, bucket, key, value, patch, api_key, sv)| {
                let events = match &value {
                    Value::Array(_) => value.clone(),
                    _ => json!([{"bucket":bucket.clone(),"key":key.clone()}]),
                };
                json!({
                    "msg": msg,
                    "apiKey": api_key,
                    "request": {"op": op, "id": key.clone(), "bucket": bucket.clone(), "key": key.clone(),
                                "value": value.clone(), "patch": patch, "expire": "session",
                                "failIfExists": sv, "keysOnly": sv, "filter": key.clone()},
                    "events": events,
                    "sendValues": sv,
                    "event": {"bucket": bucket, "key": key, "value": value},
                })
                .to_string()
            },
        )
    }

    #[derive(Debug, Clone)]
    enum Input {
        Connect(ConnId, Option<String>),
        Disconnect(ConnId),
        Text(ConnId, String),
        Binary(ConnId, Vec<u8>),
        Rest(String, String, Vec<(String, String)>, Vec<u8>),
        Close(ConnId),
    }

    fn input() -> impl Strategy<Value = Input> {
        let conn = 0u64..4;
        prop_oneof![
            (
                conn.clone(),
                prop::option::of(prop_oneof![Just(SID.to_string()), "[a-c]{1,2}"])
            )
                .prop_map(|(c, id)| Input::Connect(c, id)),
            conn.clone().prop_map(Input::Disconnect),
            conn.clone().prop_map(Input::Close),
            (conn.clone(), message()).prop_map(|(c, m)| Input::Text(c, m)),
            (conn.clone(), ".{0,40}").prop_map(|(c, m)| Input::Text(c, m)),
            (conn.clone(), prop::collection::vec(any::<u8>(), 0..200))
                .prop_map(|(c, b)| Input::Binary(c, b)),
            (
                prop_oneof![
                    Just("GET"),
                    Just("PUT"),
                    Just("POST"),
                    Just("PATCH"),
                    Just("DELETE"),
                    Just("OPTIONS"),
                    Just("X")
                ],
                prop_oneof![
                    Just("/_data/b/k1".to_string()),
                    Just("/_data/b".to_string()),
                    Just("/_meta/b".to_string()),
                    "/[_a-z%0-9/?=&+]{0,20}"
                ],
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("Content-Type".to_string()),
                            Just("API-Key".to_string()),
                            Just("FailIfExists".to_string()),
                            Just("Expire".to_string()),
                            Just("RemoveDataFromReply".to_string())
                        ],
                        prop_oneof![
                            Just("application/json".to_string()),
                            Just("secret".to_string()),
                            Just("true".to_string()),
                            Just("session".to_string()),
                            ".{0,6}"
                        ],
                    ),
                    0..4,
                ),
                prop_oneof![
                    json_value().prop_map(|v| v.to_string().into_bytes()),
                    prop::collection::vec(any::<u8>(), 0..20)
                ],
            )
                .prop_map(|(m, p, h, b)| Input::Rest(m.to_string(), p, h, b)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_inputs_never_panic(inputs in prop::collection::vec(input(), 1..60), keyed in any::<bool>(), public in any::<bool>()) {
            let mut h = H::with(keyed.then_some("secret"), public);
            for (t, i) in inputs.into_iter().enumerate() {
                let now = T0 + t as u64;
                match i {
                    Input::Connect(c, id) => { let _ = h.hub.connect(c, id, now); }
                    Input::Disconnect(c) => h.hub.disconnect(c, now),
                    Input::Close(c) => h.hub.close(c, CloseReason::SlowConsumer, now),
                    Input::Text(c, m) => h.hub.handle_text(c, &m, now),
                    Input::Binary(c, b) => h.hub.handle_binary(c, &b, now),
                    Input::Rest(m, p, hs, b) => {
                        let mut req = RestRequest::new(&m, &p).body(b);
                        for (n, v) in hs { req = req.header(&n, &v); }
                        let r = h.hub.handle_rest(&req, now);
                        prop_assert!((200..600).contains(&r.status));
                    }
                }
                while let Some(o) = h.hub.poll_output() {
                    if let Output::Text { text, .. } = o {
                        prop_assert!(serde_json::from_str::<Value>(&text).is_ok());
                    }
                }
            }
        }
    }
}
