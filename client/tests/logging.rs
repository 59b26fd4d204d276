//! The driver's tracing events: connects, disconnects, reconnect attempts,
//! REST requests and timeouts are logged, and the apiKey never is.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachearoo::{BoxFuture, BoxedIo, Cachearoo, ConnectionEvent, Options, Runtime};
use cachearoo_server::ServerConfig;
use futures_lite::StreamExt;
use serde_json::{json, Value};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Layer, SubscriberExt};

#[derive(Clone)]
struct Smol;

impl Runtime for Smol {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        smol::spawn(future).detach();
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::after(duration).await;
        })
    }
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<BoxedIo>> {
        let host = host.to_owned();
        Box::pin(async move {
            let stream = smol::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SECRET: &str = "s3cr3t-api-key-value";

async fn deadline<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let late = async {
        smol::Timer::after(Duration::from_secs(10)).await;
        panic!("timed out waiting for {what}");
    };
    futures_lite::future::or(f, late).await
}

#[test]
fn lifecycle_is_logged_without_the_api_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(Targets::new().with_target("cachearoo", tracing::Level::TRACE)),
    );
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    let server =
        cachearoo_server::start(ServerConfig::default().port(0).api_key(SECRET)).expect("server");
    let addr = server.addr();
    let options = Options::new()
        .address(addr)
        .api_key(SECRET)
        .backoff(Duration::from_millis(20), Duration::from_millis(100));
    smol::block_on(async {
        let client = Cachearoo::new(options.clone(), Smol);
        let mut events = client.connection().events().await.expect("events");
        deadline("connect", client.connection().wait_connected())
            .await
            .expect("connected");
        client.write("k", &json!({"a": 1})).await.expect("write");
        let _: Value = client.read("k").force_http().await.expect("rest read");

        server.shutdown();
        loop {
            if let Some(Ok(ConnectionEvent::Disconnected { .. })) =
                deadline("disconnect", events.next()).await
            {
                break;
            }
        }
        // Let a few reconnect attempts fail.
        smol::Timer::after(Duration::from_millis(300)).await;
        let server =
            cachearoo_server::start(ServerConfig::default().port(addr.port()).api_key(SECRET))
                .expect("restart");
        deadline("reconnect", client.connection().wait_connected())
            .await
            .expect("reconnected");

        // A timeout: a peer that never answers.
        let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stuck = Cachearoo::new(
            Options::new()
                .address(black_hole.local_addr().expect("addr"))
                .api_key(SECRET)
                .request_timeout(Duration::from_millis(200)),
            Smol,
        );
        let err = stuck.read::<Value>("k").await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        stuck.close().await;
        client.close().await;
        server.shutdown();
    });

    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    for expected in [
        "connecting",
        "connected",
        "disconnected",
        "reconnecting",
        "connection attempt failed",
        "connection attempt abandoned",
        "REST request",
        "REST request abandoned",
        "timed out",
        "client closing",
    ] {
        assert!(
            logs.contains(expected),
            "no {expected:?} in the logs:\n{logs}"
        );
    }
    assert!(
        !logs.contains(SECRET),
        "the apiKey leaked into the logs:\n{logs}"
    );
}
