//! Client configuration: the options of the JS client plus the knobs a
//! long-running client needs (timeouts, backoff, dead-connection detection).

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use crate::rest::percent_encode;

/// Everything the client state machine needs to know up front.
///
/// Defaults (see [`Config::default`]): `127.0.0.1:4300`, path `/`, no
/// apiKey, plain `ws`/`http`, ping every 5 s, connection declared dead after
/// 2 unanswered pings, bucket `default`, request timeout 10 s, connect
/// timeout 10 s, reconnect backoff from 250 ms doubling up to 10 s with jitter.
///
/// `Debug` never shows the apiKey (configurations end up in logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Path prefix of the server; normalised to begin and end with `/`
    /// (`api` → `/api/`) wherever it is used.
    pub path: String,
    /// apiKey sent with every message and REST request.
    pub api_key: Option<String>,
    /// Use `wss://` and `https://`.
    pub secure: bool,
    /// Send application-level pings and close connections that stop answering.
    pub enable_ping: bool,
    /// Time between pings.
    pub ping_interval: Duration,
    /// Unanswered pings after which the connection is closed and remade.
    pub missed_pong_limit: u32,
    /// Client id sent as `?id=` (shown by the server's status page).
    pub client_id: Option<String>,
    /// Bucket used when an operation names none.
    pub bucket: String,
    /// Time an operation may take before it fails with a timeout.
    pub request_timeout: Duration,
    /// Time from dialling until the greeting before the attempt is abandoned.
    pub connect_timeout: Duration,
    /// Reconnect delays.
    pub backoff: Backoff,
}

impl core::fmt::Debug for Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("secure", &self.secure)
            .field("enable_ping", &self.enable_ping)
            .field("ping_interval", &self.ping_interval)
            .field("missed_pong_limit", &self.missed_pong_limit)
            .field("client_id", &self.client_id)
            .field("bucket", &self.bucket)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// Capped exponential reconnect backoff with jitter.
///
/// The n-th consecutive failed attempt waits a random delay in
/// `[d/2, d]` where `d = min(initial · 2ⁿ, max)`; a successful connection
/// resets n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Upper bound of the delay after `failures` consecutive failures.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: String::from("127.0.0.1"),
            port: 4300,
            path: String::from("/"),
            api_key: None,
            secure: false,
            enable_ping: true,
            ping_interval: Duration::from_secs(5),
            missed_pong_limit: 2,
            client_id: None,
            bucket: String::from("default"),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
        }
    }
}

/// Normalises a path prefix to begin and end with `/` (`api` → `/api/`, `` → `/`).
pub fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        String::from("/")
    } else {
        format!("/{trimmed}/")
    }
}

impl Config {
    /// The normalised path prefix.
    pub fn normalized_path(&self) -> String {
        normalize_path(&self.path)
    }

    /// `host:port`, with an IPv6 address in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The WebSocket URL: `ws://HOST:PORT{path}?id={clientId}`.
    pub fn ws_url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        let mut url = format!("{scheme}://{}{}", self.authority(), self.normalized_path());
        if let Some(id) = &self.client_id {
            url.push_str("?id=");
            url.push_str(&percent_encode(id));
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalize_path("api"), "/api/");
        assert_eq!(normalize_path("/api"), "/api/");
        assert_eq!(normalize_path("api/"), "/api/");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("a/b"), "/a/b/");
    }

    #[test]
    fn urls() {
        let mut c = Config {
            client_id: Some("client A".into()),
            ..Config::default()
        };
        assert_eq!(c.ws_url(), "ws://127.0.0.1:4300/?id=client%20A");
        c.secure = true;
        c.host = "::1".into();
        c.path = "api".into();
        c.client_id = None;
        assert_eq!(c.ws_url(), "wss://[::1]:4300/api/");
    }

    #[test]
    fn debug_hides_the_api_key() {
        let c = Config {
            api_key: Some("hunter2".into()),
            ..Config::default()
        };
        let text = alloc::format!("{c:?}");
        assert!(!text.contains("hunter2"));
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(250));
        assert_eq!(b.ceiling(1), Duration::from_millis(500));
        assert_eq!(b.ceiling(3), Duration::from_secs(2));
        assert_eq!(b.ceiling(6), Duration::from_secs(10));
        assert_eq!(b.ceiling(1000), Duration::from_secs(10));
    }
}
