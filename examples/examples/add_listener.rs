//! JS: `cro.connection.addListener('myBucket', '*', true, event => ...)`:
//! the stream form (dropped = unsubscribed) and the callback form.

use cachearoo_examples::Target;
use cachearoo_smol::{connect, Error};
use futures_lite::StreamExt;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        let cro = connect(target.options.clone().bucket("myBucket"));
        let connection = cro.connection();
        // Listeners can be added before the connection is up.
        let mut events = connection.add_listener("myBucket", "*", true).await?;
        let id = connection
            .add_listener_callback("myBucket", "myKey", false, |event| {
                println!(
                    "callback: {} changed (deleted: {})",
                    event.key, event.is_deleted
                );
            })
            .await?;
        connection.wait_connected().await?;
        // The server learns of listeners without answering; once any request
        // of ours is answered, it has them.
        cro.list().await?;

        // Another client makes changes.
        let other = connect(target.options.clone().bucket("myBucket"));
        other.connection().wait_connected().await?;
        other.write("myKey", &json!({"n": 1})).await?;
        other.remove("myKey").await?;

        for _ in 0..2 {
            match events.next().await {
                Some(Ok(e)) => println!(
                    "stream: {}/{} value={:?} deleted={}",
                    e.bucket, e.key, e.value, e.is_deleted
                ),
                Some(Err(lagged)) => println!("stream: {lagged}"),
                None => break,
            }
        }
        connection.remove_listener(id).await?;
        drop(events); // unsubscribes
        other.close().await;
        cro.close().await;
        Ok::<_, Error>(())
    })?;
    target.finish();
    Ok(())
}
