//! Client options: the JS client's options plus TLS and the knobs of a
//! long-running client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cachearoo_core::{Backoff, Config};
use futures_rustls::pki_types::pem::PemObject;
use futures_rustls::pki_types::CertificateDer;
use futures_rustls::rustls::ClientConfig;

use crate::error::Error;

/// How a [`Cachearoo`](crate::Cachearoo) client connects and behaves.
///
/// Built with [`Options::new`] and the builder methods, or by setting the
/// public fields on `Options::default()`. Defaults: `127.0.0.1:4300`, path
/// `/`, no apiKey, plain `ws`/`http`, ping every 5 s (connection remade after
/// 2 unanswered pings), bucket `default`, request timeout 10 s, connect
/// timeout 10 s, reconnect backoff from 250 ms doubling up to 10 s with
/// jitter, listener queues of 256 events.
///
/// `Debug` never shows the apiKey.
#[derive(Clone)]
pub struct Options {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Path prefix of the server (`api` and `/api/` are the same).
    pub path: String,
    /// apiKey sent with every message and REST request.
    pub api_key: Option<String>,
    /// Use TLS: `wss://` for the WebSocket and `https://` for REST.
    pub secure: bool,
    /// TLS settings (root certificates) used when `secure` is set.
    pub tls: TlsOptions,
    /// Send application pings and remake connections that stop answering.
    pub enable_ping: bool,
    /// Time between pings.
    pub ping_interval: Duration,
    /// Unanswered pings after which the connection is closed and remade.
    pub missed_pong_limit: u32,
    /// Client id sent as `?id=` (shown by the server's status page).
    pub client_id: Option<String>,
    /// Bucket used by operations that name none.
    pub bucket: String,
    /// Time an operation may take before it fails with a timeout.
    pub request_timeout: Duration,
    /// Time from dialling until the server's greeting before an attempt is abandoned.
    pub connect_timeout: Duration,
    /// Reconnect delays (capped exponential backoff with jitter).
    pub backoff: Backoff,
    /// Capacity of each listener's and each event stream's queue. A
    /// consumer that falls further behind loses the oldest events and is
    /// told how many (see [`Lagged`](crate::Lagged)).
    pub listener_capacity: usize,
    /// Capacity of the queue of commands from the handles to the driver
    /// task; callers wait (asynchronously) while it is full.
    pub command_capacity: usize,
    /// Seed of the client's randomness (backoff jitter); `None` picks one.
    pub seed: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        let core = Config::default();
        Options {
            host: core.host,
            port: core.port,
            path: core.path,
            api_key: core.api_key,
            secure: core.secure,
            tls: TlsOptions::default(),
            enable_ping: core.enable_ping,
            ping_interval: core.ping_interval,
            missed_pong_limit: core.missed_pong_limit,
            client_id: core.client_id,
            bucket: core.bucket,
            request_timeout: core.request_timeout,
            connect_timeout: core.connect_timeout,
            backoff: core.backoff,
            listener_capacity: 256,
            command_capacity: 256,
            seed: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            // Never print the apiKey: options end up in logs.
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("secure", &self.secure)
            .field("tls", &self.tls)
            .field("enable_ping", &self.enable_ping)
            .field("ping_interval", &self.ping_interval)
            .field("missed_pong_limit", &self.missed_pong_limit)
            .field("client_id", &self.client_id)
            .field("bucket", &self.bucket)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("listener_capacity", &self.listener_capacity)
            .field("command_capacity", &self.command_capacity)
            .field("seed", &self.seed)
            .finish()
    }
}

impl Options {
    /// The default options (see the type's docs).
    pub fn new() -> Self {
        Options::default()
    }

    /// Sets the server host.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Sets the server port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets host and port from a socket address.
    pub fn address(mut self, addr: std::net::SocketAddr) -> Self {
        self.host = addr.ip().to_string();
        self.port = addr.port();
        self
    }

    /// Sets the path prefix.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the apiKey.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    /// Switches TLS on or off for both the WebSocket and REST.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets the TLS options.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Switches application pings on or off.
    pub fn enable_ping(mut self, enable: bool) -> Self {
        self.enable_ping = enable;
        self
    }

    /// Sets the time between pings.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets the client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Sets the default bucket.
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// Sets the request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the reconnect backoff: first delay and longest delay.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff { initial, max };
        self
    }

    /// Sets the capacity of listener and event queues (at least 1).
    pub fn listener_capacity(mut self, capacity: usize) -> Self {
        self.listener_capacity = capacity;
        self
    }

    /// Sets the seed of the client's randomness.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The core's configuration.
    pub(crate) fn core_config(&self) -> Config {
        Config {
            host: self.host.clone(),
            port: self.port,
            path: self.path.clone(),
            api_key: self.api_key.clone(),
            secure: self.secure,
            enable_ping: self.enable_ping,
            ping_interval: self.ping_interval,
            missed_pong_limit: self.missed_pong_limit,
            client_id: self.client_id.clone(),
            bucket: self.bucket.clone(),
            request_timeout: self.request_timeout,
            connect_timeout: self.connect_timeout,
            backoff: self.backoff,
        }
    }
}

/// TLS settings for `secure` connections.
///
/// Server certificates are always verified. By default they must chain to
/// the Mozilla root certificates (the `webpki-roots` feature, on by
/// default). For a private CA, add its certificate with
/// [`TlsOptions::add_root_certificate`] or
/// [`TlsOptions::add_root_certificates_pem`]: once any custom root is
/// given, **only** the custom roots are trusted. [`TlsOptions::client_config`]
/// takes a complete rustls configuration instead (client certificates,
/// other verifiers).
#[derive(Clone, Default)]
pub struct TlsOptions {
    pub(crate) roots: Vec<CertificateDer<'static>>,
    pub(crate) client_config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("custom_roots", &self.roots.len())
            .field("client_config", &self.client_config.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// Verification against the default roots.
    pub fn new() -> Self {
        TlsOptions::default()
    }

    /// Trusts `certificate` (DER) as a root.
    pub fn add_root_certificate(mut self, certificate: CertificateDer<'static>) -> Self {
        self.roots.push(certificate);
        self
    }

    /// Trusts every certificate of a PEM text as a root.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        let before = self.roots.len();
        for cert in CertificateDer::pem_slice_iter(pem) {
            self.roots
                .push(cert.map_err(|e| Error::InvalidCertificate(e.to_string()))?);
        }
        if self.roots.len() == before {
            return Err(Error::InvalidCertificate(
                "no certificate in the PEM text".into(),
            ));
        }
        Ok(self)
    }

    /// Uses this rustls configuration as it is (roots and all). Its ALPN
    /// list should be empty: both the WebSocket and REST use HTTP/1.1.
    pub fn client_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.client_config = Some(config);
        self
    }

    /// The rustls configuration these options describe.
    pub(crate) fn build(&self) -> Result<Arc<ClientConfig>, String> {
        if let Some(c) = &self.client_config {
            return Ok(c.clone());
        }
        let mut roots = futures_rustls::rustls::RootCertStore::empty();
        if self.roots.is_empty() {
            #[cfg(feature = "webpki-roots")]
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            let (_, ignored) = roots.add_parsable_certificates(self.roots.iter().cloned());
            if ignored > 0 {
                tracing::warn!(ignored, "ignored unparsable custom root certificates");
            }
        }
        if roots.is_empty() {
            return Err("no root certificates to verify the server with".into());
        }
        let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}
