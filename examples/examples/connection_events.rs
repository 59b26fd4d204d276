//! JS: `cro.connection.onConnect = id => ...`, `onDisconnect`, `onPong`,
//! with `enablePing`; and the same as a stream of state changes.

use std::time::Duration;

use cachearoo_examples::Target;
use cachearoo_smol::{connect, ConnectionEvent, Error};
use futures_lite::StreamExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        let cro = connect(
            target
                .options
                .clone()
                .enable_ping(true)
                .ping_interval(Duration::from_millis(200)),
        );
        let connection = cro.connection();
        connection
            .on_connect(|server_id| println!("onConnect: {server_id}"))
            .await?;
        connection
            .on_disconnect(|reason| println!("onDisconnect: {reason:?}"))
            .await?;
        connection
            .on_pong(|time| println!("onPong: {time}"))
            .await?;

        // The stream form: the first pongs (automatic pings) and then close.
        let mut states = connection.events().await?;
        let mut pongs = 0;
        while let Some(Ok(event)) = states.next().await {
            println!("state stream: {event:?}");
            if let ConnectionEvent::Pong { .. } = event {
                pongs += 1;
                if pongs == 2 {
                    break;
                }
            }
        }
        println!("connected: {}", connection.is_connected());
        cro.close().await; // fires onDisconnect(ClientClosed)
        Ok::<_, Error>(())
    })?;
    target.finish();
    Ok(())
}
