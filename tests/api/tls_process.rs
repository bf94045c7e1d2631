//! The TLS server as a separate process, as it runs in production: certificate reload on
//! a real SIGHUP (new connections get the new certificate, open ones go on, broken files
//! keep the old one), the start refused for bad files with the file named, and the
//! container health probe over TLS.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use plinth::config::TlsFiles;

use crate::cli::serve_process;
use crate::support::*;
use crate::tls::{get1, http1, new_cert, peer_cert, replace, tls_connect, write_cert};

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
pub(crate) fn serve_must_fail(storage: &Storage, args: &[&str]) -> String {
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
