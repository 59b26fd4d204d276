//! JS: `new Replier(cro, 'math')` with `replier.onMessage = (message, reply,
//! progress) => ...`, and `new Requestor(cro, 'math', timeout,
//! progressTimeout).request(message)`: request–reply between two clients,
//! with progress, a remote error and the two timeouts.
//!
//! ```sh
//! cargo run -p cachearoo-examples --example request_reply            # embedded server
//! cargo run -p cachearoo-examples --example request_reply -- HOST:PORT
//! ```

use std::time::Duration;

use cachearoo_examples::Target;
use cachearoo_smol::{connect, MessagingError, Replier, Requestor, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Serialize, Deserialize, Debug)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Sum {
    result: i64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        // One client per role: the server never echoes a client's own
        // signals, so a replier does not see requests of its own client.
        let answering = connect(target.options.clone().client_id("replier"));
        let asking = connect(target.options.clone().client_id("requestor"));
        answering.connection().wait_connected().await?;
        asking.connection().wait_connected().await?;

        // The handler form (JS onMessage): answer at once, never block.
        let mut math = Replier::new(&answering, "math").await?;
        math.on_message(|message, reply, progress| {
            let _ = progress.send(&"adding");
            let answer = match serde_json::from_value::<Add>(message) {
                Ok(add) => reply.ok(&Sum {
                    result: add.a + add.b,
                }),
                Err(e) => reply.err(&format!("not an addition: {e}")),
            };
            if let Err(e) = answer {
                eprintln!("reply not sent: {e}");
            }
        });

        // The stream form: a slow replier reporting progress as it works.
        let mut slow = Replier::new(&answering, "slow").await?;
        smol::spawn(async move {
            while let Some(request) = slow.next().await {
                smol::spawn(async move {
                    for step in 1..=3 {
                        let _ = request.progress(&json!({"step": step, "of": 3}));
                        smol::Timer::after(Duration::from_millis(100)).await;
                    }
                    let _ = request.reply(Ok::<_, ()>("finished"));
                })
                .detach();
            }
        })
        .detach();
        // The server learns of subscriptions without answering; once a
        // request of this client is answered, it has them.
        answering.list().await?;

        let requestor = Requestor::new(
            &asking,
            "math",
            Duration::from_secs(5),
            Duration::from_secs(2),
        )
        .await?;
        let sum: Sum = requestor.request(&Add { a: 7, b: 8 }).await?;
        println!("7 + 8 = {}", sum.result);
        match requestor.request::<_, Sum>(&"seven plus eight").await {
            Err(MessagingError::Remote(err)) => println!("the replier said: {err}"),
            other => println!("unexpected: {other:?}"),
        }

        // Progress keeps a request alive past its progress timeout.
        let patient = Requestor::new(
            &asking,
            "slow",
            Duration::from_secs(5),
            Duration::from_millis(500),
        )
        .await?;
        let mut call = patient.request_with_progress::<_, String>(&"work").await?;
        while let Some(progress) = call.next().await {
            println!("progress: {progress}");
        }
        println!("result: {}", call.result().await?);

        // Nobody answers on this channel: the progress timeout ends it.
        let lonely = Requestor::new(
            &asking,
            "nobody-home",
            Duration::from_secs(1),
            Duration::from_millis(200),
        )
        .await?;
        match lonely.request::<_, Value>(&1).await {
            Err(e @ (MessagingError::ProgressTimeout | MessagingError::Timeout)) => {
                println!("no replier: {e}")
            }
            other => println!("unexpected: {other:?}"),
        }

        asking.close().await;
        answering.close().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    target.finish();
    Ok(())
}
