//! JS: `cro.write('myKey', { name: 'Test' })`, with `failIfExists` and
//! `expire: 'session'`.

use cachearoo_examples::Target;
use cachearoo_smol::{connect, Error};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct Person {
    name: String,
    age: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        let cro = connect(target.options.clone().bucket("myBucket"));
        let alice = Person {
            name: "Alice".into(),
            age: 42,
        };
        let key = cro.write("alice", &alice).await?;
        println!("wrote {key}");

        // An empty key lets the server pick one.
        let generated = cro.write("", &alice).await?;
        println!("wrote under a generated key: {generated}");

        // failIfExists.
        match cro.write("alice", &alice).fail_if_exists().await {
            Err(e) if e.is_already_exists() => println!("alice exists already"),
            other => println!("unexpected: {other:?}"),
        }

        // expire: 'session' — removed when this client disconnects.
        cro.write("presence", &alice).expire_session().await?;
        println!("read back: {:?}", cro.read::<Person>("alice").await?);
        cro.close().await;
        Ok::<_, Error>(())
    })?;
    target.finish();
    Ok(())
}
