//! JS: `cro.connection.signalEvent('myBucket', 'myKey', { hello: 'world' })`:
//! an event to every other listening client, stored nowhere.

use cachearoo_examples::Target;
use cachearoo_smol::{connect, Error};
use futures_lite::StreamExt;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        let receiver = connect(target.options.clone());
        let mut events = receiver
            .connection()
            .add_listener("chat", "*", true)
            .await?;
        let mut frames = receiver
            .connection()
            .add_binary_listener("video", "*")
            .await?;
        receiver.connection().wait_connected().await?;
        // Once a request of ours is answered, the server has our listeners.
        receiver.list().await?;

        let sender = connect(target.options.clone());
        sender.connection().wait_connected().await?;
        sender
            .connection()
            .signal_event("chat", "greeting", &json!({"hello": "world"}))
            .await?;
        if let Some(Ok(e)) = events.next().await {
            println!("signal {}/{}: {:?}", e.bucket, e.key, e.value);
        }

        // Binary events: a type byte and a payload.
        sender
            .connection()
            .send_binary(1, "video", "cam1", vec![0xde, 0xad, 0xbe, 0xef])
            .await?;
        if let Some(Ok(f)) = frames.next().await {
            println!(
                "binary {}/{} type {}: {:02x?}",
                f.bucket, f.key, f.kind, f.payload
            );
        }
        sender.close().await;
        receiver.close().await;
        Ok::<_, Error>(())
    })?;
    target.finish();
    Ok(())
}
