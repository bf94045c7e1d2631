//! `serve --acme-domain` against a real ACME server: Debian's `pebble`, on loopback, with
//! real TLS-ALPN-01 validation (pebble's `tlsPort` is Plinth's port, so its validation
//! connects to Plinth offering `acme-tls/1`; `localhost` resolves to loopback). The
//! server obtains a certificate that pebble's root verifies, keeps it in the ACME
//! directory, and serves it again after a restart without a new order. Bad settings stop
//! the start with a clear message; an unreachable CA is logged and retried while the
//! server runs on. SQLite only: the certificate does not touch the database.
//!
//! Without pebble installed (`apt-get install pebble`; .ci/run installs it) the tests
//! print why and pass without checking anything.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::cli::serve_process;
use crate::support::*;
use crate::tls::{TestCert, ca_and_leaf, get1, http1, peer_cert, tls_connect, write_cert};
use crate::tls_process::serve_must_fail;

/// Lines a child process printed (stdout and stderr), kept for assertions and for the
/// panic message.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(&self, r: impl std::io::Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }

    fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn first(&self, needle: &str) -> Option<String> {
        let lines = self.0.lock().unwrap();
        lines.iter().find(|l| l.contains(needle)).cloned()
    }

    fn dump(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// A child process killed when dropped, with its output.
struct Proc {
    child: Child,
    out: Lines,
}

impl Proc {
    fn wait_for(&self, needle: &str, secs: u64, others: &[&Proc]) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(l) = self.out.first(needle) {
                return l;
            }
            if Instant::now() > deadline {
                let others: Vec<String> = others.iter().map(|p| p.out.dump()).collect();
                panic!(
                    "no line with {needle:?} within {secs} s; output:\n{}\n\nother processes:\n{}",
                    self.out.dump(),
                    others.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pebble_binary() -> Option<PathBuf> {
    ["/usr/bin/pebble", "/usr/local/bin/pebble"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Renewal starts when fewer than 30 days of validity remain.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long after issuance a certificate pebble issues is due for renewal.
const RENEWAL_DUE: Duration = Duration::from_secs(45);
const VALIDITY: Duration = RENEW_BEFORE.saturating_add(RENEWAL_DUE);

/// pebble on loopback, validating TLS-ALPN-01 on `tls_port`.
struct Pebble {
    proc: Proc,
    dir_url: String,
    mgmt: SocketAddr,
    ports: [u16; 3],
    /// The private CA of pebble's own HTTPS (its PEM file, and the certificate).
    ca_file: PathBuf,
    ca: TestCert,
}

impl Pebble {
    fn start(bin: &Path, dir: &Path, tls_port: u16) -> Pebble {
        Pebble::start_at(bin, dir, tls_port, [free_port(), free_port(), free_port()])
    }

    /// pebble on these ports: ACME, management, HTTP-01 (unused).
    fn start_at(bin: &Path, dir: &Path, tls_port: u16, ports: [u16; 3]) -> Pebble {
        let (ca, leaf) = ca_and_leaf();
        let https = write_cert(dir, &leaf);
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca.cert_pem).unwrap();
        let [port, mgmt_port, http_port] = ports;
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": https.cert,
                "privateKey": https.key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                // Just over the 30 days of validity under which Plinth renews: a restart
                // soon after issuance keeps the certificate, one after RENEWAL_DUE renews it.
                "certificateValidityPeriod": VALIDITY.as_secs(),
                "externalAccountBindingRequired": false
            }
        });
        let config_file = dir.join("pebble.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let mut child = Command::new(bin)
            .arg("-config")
            .arg(&config_file)
            // No random sleep before validating, no nonces refused for practice: the
            // test is about Plinth, not about pebble's chaos.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pebble");
        let out = Lines::default();
        out.follow(child.stdout.take().unwrap());
        out.follow(child.stderr.take().unwrap());
        let proc = Proc { child, out };
        proc.wait_for("ACME directory available", 30, &[]);
        Pebble {
            proc,
            dir_url: format!("https://127.0.0.1:{port}/dir"),
            mgmt: ([127, 0, 0, 1], mgmt_port).into(),
            ports,
            ca_file,
            ca,
        }
    }

    /// The root that issued pebble's certificates (it makes a new one each run).
    async fn root(&self) -> TestCert {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .tls_certs_only(
                reqwest::Certificate::from_pem_bundle(self.ca.cert_pem.as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        let pem = client
            .get(format!("https://{}/roots/0", self.mgmt))
            .send()
            .await
            .expect("pebble's management API answers")
            .text()
            .await
            .unwrap();
        TestCert {
            der: CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM root"),
            cert_pem: pem,
            key_pem: String::new(),
        }
    }

    fn orders(&self) -> usize {
        self.proc.out.count("Added order")
    }
}

/// `plinth serve` with ACME for `localhost` on `port`.
fn serve_acme(storage: &Storage, port: u16, acme_dir: &Path, pebble: &Pebble) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let (mut child, stdout) = serve_process(
        storage,
        &[
            "--listen",
            &listen,
            "--acme-domain",
            "localhost",
            "--acme-email",
            "ops@example.com",
            "--acme-dir",
            acme_dir.to_str().unwrap(),
            "--acme-directory",
            &pebble.dir_url,
            "--acme-ca-root",
            pebble.ca_file.to_str().unwrap(),
        ],
        Stdio::piped(),
    );
    let out = Lines::default();
    out.follow(child.stderr.take().unwrap());
    // The server's stdout goes on being read (a closed pipe would end it).
    let printed = out.clone();
    std::thread::spawn(move || {
        while let Ok(line) = stdout.recv() {
            printed.0.lock().unwrap().push(line);
        }
    });
    let proc = Proc { child, out };
    proc.wait_for("plinth listening on https://", 60, &[&pebble.proc]);
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_obtains_serves_and_reuses_a_certificate() {
    let Some(bin) = pebble_binary() else {
        eprintln!("SKIPPED acme_obtains_serves_and_reuses_a_certificate: pebble is not installed");
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pebble = Pebble::start(&bin, dir.path(), port);
    let storage = Storage::fresh(Backend::Sqlite).await;
    let acme_dir = dir.path().join("acme");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    let server = serve_acme(&storage, port, &acme_dir, &pebble);
    server.wait_for("ACME certificate obtained", 120, &[&pebble.proc]);
    let issued_by = Instant::now();
    // Validated for real: pebble connected to Plinth's port offering `acme-tls/1` (three
    // times: pebble validates from three "vantage points" at once).
    assert!(
        server.out.count("answered an ACME TLS-ALPN-01 validation") >= 1,
        "{}",
        server.out.dump()
    );
    assert_eq!(
        pebble.proc.out.count("PEBBLE_VA_ALWAYS_VALID is enabled"),
        0
    );
    assert_eq!(pebble.orders(), 1, "{}", pebble.proc.out.dump());

    // A client trusting only pebble's root reaches the API by the name.
    let root = pebble.root().await;
    let s = tls_connect(addr, &[&root], &[b"http/1.1"])
        .await
        .expect("the certificate chains to pebble's root for `localhost`");
    let issued = peer_cert(&s);
    let mut h1 = http1(s).await;
    assert_eq!(get1(&mut h1, "/healthz").await.0, 200);
    // A self-signed or challenge certificate would not verify.
    let (other_ca, _) = ca_and_leaf();
    assert!(
        tls_connect(addr, &[&other_ca], &[b"http/1.1"])
            .await
            .is_err()
    );
    // With no challenge pending, an `acme-tls/1` hello gets no certificate at all (never
    // the real one).
    assert!(tls_connect(addr, &[&root], &[b"acme-tls/1"]).await.is_err());

    // The ACME directory keeps the account and the certificate, for the owner only.
    for name in ["account.json", "certificate.json"] {
        let path = acme_dir.join(name);
        assert!(path.exists(), "{name} is kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&acme_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the ACME directory");
    }
    let kept = std::fs::read_to_string(acme_dir.join("certificate.json")).unwrap();
    assert!(
        kept.contains("localhost") && kept.contains(&pebble.dir_url),
        "{kept}"
    );
    drop(h1);
    drop(server);

    // A restart serves the kept certificate without asking pebble.
    let server = serve_acme(&storage, port, &acme_dir, &pebble);
    server.wait_for(
        "ACME certificate loaded from the cache",
        30,
        &[&pebble.proc],
    );
    let s = tls_connect(addr, &[&root], &[b"h2"]).await.unwrap();
    assert_eq!(
        peer_cert(&s),
        issued,
        "the same certificate after the restart"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pebble.orders(),
        1,
        "no new order: {}",
        pebble.proc.out.dump()
    );
    assert_eq!(
        server.out.count("ordering an ACME certificate"),
        0,
        "{}",
        server.out.dump()
    );
    drop(server);

    // Once fewer than 30 days remain, a start serves the kept certificate and renews it:
    // a new order on the same account, a new certificate served and kept.
    let due = (issued_by + RENEWAL_DUE + Duration::from_secs(2))
        .saturating_duration_since(Instant::now());
    assert!(
        !due.is_zero(),
        "the restart above took longer than {RENEWAL_DUE:?}"
    );
    tokio::time::sleep(due).await;
    let server = serve_acme(&storage, port, &acme_dir, &pebble);
    server.wait_for(
        "ACME certificate loaded from the cache",
        30,
        &[&pebble.proc],
    );
    server.wait_for("ordering an ACME certificate", 30, &[&pebble.proc]);
    server.wait_for("ACME certificate obtained", 120, &[&pebble.proc]);
    assert_eq!(pebble.orders(), 2, "{}", pebble.proc.out.dump());
    assert_eq!(
        server.out.count("ACME account created"),
        0,
        "the kept account"
    );
    let s = tls_connect(addr, &[&root], &[b"http/1.1"]).await.unwrap();
    let renewed = peer_cert(&s);
    assert_ne!(renewed, issued, "the renewed certificate is served");
    let mut h1 = http1(s).await;
    assert_eq!(get1(&mut h1, "/healthz").await.0, 200);
    let kept_now = std::fs::read_to_string(acme_dir.join("certificate.json")).unwrap();
    assert_ne!(kept_now, kept, "the renewed certificate is kept");
    drop(h1);
    drop(server);

    // Another CA (directory URL) is another account and another certificate: the kept
    // one is not served for it. pebble is the same process at another URL.
    let other_url = pebble.dir_url.replace("127.0.0.1", "localhost");
    let moved = Pebble {
        dir_url: other_url,
        ..pebble
    };
    let server = serve_acme(&storage, port, &acme_dir, &moved);
    server.wait_for("ACME certificate obtained", 120, &[&moved.proc]);
    assert_eq!(server.out.count("loaded from the cache"), 0);
    assert_eq!(moved.orders(), 3, "{}", moved.proc.out.dump());
    assert_eq!(server.out.count("ACME account created"), 1);
    drop(server);

    // A CA that forgot the kept account (pebble keeps nothing across a restart): the
    // order is refused, a new account made and the order placed again, at once.
    let ports = moved.ports;
    let url = moved.dir_url.clone();
    drop(moved);
    let pebble = Pebble {
        dir_url: url,
        ..Pebble::start_at(&bin, dir.path(), port, ports)
    };
    std::fs::remove_file(acme_dir.join("certificate.json")).unwrap();
    let server = serve_acme(&storage, port, &acme_dir, &pebble);
    server.wait_for("ACME certificate obtained", 120, &[&pebble.proc]);
    assert_eq!(server.out.count("no longer knows the kept account"), 1);
    assert_eq!(server.out.count("ACME account created"), 1);
    assert_eq!(server.out.count("order failed"), 0, "{}", server.out.dump());
    let root = pebble.root().await;
    let s = tls_connect(addr, &[&root], &[b"http/1.1"]).await.unwrap();
    let mut h1 = http1(s).await;
    assert_eq!(get1(&mut h1, "/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_bad_settings_are_refused_and_an_unreachable_ca_is_retried() {
    let storage = Storage::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let files = write_cert(dir.path(), &crate::tls::new_cert());
    let acme_dir = dir.path().join("acme");
    let acme_dir = acme_dir.to_str().unwrap();
    // A directory that cannot be made: its parent is a file.
    let under_a_file = files.cert.join("acme");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--tls-cert",
                files.cert.to_str().unwrap(),
                "--tls-key",
                files.key.to_str().unwrap(),
                "--acme-domain",
                "api.example.com",
                "--acme-dir",
                acme_dir,
            ],
            "exclusive",
        ),
        (vec!["--acme-domain", "api.example.com"], "needs --acme-dir"),
        (
            vec!["--acme-domain", "*.example.com", "--acme-dir", acme_dir],
            "wildcard",
        ),
        (
            vec![
                "--acme-domain",
                "https://api.example.com",
                "--acme-dir",
                acme_dir,
            ],
            "not a DNS name",
        ),
        (
            vec![
                "--acme-domain",
                "api.example.com",
                "--acme-dir",
                acme_dir,
                "--acme-directory",
                "ftp://ca.example.com/dir",
            ],
            "not an http(s) URL",
        ),
        (
            vec![
                "--acme-domain",
                "api.example.com",
                "--acme-dir",
                acme_dir,
                "--acme-ca-root",
                "/nonexistent/ca.pem",
            ],
            "/nonexistent/ca.pem",
        ),
        (
            vec![
                "--acme-domain",
                "api.example.com",
                "--acme-dir",
                under_a_file.to_str().unwrap(),
            ],
            "ACME directory",
        ),
    ];
    for (args, expected) in &cases {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(args);
        let err = serve_must_fail(&storage, &all);
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?}, got:\n{err}"
        );
    }

    // A CA that cannot be reached: the server starts, serves no certificate yet, logs
    // the failure with the next attempt's delay, and runs on.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let closed = format!("https://127.0.0.1:{}/dir", free_port());
    let (mut child, stdout) = serve_process(
        &storage,
        &[
            "--listen",
            &listen,
            "--acme-domain",
            "localhost",
            "--acme-dir",
            acme_dir,
            "--acme-directory",
            &closed,
        ],
        Stdio::piped(),
    );
    let out = Lines::default();
    out.follow(child.stderr.take().unwrap());
    let printed = out.clone();
    std::thread::spawn(move || {
        while let Ok(line) = stdout.recv() {
            printed.0.lock().unwrap().push(line);
        }
    });
    let mut server = Proc { child, out };
    let line = server.wait_for("ACME certificate order failed", 60, &[]);
    assert!(
        line.contains(&closed) && line.contains("retry_in_secs=60") && line.contains("failures=1"),
        "{line}"
    );
    assert!(
        line.contains("onnection refused") || line.contains("connect"),
        "{line}"
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let any = crate::tls::new_cert();
    assert!(
        tls_connect(addr, &[&any], &[b"http/1.1"]).await.is_err(),
        "no certificate yet: handshakes fail"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.alive(), "a failed order does not end the server");
    assert!(
        !server.out.dump().contains("panicked"),
        "{}",
        server.out.dump()
    );
}
