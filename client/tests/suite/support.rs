//! Helpers of the real-socket suite: servers, clients, deadlines, and a
//! small TLS-terminating proxy.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use cachearoo::{Cachearoo, ChangeEvent, Listener, Options, Runtime};
use cachearoo_server::{RunningServer, ServerConfig};
use futures_lite::StreamExt;

/// Longest a whole test may take before it is declared hung.
pub const TEST_DEADLINE: Duration = Duration::from_secs(60);
/// Longest a single awaited step may take.
pub const STEP: Duration = Duration::from_secs(10);

/// Runs `test`, failing it if it does not finish within [`TEST_DEADLINE`].
pub async fn with_deadline<R: Runtime>(rt: R, test: impl Future<Output = ()>) {
    let hung = async {
        rt.sleep(TEST_DEADLINE).await;
        panic!("test did not finish within {TEST_DEADLINE:?}");
    };
    futures_lite::future::or(test, hung).await
}

/// Awaits `f`, panicking with `what` after [`STEP`] (only to avoid hangs).
pub async fn within<R: Runtime, T>(rt: &R, what: &str, f: impl Future<Output = T>) -> T {
    let late = async {
        rt.sleep(STEP).await;
        panic!("timed out waiting for {what}");
    };
    futures_lite::future::or(f, late).await
}

/// A server on an ephemeral port.
pub fn server() -> RunningServer {
    server_with(ServerConfig::default().port(0))
}

/// A server with this configuration.
pub fn server_with(config: ServerConfig) -> RunningServer {
    match cachearoo_server::start(config) {
        Ok(s) => s,
        Err(e) => panic!("server did not start: {e}"),
    }
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Options for a test client of `addr`: quick reconnects and timeouts.
pub fn options(addr: SocketAddr) -> Options {
    Options::new()
        .address(addr)
        .request_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// A client of `server` that is connected.
pub async fn connected<R: Runtime + Clone>(rt: &R, options: Options) -> Cachearoo {
    let client = Cachearoo::new(options, rt.clone());
    within(
        rt,
        "the client to connect",
        client.connection().wait_connected(),
    )
    .await
    .expect("connected");
    client
}

/// The next change event of `listener`.
pub async fn next_change<R: Runtime>(rt: &R, listener: &mut Listener) -> ChangeEvent {
    match within(rt, "a change event", listener.next()).await {
        Some(Ok(event)) => event,
        other => panic!("expected a change event, got {other:?}"),
    }
}

/// Polls `condition` every 10 ms until it holds (bounded by [`STEP`]).
pub async fn eventually<R: Runtime>(rt: &R, what: &str, mut condition: impl FnMut() -> bool) {
    within(rt, what, async {
        while !condition() {
            rt.sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A TLS certificate chain made with rcgen: a private CA and a server
/// certificate for `localhost` and `127.0.0.1` signed by it.
pub struct TestPki {
    pub ca_der: Vec<u8>,
    pub server_chain: Vec<Vec<u8>>,
    pub server_key_der: Vec<u8>,
}

pub fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cachearoo test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("server key");
    let server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    TestPki {
        ca_der: ca_cert.der().to_vec(),
        server_chain: vec![server_cert.der().to_vec()],
        server_key_der: server_key.serialize_der(),
    }
}

/// A TLS-terminating proxy in front of a plain server, on its own thread
/// (smol). It stops when dropped.
pub struct TlsProxy {
    pub addr: SocketAddr,
    _stop: async_channel::Sender<()>,
}

pub fn tls_proxy(backend: SocketAddr, pki: &TestPki) -> TlsProxy {
    use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use futures_rustls::rustls::ServerConfig as TlsServerConfig;

    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    let chain = pki
        .server_chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone()));
    let config = TlsServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("tls server config");
    let acceptor = futures_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    std::thread::spawn(move || {
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(async {
            let listener = smol::net::TcpListener::try_from(listener).expect("async listener");
            let accept_loop = async {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    ex.spawn(async move {
                        // Clients refusing our certificate end here.
                        let Ok(tls) = acceptor.accept(client).await else {
                            return;
                        };
                        let Ok(server) = smol::net::TcpStream::connect(backend).await else {
                            return;
                        };
                        let (tls_r, tls_w) = futures_lite::io::split(tls);
                        let up = futures_lite::io::copy(tls_r, server.clone());
                        let down = futures_lite::io::copy(server, tls_w);
                        let _ = futures_lite::future::or(up, down).await;
                    })
                    .detach();
                }
            };
            let stop = async {
                let _ = stop_rx.recv().await;
            };
            futures_lite::future::or(accept_loop, stop).await;
        }));
    });
    TlsProxy {
        addr,
        _stop: stop_tx,
    }
}

/// Waits until the server has handled everything `client` sent so far, its
/// listener registrations included. `register-events` has no answer, but
/// the server handles one connection's messages in order, so the answer to
/// any later request proves the registration is in place.
pub async fn settled<R: Runtime>(rt: &R, client: &Cachearoo) {
    use std::future::IntoFuture;
    let read = client
        .read::<serde_json::Value>("settled")
        .bucket("settled")
        .into_future();
    let _ = within(rt, "a round trip", read).await;
}
