//! `cachearoo-server`: serves the Cachearoo protocol on one TCP port.
//!
//! ```text
//! cachearoo-server [--host 127.0.0.1] [--port 4300] [--api-key KEY] [--public-read]
//! ```
//! The apiKey may also come from `CACHEAROO_API_KEY` (keeps it out of the
//! process list), public read from `CACHEAROO_PUBLIC_READ=1`. Logging goes
//! to stderr; `RUST_LOG` sets the level (`info` by default, e.g.
//! `RUST_LOG=debug` or `RUST_LOG=cachearoo_server=trace`).

use std::process::ExitCode;

use cachearoo_server::{start, ServerConfig};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

const USAGE: &str =
    "usage: cachearoo-server [--host HOST] [--port PORT] [--api-key KEY] [--public-read]

  --host HOST      address to bind (default 127.0.0.1)
  --port PORT      port to bind (default 4300; 0 picks a free port)
  --api-key KEY    require this apiKey (or set CACHEAROO_API_KEY)
  --public-read    with an apiKey, allow reads without it (or CACHEAROO_PUBLIC_READ=1)";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::default();
    if let Ok(key) = std::env::var("CACHEAROO_API_KEY") {
        if !key.is_empty() {
            config.api_key = Some(key);
        }
    }
    if let Ok(v) = std::env::var("CACHEAROO_PUBLIC_READ") {
        config.public_read = matches!(v.trim(), "1" | "true" | "yes" | "on");
    }
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        match name.as_str() {
            "--host" => config.host = value("--host")?,
            "--port" => {
                let v = value("--port")?;
                config.port = v.parse().map_err(|_| format!("invalid port {v:?}"))?;
            }
            "--api-key" => config.api_key = Some(value("--api-key")?),
            "--public-read" => config.public_read = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(config)
}

fn main() -> ExitCode {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();

    let config = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let public_read = config.public_read;
    let with_key = config.api_key.is_some();
    let server = match start(config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        addr = %server.addr(),
        server_id = server.server_id(),
        api_key = if with_key { "required" } else { "none" },
        public_read,
        "serving WebSocket at ws://{0}/ and REST at http://{0}/_data/",
        server.addr()
    );
    // Serve until the process is stopped (Ctrl-C / SIGTERM end it).
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn parse(args: &[&str]) -> Result<cachearoo_server::ServerConfig, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_flags() {
        let c = parse(&[
            "--host",
            "0.0.0.0",
            "--port=0",
            "--api-key",
            "k",
            "--public-read",
        ])
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.api_key.as_deref(), c.public_read),
            ("0.0.0.0", 0, Some("k"), true)
        );
        assert!(parse(&["--port", "x"]).is_err());
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert_eq!(parse(&["--help"]).unwrap_err(), "");
    }
}
