//! JS: `cro.patch('myKey', [{ op: 'replace', path: '/name', value: 'New' }])`.

use cachearoo_examples::Target;
use cachearoo_smol::{connect, Error};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        let cro = connect(target.options.clone().bucket("myBucket"));
        cro.write("myKey", &json!({"name": "Test", "tags": []}))
            .await?;

        // Raw JSON...
        let doc = cro
            .patch(
                "myKey",
                json!([{"op": "replace", "path": "/name", "value": "New"}]),
            )
            .await?;
        println!("patched: {doc}");

        // ...or a typed json_patch::Patch.
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/tags/-", "value": "red"}]))
                .map_err(Error::Deserialize)?;
        let doc = cro.patch("myKey", patch).await?;
        println!("patched: {doc}");

        // removeDataFromReply: the answer is `{}`.
        let reply = cro
            .patch("myKey", json!([{"op": "remove", "path": "/tags"}]))
            .remove_data_from_reply()
            .await?;
        println!("reply without data: {reply}");
        cro.close().await;
        Ok::<_, Error>(())
    })?;
    target.finish();
    Ok(())
}
