//! `serve --tls-cert --tls-key`: HTTPS over HTTP/1.1 and HTTP/2 (what ALPN chose, seen by
//! a real client), WebSockets over TLS (HTTP/1.1 upgrade and HTTP/2 extended CONNECT),
//! the URL functions see, the handshake timeout. Certificate reload on SIGHUP and bad
//! files at start, with the real binary: `tls_process.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use plinth::config::TlsFiles;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::backend_tests;
use crate::documents::{docs, tenant_with_key};
use crate::rules::{NOTES_RULES, install_rules};
use crate::support::*;

backend_tests!(
    https_speaks_http1_and_http2,
    functions_see_the_https_url_over_both_protocols,
    websocket_over_tls_receives_changes,
    websocket_over_http2_receives_changes,
    unfinished_handshakes_are_cut_off,
    idle_http2_connections_are_closed,
    the_cli_trusts_a_private_ca,
);

/// A self-signed certificate for `localhost` and its key, as PEM and as DER.
pub(crate) struct TestCert {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

pub(crate) fn new_cert() -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen makes a certificate");
    TestCert {
        der: ck.cert.der().clone(),
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

/// Writes the certificate's files into `dir`, replacing them the way ACME clients do
/// (a new file renamed over the old), and names them.
pub(crate) fn write_cert(dir: &Path, cert: &TestCert) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    replace(&files.cert, &cert.cert_pem);
    replace(&files.key, &cert.key_pem);
    files
}

pub(crate) fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client_config(trusted: &[&TestCert], alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.der.clone()).expect("a trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

pub(crate) async fn tls_connect(
    addr: std::net::SocketAddr,
    trusted: &[&TestCert],
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(trusted, alpn)));
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake took over 10 s"))?
}

pub(crate) fn peer_cert(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone()
}

fn alpn(s: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// An HTTP/1.1 client on an open TLS stream (keep-alive: it can be used again later).
pub(crate) async fn http1(
    s: TlsStream<TcpStream>,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("http/1.1 handshake");
    tokio::spawn(conn);
    sender
}

pub(crate) async fn get1(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (u16, hyper::Version, Value) {
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await.expect("http/1.1 response");
    let (status, version) = (res.status().as_u16(), res.version());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        version,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// TLS app: the test server with `files`, its base URL and HTTP client switched to HTTPS
/// with `trusted` as the only trust anchors.
async fn start_tls(b: Backend, files: TlsFiles, trusted: &TestCert) -> TestApp {
    start_tls_with(b, files, trusted, |_| {}).await
}

/// [`start_tls`] with more of the configuration set by `configure`.
async fn start_tls_with(
    b: Backend,
    files: TlsFiles,
    trusted: &TestCert,
    configure: impl FnOnce(&mut plinth::config::Config),
) -> TestApp {
    let mut app = TestApp::start_with(b, |c| {
        c.tls = Some(files);
        configure(c);
    })
    .await;
    let port = app.running.as_ref().unwrap().addr.port();
    app.base = format!("https://localhost:{port}");
    // No ALPN offered (reqwest is built without HTTP/2 here): served as HTTP/1.1.
    app.http = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&[trusted], &[]))
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    app
}

async fn https_speaks_http1_and_http2(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = new_cert();
    let app = start_tls(b, write_cert(dir.path(), &cert), &cert).await;
    let addr = app.running.as_ref().unwrap().addr;

    // HTTP/1.1, asked for by ALPN.
    let s = tls_connect(addr, &[&cert], &[b"http/1.1"]).await.unwrap();
    assert_eq!(alpn(&s).as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(peer_cert(&s), cert.der);
    let mut h1 = http1(s).await;
    let (status, version, body) = get1(&mut h1, "/healthz").await;
    assert_eq!((status, version), (200, hyper::Version::HTTP_11), "{body}");

    // HTTP/2, preferred when offered: two requests at once on one connection.
    let s = tls_connect(addr, &[&cert], &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(alpn(&s).as_deref(), Some(&b"h2"[..]));
    let sender = http2(s).await;
    let get = |path: &str| {
        let mut sender = sender.clone();
        let req = hyper::Request::get(format!("https://localhost{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        async move { sender.send_request(req).await.expect("h2 response") }
    };
    let (a, b2) = tokio::join!(get("/healthz"), get("/openapi.json"));
    assert_eq!(a.status(), 200);
    assert_eq!(a.version(), hyper::Version::HTTP_2);
    assert_eq!(b2.status(), 200);
    assert_eq!(b2.version(), hyper::Version::HTTP_2);
    let missing = get("/no/such/route").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json",
        "errors over HTTP/2 are problems too"
    );

    // No ALPN at all (reqwest here): HTTP/1.1, and the API works through it.
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A client that does not trust the certificate gets no connection.
    let other = new_cert();
    let Err(err) = tls_connect(addr, &[&other], &[b"http/1.1"]).await else {
        panic!("a certificate the client does not trust was accepted");
    };
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // Plain HTTP to the TLS port gets no HTTP answer, and no hang.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "plain HTTP to the TLS port is closed, not left hanging"
    );
    assert!(
        !buf.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
}

/// An HTTP/2 client on an open TLS stream.
async fn http2(s: TlsStream<TcpStream>) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    http2_conn(s).await.0
}

/// An HTTP/2 client and its connection's task, which ends when the connection does.
async fn http2_conn(
    s: TlsStream<TcpStream>,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

/// What webhook signatures (Twilio's) are computed over: the URL the client used, with
/// the https scheme, and over HTTP/2 the host from the request target (`:authority`),
/// since HTTP/2 has no Host header.
async fn functions_see_the_https_url_over_both_protocols(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = new_cert();
    let mut app = start_tls(b, write_cert(dir.path(), &cert), &cert).await;
    let addr = app.running.as_ref().unwrap().addr;
    app.create_tenant("shop").await;
    crate::functions::deploy(
        &mut app,
        "shop",
        &[
            (
                "plinth.toml",
                "[[http]]\nname = \"where\"\nfunction = \"where\"\n",
            ),
            (
                "functions/where.js",
                "export default async (req) => ({ headers: { 'content-type': 'application/json' }, \
                 body: { url: req.url } })",
            ),
        ],
    )
    .await
    .ok(201);
    // A host name that is not the fallback ("localhost"), so the test sees where it
    // came from.
    let want = "https://plinth.test:8443/v1/t/shop/fn/where?x=1";

    let s = tls_connect(addr, &[&cert], &[b"http/1.1"]).await.unwrap();
    let req = hyper::Request::get("/v1/t/shop/fn/where?x=1")
        .header("host", "plinth.test:8443")
        .body(Empty::new())
        .unwrap();
    let res = http1(s).await.send_request(req).await.expect("response");
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["url"], want, "{body}");

    let s = tls_connect(addr, &[&cert], &[b"h2"]).await.unwrap();
    let mut h2 = http2(s).await;
    let res = h2
        .send_request(hyper::Request::get(want).body(Empty::new()).unwrap())
        .await
        .expect("h2 response");
    assert_eq!(res.version(), hyper::Version::HTTP_2);
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["url"], want, "{body}");
}

async fn websocket_over_tls_receives_changes(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = new_cert();
    let mut app = start_tls(b, write_cert(dir.path(), &cert), &cert).await;
    let addr = app.running.as_ref().unwrap().addr;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    let alice = app.signup("shop", "alice@shop.test").await;

    // What a browser does: WebSocket upgrade over HTTP/1.1 on a TLS connection.
    let s = tls_connect(addr, &[&cert], &[b"http/1.1"]).await.unwrap();
    let url = format!(
        "wss://localhost:{}/v1/t/shop/realtime?access_token={}",
        addr.port(),
        alice.access
    );
    let (mut ws, res) = tokio_tungstenite::client_async(url, s)
        .await
        .expect("websocket over TLS");
    assert_eq!(res.status(), 101);
    ws.send(Message::Text(
        json!({"type": "subscribe", "id": "n", "collection": "notes"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let subscribed = next_of(&mut ws, "subscribed").await;
    assert_eq!(subscribed["id"], "n", "{subscribed}");
    app.post(
        &docs("shop", "notes"),
        Some(&key),
        json!({"owner": alice.user_id, "title": "over tls"}),
    )
    .await
    .ok(201);
    let change = next_of(&mut ws, "change").await;
    assert_eq!(change["doc"]["data"]["title"], "over tls", "{change}");
}

/// What a browser does when the server offers it (SETTINGS_ENABLE_CONNECT_PROTOCOL): the
/// WebSocket as one stream of an HTTP/2 connection, opened by an extended CONNECT.
async fn websocket_over_http2_receives_changes(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = new_cert();
    let mut app = start_tls(b, write_cert(dir.path(), &cert), &cert).await;
    let addr = app.running.as_ref().unwrap().addr;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    let alice = app.signup("shop", "alice@shop.test").await;

    let s = tls_connect(addr, &[&cert], &[b"h2"]).await.unwrap();
    let mut h2 = http2(s).await;
    // One plain request first: by its answer the server's SETTINGS have arrived.
    let ok = h2
        .send_request(
            hyper::Request::get("https://localhost/healthz")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let connect = |token: &str| {
        hyper::Request::builder()
            .method(hyper::Method::CONNECT)
            .uri(format!(
                "https://localhost/v1/t/shop/realtime?access_token={token}"
            ))
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .header("sec-websocket-version", "13")
            .body(Empty::new())
            .unwrap()
    };
    // A bad token is refused as over HTTP/1.1: a problem, no socket.
    let refused = h2.send_request(connect("nope")).await.unwrap();
    assert_eq!(refused.status(), 401);
    let mut res = h2.send_request(connect(&alice.access)).await.unwrap();
    assert_eq!(res.status(), 200, "an extended CONNECT is answered 200");
    let upgraded = hyper::upgrade::on(&mut res).await.expect("upgraded stream");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    ws.send(Message::Text(
        json!({"type": "subscribe", "id": "n", "collection": "notes"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    next_of(&mut ws, "subscribed").await;
    app.post(
        &docs("shop", "notes"),
        Some(&key),
        json!({"owner": alice.user_id, "title": "over h2"}),
    )
    .await
    .ok(201);
    let change = next_of(&mut ws, "change").await;
    assert_eq!(change["doc"]["data"]["title"], "over h2", "{change}");
    // The connection still serves other streams beside the socket.
    let again = h2
        .send_request(
            hyper::Request::get("https://localhost/healthz")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}

/// The next JSON message of type `ty` (others are skipped; an error fails), within 10 s.
async fn next_of<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, ty: &str) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {ty} within 10 s"))
            .expect("socket open")
            .expect("a frame");
        let Message::Text(t) = frame else { continue };
        let m: Value = serde_json::from_str(t.as_str()).unwrap();
        assert_ne!(m["type"], "error", "{m}");
        if m["type"] == ty {
            return m;
        }
    }
}

async fn unfinished_handshakes_are_cut_off(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = new_cert();
    let files = write_cert(dir.path(), &cert);
    let app = TestApp::start_with(b, |c| {
        c.tls = Some(files);
        c.header_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = app.running.as_ref().unwrap().addr;
    // Connects and never says hello: closed after the header timeout, not held.
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server closes a silent connection");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // A TLS client that finishes its handshake but sends no request is cut off too (an
    // answer such as 408 before the close is fine).
    let mut s = tls_connect(addr, &[&cert], &[b"http/1.1"]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server closes an idle TLS connection");
}

/// HTTP/2 gets the idle bound HTTP/1.1 has (the header timeout): a connection with no
/// request in progress for that long is closed; one carrying a WebSocket is not, for as
/// long as the socket lives.
async fn idle_http2_connections_are_closed(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = new_cert();
    let idle = Duration::from_secs(1);
    let mut app = start_tls_with(b, write_cert(dir.path(), &cert), &cert, |c| {
        c.header_timeout = idle;
    })
    .await;
    let addr = app.running.as_ref().unwrap().addr;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    let alice = app.signup("shop", "alice@shop.test").await;
    let healthz = || {
        hyper::Request::get("https://localhost/healthz")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    // One request, then nothing: the server ends the connection.
    let s = tls_connect(addr, &[&cert], &[b"h2"]).await.unwrap();
    let (mut h2, conn) = http2_conn(s).await;
    let started = Instant::now();
    assert_eq!(h2.send_request(healthz()).await.unwrap().status(), 200);
    tokio::time::timeout(Duration::from_secs(15), conn)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    println!("idle HTTP/2 connection closed after {took:?} (bound {idle:?})");

    // A WebSocket over HTTP/2 keeps its connection open past the bound.
    let s = tls_connect(addr, &[&cert], &[b"h2"]).await.unwrap();
    let (mut h2, conn) = http2_conn(s).await;
    assert_eq!(h2.send_request(healthz()).await.unwrap().status(), 200);
    let connect = hyper::Request::builder()
        .method(hyper::Method::CONNECT)
        .uri(format!(
            "https://localhost/v1/t/shop/realtime?access_token={}",
            alice.access
        ))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    let mut res = h2.send_request(connect).await.unwrap();
    assert_eq!(res.status(), 200);
    let upgraded = hyper::upgrade::on(&mut res).await.expect("upgraded stream");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    ws.send(Message::Text(
        json!({"type": "subscribe", "id": "n", "collection": "notes"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    next_of(&mut ws, "subscribed").await;
    tokio::time::sleep(idle * 3).await;
    assert!(
        !conn.is_finished(),
        "a connection with a live socket was closed"
    );
    app.post(
        &docs("shop", "notes"),
        Some(&key),
        json!({"owner": alice.user_id, "title": "still here"}),
    )
    .await
    .ok(201);
    let change = next_of(&mut ws, "change").await;
    assert_eq!(change["doc"]["data"]["title"], "still here", "{change}");
    // Nor was it being shut down (GOAWAY): it still takes new streams.
    let again = h2
        .send_request(healthz())
        .await
        .expect("a new stream beside the socket");
    assert_eq!(again.status(), 200);
    // Once the socket is closed, the connection is idle, and goes.
    let _ = ws.close(None).await;
    drop(ws);
    tokio::time::timeout(Duration::from_secs(15), conn)
        .await
        .expect("the connection is closed once its socket is gone")
        .unwrap();
}

/// A private CA, and a certificate it issued for `localhost` and 127.0.0.1.
pub(crate) fn ca_and_leaf() -> (TestCert, TestCert) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Plinth test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    (
        TestCert {
            der: ca_cert.der().clone(),
            cert_pem: ca_cert.pem(),
            key_pem: String::new(),
        },
        TestCert {
            der: leaf.der().clone(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        },
    )
}

/// `plinth login --ca-cert` (and `PLINTH_CA_CERT`): the CLI reaches a server whose
/// certificate a private CA issued, and keeps the CA with the login.
async fn the_cli_trusts_a_private_ca(b: Backend) {
    use crate::cli_remote::{Machine, err, fails, ok};
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf) = ca_and_leaf();
    let mut app = start_tls(b, write_cert(dir.path(), &leaf), &ca).await;
    let owner = app.admin().await;
    let port = app.running.as_ref().unwrap().addr.port();
    let server = format!("https://127.0.0.1:{port}");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let ca_path = ca_file.display().to_string();
    let password = format!("{PASSWORD}\n");
    let m = Machine::new();
    let login = |extra: &[&str]| {
        let mut args = vec![
            "login",
            "--server",
            &server,
            "--email",
            "root@plinth.test",
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        m.run(&args, Some(&password))
    };

    // Without the CA the server's certificate is not trusted, and nothing is stored.
    let e = fails(login(&[]), &["cannot reach"]);
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(!m.credentials().exists());
    // With it: signed in, the CA kept with the login and used by the next commands.
    let o = login(&["--ca-cert", &ca_path]);
    let said = err(&o);
    ok(o);
    assert!(
        said.contains(&format!(
            "logged in to {server} as root@plinth.test (owner)"
        )),
        "{said}"
    );
    let stored = std::fs::read_to_string(m.credentials()).unwrap();
    let canonical = std::fs::canonicalize(&ca_file).unwrap();
    assert!(
        stored.contains(&format!("ca_cert = \"{}\"", canonical.display())),
        "{stored}"
    );
    ok(m.run(&["tenant", "create", "acme"], None));
    app.get("/admin/v1/tenants/acme", Some(&owner))
        .await
        .ok(200);
    // Logging in again without naming it keeps the stored CA.
    ok(login(&[]));
    assert!(ok(m.run(&["tenant", "list"], None)).contains("acme"));

    // CI style, from the environment alone.
    let key = app
        .post(
            "/admin/v1/api-keys",
            Some(&owner),
            json!({"name": "ci", "role": "admin"}),
        )
        .await
        .ok(201)["key"]
        .as_str()
        .unwrap()
        .to_string();
    let fresh = Machine::new();
    let env = [
        ("PLINTH_SERVER", server.as_str()),
        ("PLINTH_API_KEY", key.as_str()),
    ];
    let e = fails(
        fresh.run_env(&["tenant", "list"], None, &env),
        &["cannot reach"],
    );
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let with_ca = [env[0], env[1], ("PLINTH_CA_CERT", ca_path.as_str())];
    assert!(ok(fresh.run_env(&["tenant", "list"], None, &with_ca)).contains("acme"));
    // A file that holds no certificate, or none at all, is named.
    let bad = dir.path().join("not-a-ca.pem");
    std::fs::write(&bad, "hello\n").unwrap();
    let bad_path = bad.display().to_string();
    let bad_env = [env[0], env[1], ("PLINTH_CA_CERT", bad_path.as_str())];
    fails(
        fresh.run_env(&["tenant", "list"], None, &bad_env),
        &["not-a-ca.pem"],
    );
    fails(
        fresh.run_env(
            &["--ca-cert", "/nonexistent/ca.pem", "tenant", "list"],
            None,
            &env,
        ),
        &["cannot read the CA certificate /nonexistent/ca.pem"],
    );
}
