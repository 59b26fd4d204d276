//! Conformance: replays the reference server's transcripts (WS-1..3 and
//! REST-1..3, `fixtures/wire-transcript.md`, copied from
//! `shared/reference/`) against the in-process server over real sockets, and
//! asserts the same frames and HTTP answers — modulo timestamps, generated
//! keys and the differences documented in the README (each one is an
//! explicit fixup below).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use cachearoo_server::{start, RunningServer, ServerConfig};
use common::{hex, http, normalize, Frame, Ws};
use serde_json::{json, Value};

const TRANSCRIPT: &str = include_str!("fixtures/wire-transcript.md");
const FRAMES_JSONL: &str = include_str!("fixtures/ws-frames.jsonl");

// ---------------------------------------------------------------- parsing

#[derive(Debug, Clone, PartialEq)]
enum Payload {
    /// A text frame, verbatim.
    Text(String),
    Binary(Vec<u8>),
}

impl Payload {
    fn parse(s: &str) -> Payload {
        match s.strip_prefix("<binary ") {
            Some(rest) => {
                let h = rest.split("hex=").nth(1).expect("hex=");
                Payload::Binary(hex(h.trim()))
            }
            None => Payload::Text(s.to_string()),
        }
    }

    /// As the JSONL fixture would have it.
    fn to_json(&self) -> Value {
        match self {
            Payload::Text(t) => match serde_json::from_str::<Value>(t) {
                Ok(v) => json!({ "frame": v }),
                _ => json!({ "raw_text": t }),
            },
            Payload::Binary(b) => {
                json!({ "binary_hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Line {
    Connect { client: char, id: Option<String> },
    Refused { status: u16 },
    Close { client: char },
    Send { client: char, payload: Payload },
    Recv { client: char, payload: Payload },
    Http(HttpLine),
}

#[derive(Debug, Clone)]
struct HttpLine {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    status: u16,
    resp_body: String,
}

#[derive(Debug, Clone)]
struct Step {
    id: String,
    title: String,
    lines: Vec<Line>,
}

/// The `#### N. title` sections of one `### Scenario NAME:` section.
fn scenario_text(name: &str) -> &'static str {
    let start = TRANSCRIPT
        .find(&format!("### Scenario {name}:"))
        .unwrap_or_else(|| panic!("no scenario {name}"));
    let rest = &TRANSCRIPT[start + 4..];
    let end = rest
        .find("\n### Scenario ")
        .or_else(|| rest.find("\n## "))
        .unwrap_or(rest.len());
    &rest[..end]
}

fn parse_http_line(l: &str) -> HttpLine {
    // HTTP PUT /_data/b1/rest1 {"Content-Type":"application/json"} body={"r":1} -> 200 <body>
    let rest = l.strip_prefix("HTTP ").expect("HTTP");
    let (method, rest) = rest.split_once(' ').expect("method");
    let (path, rest) = rest.split_once(' ').expect("path");
    let close = rest.find('}').expect("headers");
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&rest[..=close]).expect("headers JSON");
    let rest = &rest[close + 1..];
    let (req, resp) = rest.split_once(" -> ").expect("->");
    let body = req.trim().strip_prefix("body=").map(String::from);
    let (status, resp_body) = resp.split_once(' ').unwrap_or((resp, ""));
    HttpLine {
        method: method.into(),
        path: path.into(),
        headers: headers.into_iter().collect(),
        body,
        status: status.parse().expect("status"),
        resp_body: resp_body.trim().into(),
    }
}

fn parse_ws_scenario(name: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for l in scenario_text(name).lines() {
        if let Some(h) = l.strip_prefix("#### ") {
            let (id, title) = h.split_once(". ").expect("step heading");
            steps.push(Step {
                id: id.into(),
                title: title.into(),
                lines: Vec::new(),
            });
            continue;
        }
        let Some(step) = steps.last_mut() else {
            continue;
        };
        if l.starts_with("HTTP ") {
            step.lines.push(Line::Http(parse_http_line(l)));
            continue;
        }
        let b = l.as_bytes();
        if b.len() < 5 || !b[0].is_ascii_uppercase() || b[1] != b' ' {
            continue;
        }
        let client = char::from(b[0]);
        let (arrow, rest) = l[2..].split_at(2);
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match arrow {
            "=>" => step.lines.push(Line::Send {
                client,
                payload: Payload::parse(rest),
            }),
            "<=" => step.lines.push(Line::Recv {
                client,
                payload: Payload::parse(rest),
            }),
            "**" => {
                if let Some(url) = rest.strip_prefix("connect ") {
                    let id = url.split_once("?id=").map(|(_, id)| id.to_string());
                    step.lines.push(Line::Connect { client, id });
                } else if let Some(r) = rest.strip_prefix("handshake refused: HTTP ") {
                    let status = r[..3].parse().expect("status");
                    step.lines.push(Line::Refused { status });
                } else if rest.starts_with("close()") {
                    step.lines.push(Line::Close { client });
                }
            }
            _ => {}
        }
    }
    steps
}

#[test]
fn the_transcript_parser_reads_the_same_frames_as_the_jsonl_fixture() {
    for name in ["WS-1", "WS-2", "WS-3"] {
        let mut parsed = Vec::new();
        for step in parse_ws_scenario(name) {
            for l in &step.lines {
                let (client, dir, p) = match l {
                    Line::Send { client, payload } => (client, "sent", payload),
                    Line::Recv { client, payload } => (client, "received", payload),
                    _ => continue,
                };
                if matches!(p, Payload::Text(t) if t.contains("[frame continues:")) {
                    // Cut frames (over 2000 characters) are not in the JSONL.
                    continue;
                }
                let mut v = p.to_json();
                v["client"] = json!(client.to_string());
                v["dir"] = json!(dir);
                v["step"] = json!(format!("{}. {}", step.id, step.title));
                parsed.push(v);
            }
        }
        let fixture: Vec<Value> = FRAMES_JSONL
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSONL"))
            .filter(|v| v["scenario"] == name)
            .map(|mut v| {
                v.as_object_mut().map(|o| o.remove("scenario"));
                v
            })
            .collect();
        assert_eq!(parsed.len(), fixture.len(), "{name}");
        for (p, f) in parsed.iter().zip(&fixture) {
            assert_eq!(p, f, "{name}");
        }
    }
}

// ------------------------------------------------- documented differences

/// The differences of our server, applied to the reference's expectations
/// (README, "Differences from the reference").
fn ws_fixups(scenario: &str, step: &mut Step) -> bool {
    let recv = |client: char, v: Value| Line::Recv {
        client,
        payload: Payload::Text(v.to_string()),
    };
    let replace_recv = |step: &mut Step, client: char, contains: &str, v: Value| {
        let at = step
            .lines
            .iter()
            .position(|l| matches!(l, Line::Recv { client: c, payload: Payload::Text(t) } if *c == client && t.contains(contains)))
            .unwrap_or_else(|| panic!("step {}: no frame for {client} containing {contains}", step.id));
        step.lines[at] = recv(client, v);
    };
    let remove_recv = |step: &mut Step, client: char, contains: &str| {
        let before = step.lines.len();
        step.lines.retain(|l| !matches!(l, Line::Recv { client: c, payload: Payload::Text(t) } if *c == client && t.contains(contains)));
        assert_eq!(before - 1, step.lines.len(), "step {}", step.id);
    };
    match (scenario, step.id.as_str()) {
        // `_bucket_config` internals are not exposed.
        ("WS-1", "21") => return false,
        // filter is an inclusive prefix match.
        ("WS-1", "25") => replace_recv(
            step,
            'A',
            "\"id\":33",
            json!({"response":{"id":33,"value":[{"key":"k1","timestamp":"<time>","size":18}]}}),
        ),
        // An unknown op is answered with an error instead of silence.
        ("WS-1", "58") => step.lines.push(recv(
            'A',
            json!({"response":{"id":80,"error":{"code":"EUNKNOWNOP"}}}),
        )),
        // A datastore-operation without request is answered with an error.
        ("WS-1", "59") => step.lines.push(recv(
            'A',
            json!({"response":{"error":{"code":"EBADREQUEST"}}}),
        )),
        ("WS-2" | "WS-3", "9") => replace_recv(
            step,
            'A',
            "Message is not valid JSON",
            json!({"response":{"error":{"code":"EBADREQUEST"}}}),
        ),
        // Session keys live until their last session writer leaves, and a
        // later normal write makes them permanent.
        ("WS-1", "65") => {
            remove_recv(step, 'B', "isDeleted");
            replace_recv(
                step,
                'A',
                "\"id\":92",
                json!({"response":{"id":92,"value":"e"}}),
            );
        }
        ("WS-1", "66") => {
            remove_recv(step, 'B', "isDeleted");
            replace_recv(
                step,
                'A',
                "\"id\":93",
                json!({"response":{"id":93,"value":"e2"}}),
            );
        }
        // register-events without events: refused for F alone.
        ("WS-1", "68") => {
            step.lines.push(recv(
                'F',
                json!({"response":{"error":{"code":"EBADREQUEST"}}}),
            ));
            replace_recv(
                step,
                'A',
                "\"id\":95",
                json!({"response":{"id":95,"location":"/_data/b1/k1"}}),
            );
        }
        // No /_status endpoint.
        ("WS-1", "70") => step.lines.retain(|l| !matches!(l, Line::Http(_))),
        // A refused registration is answered instead of ignored silently.
        ("WS-2", "10" | "11" | "13") => step
            .lines
            .push(recv('B', json!({"response":{"error":"Not authorized"}}))),
        _ => {}
    }
    true
}

/// Our frame, relaxed where the README documents a difference, for
/// comparison with the (normalised) reference frame.
fn relax(actual: &Value, expected: &Value) -> Value {
    let mut a = normalize(actual);
    let e = normalize(expected);
    if let Some(o) = a.as_object_mut() {
        if o.contains_key("bucket") && o.contains_key("key") {
            // Events carry the writer's clientId.
            o.remove("clientId");
        }
    }
    if let (Some(ae), Some(ee)) = (
        a.pointer("/response/error").cloned(),
        e.pointer("/response/error").cloned(),
    ) {
        let relaxed = match (&ae, &ee) {
            // `{}` became a typed object with a code.
            (Value::Object(ao), Value::Object(eo)) if eo.is_empty() => {
                assert!(
                    ao.get("code").is_some_and(Value::is_string),
                    "typed error expected: {ae}"
                );
                json!({})
            }
            // Patch errors keep the reference's `name` (messages differ).
            (Value::Object(ao), Value::Object(eo)) if eo.contains_key("name") => {
                assert!(ao.contains_key("code"), "patch errors carry a code: {ae}");
                json!({ "name": ao.get("name") })
            }
            (Value::Object(ao), Value::Object(eo)) if eo.contains_key("code") => {
                json!({ "code": ao.get("code") })
            }
            _ => ae,
        };
        a["response"]["error"] = relaxed;
    }
    a
}

fn relax_expected(expected: &Value) -> Value {
    let mut e = normalize(expected);
    if let Some(o) = e.as_object_mut() {
        if o.contains_key("bucket") && !o.contains_key("response") {
            // Our events always carry the key as a string.
            if let Some(Value::Number(n)) = o.get("key").cloned() {
                o.insert("key".into(), Value::String(n.to_string()));
            }
        }
    }
    if let Some(Value::Object(eo)) = e.pointer("/response/error").cloned() {
        if eo.contains_key("name") {
            e["response"]["error"] = json!({ "name": eo.get("name") });
        }
    }
    e
}

fn frames_match(actual: &Frame, expected: &Payload) -> bool {
    match (actual, expected) {
        (Frame::Binary(a), Payload::Binary(e)) => a == e,
        (Frame::Json(a), Payload::Text(t)) => match serde_json::from_str::<Value>(t) {
            Ok(e) => relax(a, &e) == relax_expected(&e),
            Err(_) => false,
        },
        (Frame::Text(a), Payload::Text(t)) => a == t,
        _ => false,
    }
}

// ----------------------------------------------------------------- replay

fn server_for(scenario: &str, server_id: &str) -> RunningServer {
    let mut c = ServerConfig::default().port(0).server_id(server_id);
    if scenario.ends_with('2') || scenario.ends_with('3') {
        c = c.api_key("secret");
    }
    if scenario.ends_with('3') {
        c = c.public_read(true);
    }
    start(c).expect("server starts")
}

/// The reference's server id in a scenario (from its first greeting).
fn reference_server_id(steps: &[Step]) -> String {
    for s in steps {
        for l in &s.lines {
            if let Line::Recv {
                payload: Payload::Text(t),
                ..
            } = l
            {
                if let Ok(v) = serde_json::from_str::<Value>(t) {
                    if let Some(id) = v.get("id").and_then(Value::as_str) {
                        if v.as_object().is_some_and(|o| o.len() == 1) {
                            return id.to_string();
                        }
                    }
                }
            }
        }
    }
    panic!("no greeting")
}

/// HTTP lines are logged after the events they caused: run each right
/// after the last non-receive line before it.
fn hoist_http(lines: Vec<Line>) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    for l in lines {
        if matches!(l, Line::Http(_)) {
            let at = out
                .iter()
                .rposition(|x| !matches!(x, Line::Recv { .. }))
                .map_or(0, |i| i + 1);
            out.insert(at, l);
        } else {
            out.push(l);
        }
    }
    out
}

async fn expect_frame(
    clients: &mut BTreeMap<char, Ws>,
    pending: &mut HashMap<char, Vec<Frame>>,
    client: char,
    expected: &Payload,
    ctx: &str,
) {
    let buf = pending.entry(client).or_default();
    if let Some(i) = buf.iter().position(|f| frames_match(f, expected)) {
        buf.remove(i);
        return;
    }
    let ws = clients
        .get_mut(&client)
        .unwrap_or_else(|| panic!("{ctx}: {client} is not connected"));
    for _ in 0..64 {
        let f = ws.next().await;
        if frames_match(&f, expected) {
            return;
        }
        assert_ne!(
            f,
            Frame::Closed,
            "{ctx}: {client} closed while expecting {expected:?}"
        );
        pending.entry(client).or_default().push(f);
    }
    panic!(
        "{ctx}: {client} never got {expected:?}; got {:?}",
        pending.get(&client)
    );
}

/// Makes sure every frame `last` sent was handled before `next` acts.
async fn barrier(
    clients: &mut BTreeMap<char, Ws>,
    pending: &mut HashMap<char, Vec<Frame>>,
    last: &mut Option<char>,
    next: Option<char>,
) {
    if let Some(prev) = *last {
        if Some(prev) != next {
            if let Some(ws) = clients.get_mut(&prev) {
                let frames = ws.sync().await;
                pending.entry(prev).or_default().extend(frames);
            }
        }
    }
    *last = next;
}

async fn run_http_line(addr: SocketAddr, h: &HttpLine, ctx: &str) {
    let headers: Vec<(&str, &str)> = h
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let r = http(
        addr,
        &h.method,
        &h.path,
        &headers,
        h.body.as_deref().map(str::as_bytes),
    )
    .await;
    assert_eq!(r.status, h.status, "{ctx}: {} {}", h.method, h.path);
    let body = r.text();
    match (
        serde_json::from_str::<Value>(&h.resp_body),
        serde_json::from_str::<Value>(&body),
    ) {
        (Ok(e), Ok(a)) => assert_eq!(normalize(&a), normalize(&e), "{ctx}"),
        _ => assert_eq!(body.trim(), h.resp_body, "{ctx}"),
    }
}

async fn replay_ws(scenario: &str, server: &RunningServer, steps: Vec<Step>) {
    let addr = server.addr();
    let mut clients: BTreeMap<char, Ws> = BTreeMap::new();
    let mut checked = 0usize;
    for mut step in steps {
        if !ws_fixups(scenario, &mut step) {
            continue;
        }
        let ctx = format!("{scenario} step {}. {}", step.id, step.title);
        eprintln!("{ctx}");
        let lines = hoist_http(step.lines.clone());
        let mut pending: HashMap<char, Vec<Frame>> = HashMap::new();
        let mut last_sender: Option<char> = None;
        let mut i = 0;
        while i < lines.len() {
            match &lines[i] {
                Line::Connect { client, id } => {
                    if let Some(Line::Refused { status, .. }) = lines.get(i + 1) {
                        match Ws::connect(addr, id.as_deref()).await {
                            Err(async_tungstenite::tungstenite::Error::Http(resp)) => {
                                assert_eq!(resp.status().as_u16(), *status, "{ctx}")
                            }
                            Err(e) => panic!("{ctx}: unexpected error {e}"),
                            Ok(_) => panic!("{ctx}: the upgrade should be refused"),
                        }
                        i += 2;
                        checked += 1;
                        continue;
                    }
                    let mut ws = Ws::connect(addr, id.as_deref())
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: connect {client}: {e}"));
                    ws.name = client.to_string();
                    clients.insert(*client, ws);
                }
                Line::Refused { .. } => {}
                Line::Close { client } => {
                    let ws = clients.remove(client).expect("connected");
                    ws.close().await;
                }
                Line::Send { client, payload } => {
                    // Frames of different connections race in the server;
                    // the transcript's order is kept by a ping barrier on
                    // the previous sender (its answers are kept for later).
                    barrier(&mut clients, &mut pending, &mut last_sender, Some(*client)).await;
                    let ws = clients.get_mut(client).expect("connected");
                    match payload {
                        Payload::Text(t) => ws.send_text(t).await,
                        Payload::Binary(b) => ws.send_binary(b.clone()).await,
                    }
                }
                Line::Recv { client, payload } => {
                    expect_frame(&mut clients, &mut pending, *client, payload, &ctx).await;
                    checked += 1;
                }
                Line::Http(h) => {
                    barrier(&mut clients, &mut pending, &mut last_sender, None).await;
                    run_http_line(addr, h, &ctx).await;
                    checked += 1;
                }
            }
            i += 1;
        }
        for (c, left) in &pending {
            assert!(left.is_empty(), "{ctx}: {c} got unexpected {left:?}");
        }
        // Nothing else may be on its way to anyone: two ping barriers (the
        // first makes sure every client's frames were handled).
        for _ in 0..2 {
            for ws in clients.values_mut() {
                let extra = ws.sync().await;
                assert!(
                    extra.is_empty(),
                    "{ctx}: {} got unexpected {extra:?}",
                    ws.name
                );
            }
        }
    }
    assert!(checked > 30, "{scenario}: only {checked} checks");
}

// ------------------------------------------------------------------- REST

#[derive(Debug)]
struct RestStep {
    id: String,
    title: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    status: u16,
    resp_headers: Vec<(String, String)>,
    resp_body: String,
}

/// Splits a shell command line (single quotes only, as in the transcript).
fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

fn parse_rest_scenario(name: &str) -> Vec<RestStep> {
    let mut steps = Vec::new();
    let text = scenario_text(name);
    for block in text.split("\n#### ").skip(1) {
        let (heading, rest) = block.split_once('\n').expect("heading");
        let (id, title) = heading.split_once(". ").expect("id");
        let code = rest.split("```").nth(1).expect("code block");
        let mut lines = code.lines().skip_while(|l| !l.starts_with("$ curl"));
        let words = shell_words(lines.next().expect("curl").trim_start_matches("$ "));
        let (mut method, mut headers, mut body, mut url) = (None, Vec::new(), None, String::new());
        let mut w = words.iter().skip(2);
        while let Some(word) = w.next() {
            match word.as_str() {
                "-X" => method = w.next().cloned(),
                "-H" => {
                    let h = w.next().expect("header");
                    let (n, v) = h.split_once(": ").expect("header");
                    headers.push((n.to_string(), v.to_string()));
                }
                "-d" => body = w.next().cloned(),
                other => url = other.to_string(),
            }
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            // What curl sends with -d.
            headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        let method = method.unwrap_or_else(|| {
            if body.is_some() {
                "POST".into()
            } else {
                "GET".into()
            }
        });
        let path = url
            .split_once("4300")
            .map(|(_, p)| p.to_string())
            .expect("url");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .expect("status")
            .parse()
            .expect("status");
        let mut resp_headers = Vec::new();
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(": ").expect("response header");
            resp_headers.push((n.to_string(), v.to_string()));
        }
        let resp_body = lines.collect::<Vec<_>>().join("\n").trim().to_string();
        steps.push(RestStep {
            id: id.into(),
            title: title.into(),
            method,
            path,
            headers,
            body,
            status,
            resp_headers,
            resp_body,
        });
    }
    steps
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The README's REST differences, applied to the reference's answers.
/// `false`: the endpoint does not exist here (or is not comparable).
fn rest_fixups(scenario: &str, s: &mut RestStep) -> bool {
    let path = s.path.split('?').next().unwrap_or("").to_string();
    if matches!(path.as_str(), "/" | "/_auth" | "/_status" | "/_ping")
        || path.starts_with("/_data/_bucket_config")
    {
        return false;
    }
    let set_json = |s: &mut RestStep, status: u16, body: Value| {
        s.status = status;
        s.resp_body = body.to_string();
    };
    // FailIfExists conflicts are 412.
    if s.status == 500 && s.resp_body == r#"{"error":"EEXISTS"}"# {
        s.status = 412;
    }
    // No Location on a refused POST.
    if s.status == 400 && s.title.contains("Expire: session") {
        s.resp_headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("location")
                && !n.eq_ignore_ascii_case("access-control-expose-headers")
        });
        s.resp_headers
            .push(("Access-Control-Expose-Headers".into(), "X-Timestamp".into()));
    }
    // /_meta follows the read rules of /_data.
    if path.starts_with("/_meta") && scenario == "REST-2" {
        s.status = 401;
        s.resp_body = "401 Unauthorized".into();
        s.resp_headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        s.resp_headers
            .push(("Content-Type".into(), "text/html; charset=utf-8".into()));
    }
    if scenario == "REST-1" {
        match s.id.as_str() {
            // Inclusive prefix filter.
            "R14" => set_json(
                s,
                200,
                json!([{"key":"k1","timestamp":"<time>","size":18,"expire":null,"content":{"name":"x","n":1}}]),
            ),
            // A clearer message for a patch in a missing bucket.
            "R28" => set_json(s, 500, json!({"error":"Bucket nob not found"})),
            _ => {}
        }
        // WS-1 left "shared" in place (it became permanent in step 66).
        let unfiltered_b1 =
            (path == "/_data/b1" || path == "/_meta/b1") && !s.path.contains("filter=");
        if unfiltered_b1 && s.status == 200 {
            let keys_only = s.path.contains("keysOnly=true") || path.starts_with("/_meta");
            let mut list: Vec<Value> = serde_json::from_str(&s.resp_body).expect("list");
            let mut item = json!({"key":"shared","timestamp":"<time>","size":4});
            if !keys_only {
                item["content"] = json!("e2");
            }
            let at = list
                .iter()
                .position(|i| i["key"].as_str() > Some("shared"))
                .unwrap_or(list.len());
            list.insert(at, item);
            s.resp_body = Value::Array(list).to_string();
        }
    }
    true
}

async fn replay_rest(scenario: &str, server: &RunningServer) {
    let addr = server.addr();
    let mut checked = 0;
    for mut s in parse_rest_scenario(scenario) {
        if !rest_fixups(scenario, &mut s) {
            continue;
        }
        let ctx = format!("{scenario} {}. {}", s.id, s.title);
        let headers: Vec<(&str, &str)> = s
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let r = http(
            addr,
            &s.method,
            &s.path,
            &headers,
            s.body.as_deref().map(str::as_bytes),
        )
        .await;
        assert_eq!(r.status, s.status, "{ctx}: {}", r.text());
        let body = r.text();
        match (
            serde_json::from_str::<Value>(&s.resp_body),
            serde_json::from_str::<Value>(&body),
        ) {
            (Ok(e), Ok(a)) => assert_eq!(normalize(&a), normalize(&e), "{ctx}"),
            _ => assert_eq!(body.trim(), s.resp_body, "{ctx}"),
        }
        for name in [
            "Content-Type",
            "Access-Control-Allow-Origin",
            "Access-Control-Allow-Methods",
            "Access-Control-Allow-Headers",
            "Access-Control-Expose-Headers",
        ] {
            assert_eq!(
                header(&r.headers, name).map(str::to_ascii_lowercase),
                header(&s.resp_headers, name).map(str::to_ascii_lowercase),
                "{ctx}: header {name}"
            );
        }
        assert_eq!(
            header(&r.headers, "Location").map(common::mask_generated_keys),
            header(&s.resp_headers, "Location").map(common::mask_generated_keys),
            "{ctx}: Location"
        );
        for name in ["X-Write-Timestamp", "X-Timestamp", "X-Served-By"] {
            assert_eq!(
                header(&r.headers, name).is_some(),
                header(&s.resp_headers, name).is_some(),
                "{ctx}: header {name}"
            );
        }
        if let Some(t) = header(&r.headers, "X-Write-Timestamp") {
            assert!(common::is_iso_time(t), "{ctx}");
        }
        checked += 1;
    }
    assert!(checked > 10, "{scenario}: only {checked} checks");
}

fn run(ws: &str, rest: &str) {
    let steps = parse_ws_scenario(ws);
    let server = server_for(ws, &reference_server_id(&steps));
    smol::block_on(async {
        replay_ws(ws, &server, steps).await;
        replay_rest(rest, &server).await;
    });
    server.shutdown();
}

#[test]
fn ws1_then_rest1_no_api_key() {
    run("WS-1", "REST-1");
}

#[test]
fn ws2_then_rest2_api_key() {
    run("WS-2", "REST-2");
}

#[test]
fn ws3_then_rest3_api_key_and_public_read() {
    run("WS-3", "REST-3");
}

#[test]
fn masks_times_and_generated_keys() {
    assert!(common::is_iso_time("2026-12-03T16:04:35.498Z"));
    assert!(!common::is_iso_time("2026-12-03T16:04:35.498"));
    assert_eq!(
        common::mask_generated_keys("/_data/b1/gen_1796313875834"),
        "/_data/b1/gen_#"
    );
    assert_eq!(
        common::mask_generated_keys("gen_1-2 gen_x gen_5-"),
        "gen_# gen_x gen_#-"
    );
}
