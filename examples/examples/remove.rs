//! JS: `cro.remove('myKey')`.

use cachearoo_examples::Target;
use cachearoo_smol::{connect, Error};
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        let cro = connect(target.options.clone().bucket("myBucket"));
        cro.write("myKey", &json!({"name": "Test"})).await?;
        cro.remove("myKey").await?;
        println!("removed myKey");
        match cro.read::<Value>("myKey").await {
            Err(e) if e.is_not_found() => println!("myKey is gone"),
            other => println!("unexpected: {other:?}"),
        }
        // Removing a missing key succeeds.
        cro.remove("myKey").await?;
        cro.close().await;
        Ok::<_, Error>(())
    })?;
    target.finish();
    Ok(())
}
