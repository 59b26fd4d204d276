//! JS: `cro.list().then(objects => console.log(objects))`.

use cachearoo_examples::Target;
use cachearoo_smol::{connect, Error};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        let cro = connect(target.options.clone().bucket("myBucket"));
        for (key, n) in [("apple", 1), ("apricot", 2), ("banana", 3)] {
            cro.write(key, &json!({"n": n})).await?;
        }

        // Keys only (JS default `keysOnly: true`).
        for item in cro.list().await? {
            println!(
                "{} ({} bytes, written {:?})",
                item.key, item.size, item.timestamp
            );
        }
        // With content, and only keys starting with "ap".
        for item in cro.list().keys_only(false).filter("ap").await? {
            println!("{} = {:?}", item.key, item.content);
        }
        cro.close().await;
        Ok::<_, Error>(())
    })?;
    target.finish();
    Ok(())
}
