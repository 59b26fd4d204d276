//! JS: `cro.read('myKey').then(value => console.log(value))`.

use cachearoo_examples::Target;
use cachearoo_smol::{connect, Error};
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        let cro = connect(target.options.clone().bucket("myBucket"));
        // Something to read (an embedded server starts empty).
        cro.write("myKey", &json!({"name": "Test"})).await?;

        let value: Value = cro.read("myKey").await?;
        println!("read myKey: {value}");

        // Per-call options: another bucket, and REST instead of the WebSocket.
        let value: Value = cro.read("myKey").bucket("myBucket").force_http().await?;
        println!("read myKey over REST: {value}");

        // A missing key is a typed error.
        match cro.read::<Value>("noSuchKey").await {
            Err(e) if e.is_not_found() => println!("noSuchKey: not found"),
            other => println!("noSuchKey: {other:?}"),
        }

        // An empty key reads the whole bucket (JS `read('')`).
        for item in cro.read_all().await? {
            println!("  {} = {:?}", item.key, item.content);
        }
        cro.close().await;
        Ok::<_, Error>(())
    })?;
    target.finish();
    Ok(())
}
