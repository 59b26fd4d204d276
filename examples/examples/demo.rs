//! The whole client in one run: connection callbacks, every datastore
//! operation, listeners (stream and callback), signal and binary events,
//! ping/pong, REST, and — against the embedded server — a server restart
//! with automatic reconnect and re-registration.
//!
//! ```sh
//! cargo run -p cachearoo-examples --example demo            # embedded server
//! cargo run -p cachearoo-examples --example demo -- HOST:PORT
//! ```

use std::time::Duration;

use cachearoo_examples::Target;
use cachearoo_smol::{connect, ConnectionEvent, Error};
use futures_lite::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Car {
    make: String,
    model: String,
    year: u16,
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut target = Target::from_args()?;
    smol::block_on(async {
        step("connect (new Cachearoo(options) returns at once)");
        let options = target
            .options
            .clone()
            .bucket("demo")
            .client_id("demo")
            .backoff(Duration::from_millis(50), Duration::from_millis(500));
        let cro = connect(options.clone());
        let conn = cro.connection();
        conn.on_connect(|id| println!("  onConnect: server {id}"))
            .await?;
        conn.on_disconnect(|reason| println!("  onDisconnect: {reason:?}"))
            .await?;
        conn.on_pong(|time| println!("  onPong: {time}")).await?;
        // Listeners may be added before the socket is up.
        let mut cars = conn.add_listener("demo", "*", true).await?;
        conn.wait_connected().await?;

        step("write / read (typed through serde)");
        let saab = Car {
            make: "Saab".into(),
            model: "900".into(),
            year: 1987,
        };
        println!("  wrote key {:?}", cro.write("saab", &saab).await?);
        println!("  read: {:?}", cro.read::<Car>("saab").await?);
        match cro.write("saab", &saab).fail_if_exists().await {
            Err(e) => println!("  failIfExists: {e}"),
            Ok(_) => println!("  failIfExists: unexpectedly written"),
        }

        step("events from another client");
        let other = connect(options.clone());
        other.connection().wait_connected().await?;
        other
            .write(
                "volvo",
                &json!({"make": "Volvo", "model": "240", "year": 1975}),
            )
            .await?;
        if let Some(Ok(e)) = cars.next().await {
            println!("  change {}/{}: {:?}", e.bucket, e.key, e.value);
        }

        step("patch");
        let doc = cro
            .patch(
                "saab",
                json!([{"op": "replace", "path": "/year", "value": 1988}]),
            )
            .await?;
        println!("  patched: {doc} (our own changes are not echoed to us)");

        step("list / read all");
        for item in cro.list().await? {
            println!("  key {} ({} bytes)", item.key, item.size);
        }
        println!(
            "  read_all: {} items with content",
            cro.read_all().await?.len()
        );

        step("REST (forceHttp)");
        let over_rest: Value = cro.read("volvo").force_http().await?;
        println!("  read over REST: {over_rest}");

        step("remove");
        other.remove("volvo").await?;
        if let Some(Ok(e)) = cars.next().await {
            println!("  {} deleted: {}", e.key, e.is_deleted);
        }

        step("signal and binary events");
        let mut frames = conn.add_binary_listener("demo", "camera").await?;
        // Listeners are registered without an answer; any answered request
        // of ours proves the server has them.
        cro.list().await?;
        other
            .connection()
            .signal_event("demo", "horn", &json!({"volume": 11}))
            .await?;
        if let Some(Ok(e)) = cars.next().await {
            println!("  signal {}: {:?}", e.key, e.value);
        }
        other
            .connection()
            .send_binary(3, "demo", "camera", vec![1, 2, 3, 4])
            .await?;
        if let Some(Ok(f)) = frames.next().await {
            println!("  binary type {} payload {:?}", f.kind, f.payload);
        }

        step("ping / pong");
        let mut states = conn.events().await?;
        conn.ping().await?;
        while let Some(Ok(event)) = states.next().await {
            if let ConnectionEvent::Pong { .. } = event {
                break;
            }
        }

        if target.is_embedded() {
            step("server restart: REST while down, then reconnect");
            target.stop_embedded();
            while let Some(Ok(event)) = states.next().await {
                if let ConnectionEvent::Disconnected { .. } = event {
                    break;
                }
            }
            match cro.read::<Car>("saab").await {
                Err(e) => println!("  read while down went over REST and failed: {e}"),
                Ok(car) => println!("  read while down: {car:?}"),
            }
            target.restart_embedded().map_err(|e| {
                Error::Op(cachearoo_smol::OpError::Transport {
                    message: e.to_string(),
                })
            })?;
            conn.wait_connected().await?;
            cro.list().await?; // the listener is registered again
            other.connection().wait_connected().await?;
            // The listener was registered again by itself.
            other.write("saab", &saab).await?;
            if let Some(Ok(e)) = cars.next().await {
                println!("  after reconnect: change {}/{}", e.bucket, e.key);
            }
        }

        step("close");
        other.close().await;
        cro.close().await;
        println!("  listener stream ended: {}", cars.next().await.is_none());
        Ok::<_, Error>(())
    })?;
    target.finish();
    Ok(())
}
