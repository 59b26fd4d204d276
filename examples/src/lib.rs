//! Runnable examples of cachearoo-rs: see `examples/examples/`.
//!
//! Every example takes an optional `HOST:PORT` argument (and reads an
//! apiKey from `CACHEAROO_API_KEY`); without an address it starts an
//! embedded `cachearoo-server` on a free port, so it runs anywhere:
//!
//! ```sh
//! cargo run -p cachearoo-examples --example demo
//! cargo run -p cachearoo-examples --example read -- 127.0.0.1:4300
//! ```

use std::error::Error;

use cachearoo_server::{RunningServer, ServerConfig};
use cachearoo_smol::Options;

/// Where an example connects, and the embedded server it started (if any).
pub struct Target {
    /// Options for clients of the target server.
    pub options: Options,
    server: Option<RunningServer>,
    stopped_port: Option<u16>,
}

impl Target {
    /// From the command line: `HOST:PORT` as the first argument, or an
    /// embedded server when there is none.
    pub fn from_args() -> Result<Target, Box<dyn Error>> {
        let mut options = Options::new();
        if let Ok(key) = std::env::var("CACHEAROO_API_KEY") {
            options = options.api_key(key);
        }
        match std::env::args().nth(1) {
            Some(address) => {
                let (host, port) = address
                    .rsplit_once(':')
                    .ok_or("expected HOST:PORT as the first argument")?;
                let options = options.host(host).port(port.parse()?);
                println!("using the server at {address}");
                Ok(Target {
                    options,
                    server: None,
                    stopped_port: None,
                })
            }
            None => {
                let mut config = ServerConfig::default().port(0);
                if let Ok(key) = std::env::var("CACHEAROO_API_KEY") {
                    config = config.api_key(key);
                }
                let server = cachearoo_server::start(config)?;
                println!(
                    "started an embedded server at {} (id {})",
                    server.addr(),
                    server.server_id()
                );
                Ok(Target {
                    options: options.address(server.addr()),
                    server: Some(server),
                    stopped_port: None,
                })
            }
        }
    }

    /// Whether this example runs its own embedded server.
    pub fn is_embedded(&self) -> bool {
        self.server.is_some() || self.stopped_port.is_some()
    }

    /// Stops the embedded server (to show reconnects); `false` when the
    /// server is not ours to stop.
    pub fn stop_embedded(&mut self) -> bool {
        match self.server.take() {
            Some(server) => {
                self.stopped_port = Some(server.addr().port());
                server.shutdown();
                true
            }
            None => false,
        }
    }

    /// Starts the embedded server again on the same port (with an empty store).
    pub fn restart_embedded(&mut self) -> Result<(), Box<dyn Error>> {
        if let Some(port) = self.stopped_port.take() {
            let mut config = ServerConfig::default().port(port);
            if let Ok(key) = std::env::var("CACHEAROO_API_KEY") {
                config = config.api_key(key);
            }
            self.server = Some(cachearoo_server::start(config)?);
        }
        Ok(())
    }

    /// Stops the embedded server, if one was started.
    pub fn finish(self) {
        if let Some(server) = self.server {
            server.shutdown();
        }
    }
}
