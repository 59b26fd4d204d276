//! A walk through the sans-IO client: no sockets, no runtime. The "server"
//! here is a few scripted frames, so every step the driver takes is visible.
//!
//! Run: `cargo run -p cachearoo-core --example walkthrough`

use std::time::Duration;

use cachearoo_core::{Client, Config, HttpResponse, Instant, OpOptions, Operation, Transmit};
use serde_json::json;

fn drain(client: &mut Client) -> Vec<Transmit> {
    let mut out = Vec::new();
    while let Some(t) = client.poll_transmit() {
        println!("  driver must: {}", describe(&t));
        out.push(t);
    }
    while let Some(e) = client.poll_event() {
        println!("  app sees:    {e:?}");
    }
    out
}

fn describe(t: &Transmit) -> String {
    match t {
        Transmit::Connect { url, .. } => format!("open a WebSocket to {url}"),
        Transmit::Text { text, .. } => format!("send text {text}"),
        Transmit::Binary { bytes, .. } => format!("send {} binary bytes", bytes.len()),
        Transmit::Close { .. } => "close the socket".into(),
        Transmit::Http { request, .. } => {
            format!("HTTP {} {}", request.method.as_str(), request.url())
        }
        Transmit::CancelHttp { op } => format!("cancel the HTTP request of {op:?}"),
    }
}

fn main() {
    let mut now = Instant::ZERO;
    let config = Config {
        client_id: Some("walkthrough".into()),
        bucket: "demo".into(),
        enable_ping: false,
        ..Config::default()
    };
    println!("1. A new client starts connecting at once:");
    let mut client = Client::new(config, 42, now);
    let out = drain(&mut client);
    let Some(Transmit::Connect { socket, .. }) = out.first().cloned() else {
        unreachable!("a new client always dials first")
    };

    println!("\n2. While the socket is not up, a write goes over REST:");
    let write = client.submit(
        now,
        Operation::Write {
            key: "greeting".into(),
            value: Some(json!({"hello": "world"})),
            fail_if_exists: false,
            expire_session: false,
        },
        OpOptions::default(),
    );
    drain(&mut client);
    client.handle_http_response(
        now,
        write,
        &HttpResponse {
            status: 200,
            ..HttpResponse::default()
        },
    );
    drain(&mut client);

    println!(
        "\n3. A listener added before the connection; then the socket opens and the server greets:"
    );
    client.add_listener(now, "demo", "*", true);
    client.handle_socket_opened(now, socket);
    client.handle_text(
        now,
        socket,
        r#"{"id":"8cb9e283-ac96-6e27-30e1-71a17c89873b"}"#,
    );
    drain(&mut client);

    println!("\n4. A read now travels on the WebSocket, and its answer completes it:");
    client.submit(
        now,
        Operation::Read {
            key: "greeting".into(),
        },
        OpOptions::default(),
    );
    drain(&mut client);
    client.handle_text(
        now,
        socket,
        r#"{"response":{"id":"2","value":{"hello":"world"}}}"#,
    );
    drain(&mut client);

    println!("\n5. Another client's write arrives as a change event for our listener:");
    client.handle_text(
        now,
        socket,
        r#"{"bucket":"demo","key":"greeting","timestamp":"2026-12-03T16:04:35.498Z","originRequestId":7,"value":{"hello":"again"}}"#,
    );
    drain(&mut client);

    println!("\n6. The socket drops; the client schedules a reconnect with backoff:");
    client.handle_socket_closed(now, socket);
    drain(&mut client);
    if let Some(at) = client.poll_timeout() {
        println!("  next wake-up in {:?}", at - now);
        now = at;
        client.handle_timeout(now);
        drain(&mut client);
    }

    println!("\n7. A read with no answer times out after the request timeout:");
    client.submit(
        now,
        Operation::Read { key: "slow".into() },
        OpOptions::default(),
    );
    drain(&mut client);
    now = now + Duration::from_secs(10);
    client.handle_timeout(now);
    drain(&mut client);

    println!("\n8. close() ends everything for good:");
    client.close(now);
    drain(&mut client);
}
