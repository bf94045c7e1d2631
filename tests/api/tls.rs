//! `serve --tls-cert --tls-key`: HTTPS over HTTP/1.1 and HTTP/2 (what ALPN chose, seen by
//! a real client), WebSockets over TLS, the handshake timeout, certificate reload on
//! SIGHUP (the real binary, a real signal), and the start refused for bad files.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
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
use crate::cli::serve_process;
use crate::documents::{docs, tenant_with_key};
use crate::rules::{NOTES_RULES, install_rules};
use crate::support::*;

backend_tests!(
    https_speaks_http1_and_http2,
    functions_see_the_https_url_over_both_protocols,
    websocket_over_tls_receives_changes,
    websocket_over_http2_receives_changes,
    unfinished_handshakes_are_cut_off,
);

/// A self-signed certificate for `localhost` and its key, as PEM and as DER.
struct TestCert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn new_cert() -> TestCert {
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
fn write_cert(dir: &Path, cert: &TestCert) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    replace(&files.cert, &cert.cert_pem);
    replace(&files.key, &cert.key_pem);
    files
}

fn replace(path: &Path, text: &str) {
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

async fn tls_connect(
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

fn peer_cert(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
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
async fn http1(s: TlsStream<TcpStream>) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("http/1.1 handshake");
    tokio::spawn(conn);
    sender
}

async fn get1(
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
    let mut app = TestApp::start_with(b, |c| c.tls = Some(files)).await;
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
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
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

/// `plinth serve` with TLS as a child process: its address, and its log lines (stderr).
struct TlsProcess {
    child: Child,
    addr: std::net::SocketAddr,
    logs: Receiver<String>,
    /// Kept open: the server prints more after its address (the setup token), and a
    /// closed pipe would end it.
    _out: Receiver<String>,
}

impl TlsProcess {
    async fn start(storage: &Storage, files: &TlsFiles) -> TlsProcess {
        let (mut child, out) = serve_process(
            storage,
            &[
                "--listen",
                "127.0.0.1:0",
                // The connection opened first is used again after several reloads.
                "--header-timeout-secs",
                "300",
                "--tls-cert",
                files.cert.to_str().unwrap(),
                "--tls-key",
                files.key.to_str().unwrap(),
            ],
            Stdio::piped(),
        );
        let logs = lines(child.stderr.take().unwrap());
        let addr = loop {
            let line = out
                .recv_timeout(Duration::from_secs(30))
                .expect("serve prints its address");
            if let Some(rest) = line.strip_prefix("plinth listening on https://") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        TlsProcess {
            child,
            addr,
            logs,
            _out: out,
        }
    }

    fn hup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The next log line that contains `needle`, or panic after 15 s.
    fn log_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => continue,
                Err(_) => panic!("no log line with {needle:?} within 15 s"),
            }
        }
    }
}

impl Drop for TlsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn healthcheck(addr: std::net::SocketAddr, tls_cert: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plinth"));
    cmd.arg("healthcheck")
        .env("PLINTH_LISTEN", addr.to_string())
        .env_remove("PLINTH_TLS_CERT")
        .stdin(Stdio::null());
    if let Some(p) = tls_cert {
        cmd.env("PLINTH_TLS_CERT", p);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let storage = Storage::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (new_cert(), new_cert());
    let trusted = [&first, &second];
    let files = write_cert(dir.path(), &first);
    let server = TlsProcess::start(&storage, &files).await;

    let s = tls_connect(server.addr, &trusted, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(peer_cert(&s), first.der);
    let mut old = http1(s).await;
    assert_eq!(get1(&mut old, "/healthz").await.0, 200);

    // The container health probe speaks TLS when the server does.
    let probe = healthcheck(server.addr, Some(&files.cert));
    assert!(probe.status.success(), "{probe:?}");
    let plain = healthcheck(server.addr, None);
    assert!(!plain.status.success(), "a plain probe of a TLS port fails");

    // A new certificate and SIGHUP: new connections get it, the old one goes on.
    write_cert(dir.path(), &second);
    server.hup();
    server.log_line("TLS certificate reloaded");
    let s = tls_connect(server.addr, &trusted, &[b"h2"]).await.unwrap();
    assert_eq!(
        peer_cert(&s),
        second.der,
        "a new connection sees the new cert"
    );
    let (status, version, _) = get1(&mut old, "/healthz").await;
    assert_eq!(
        (status, version),
        (200, hyper::Version::HTTP_11),
        "the connection opened before the reload still works"
    );

    // Broken files and SIGHUP: an error naming the file, the last good cert stays.
    replace(&files.cert, "not a certificate\n");
    server.hup();
    let line = server.log_line("reload failed");
    assert!(
        line.contains(files.cert.to_str().unwrap()) && line.contains("no PEM CERTIFICATE"),
        "{line}"
    );
    let s = tls_connect(server.addr, &trusted, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(peer_cert(&s), second.der, "still the last good certificate");
    let mut h1 = http1(s).await;
    assert_eq!(get1(&mut h1, "/healthz").await.0, 200);

    // A key that is not the certificate's is refused on reload as well.
    replace(&files.cert, &first.cert_pem);
    replace(&files.key, &second.key_pem);
    server.hup();
    let line = server.log_line("reload failed");
    assert!(line.contains("does not belong"), "{line}");
    let s = tls_connect(server.addr, &trusted, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(peer_cert(&s), second.der);
    assert_eq!(get1(&mut old, "/healthz").await.0, 200);
    drop(server);
}

/// `plinth serve` with `args`; it must exit on its own (non-zero) within 30 s.
fn serve_must_fail(storage: &Storage, args: &[&str]) -> String {
    let (mut child, _out) = serve_process(storage, args, Stdio::piped());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve {args:?} is still running: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{args:?} exited with {status}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_stop_the_start() {
    let storage = Storage::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let good = write_cert(dir.path(), &new_cert());
    let other = new_cert();
    let file = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let missing = dir.path().join("missing.pem");
    let garbage = file("garbage.pem", "hello, I am not PEM\n");
    let torn = file("torn.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let other_key = file("other-key.pem", &other.key_pem);
    let cert_as_key = file("cert-as-key.pem", &other.cert_pem);
    let not_der = file(
        "not-der.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(PathBuf, PathBuf, &str, &Path)> = vec![
        (
            missing.clone(),
            good.key.clone(),
            "cannot read it",
            &missing,
        ),
        (
            good.cert.clone(),
            missing.clone(),
            "cannot read it",
            &missing,
        ),
        (
            garbage.clone(),
            good.key.clone(),
            "no PEM CERTIFICATE block",
            &garbage,
        ),
        (
            good.cert.clone(),
            garbage.clone(),
            "no PEM PRIVATE KEY block",
            &garbage,
        ),
        (torn.clone(), good.key.clone(), "not valid PEM", &torn),
        (
            good.cert.clone(),
            cert_as_key.clone(),
            "no PEM PRIVATE KEY block",
            &cert_as_key,
        ),
        (
            good.cert.clone(),
            other_key.clone(),
            "does not belong",
            &other_key,
        ),
        (
            not_der.clone(),
            good.key.clone(),
            "not a usable certificate",
            &not_der,
        ),
    ];
    for (cert, key, reason, named) in &cases {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &s(cert),
            "--tls-key",
            &s(key),
        ];
        let err = serve_must_fail(&storage, &args);
        assert!(
            err.contains(reason) && err.contains(&s(named)),
            "{args:?}: expected {reason:?} naming {named:?}, got:\n{err}"
        );
    }

    // One file without the other.
    let err = serve_must_fail(
        &storage,
        &["--listen", "127.0.0.1:0", "--tls-cert", &s(&good.cert)],
    );
    assert!(err.contains("needs --tls-key"), "{err}");

    // A wildcard listen address with no public URL is warned about (the start then
    // fails on the missing key file before anything is bound).
    let err = serve_must_fail(
        &storage,
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            &s(&good.cert),
            "--tls-key",
            &s(&missing),
        ],
    );
    assert!(
        err.contains("wildcard") && err.contains("--public-url"),
        "{err}"
    );
}
