//! Three (or more) `plinth serve` processes on one PostgreSQL database, behind Debian's
//! haproxy running docker/haproxy.cfg unchanged (its addresses come from the environment,
//! as in docker/compose.yaml).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const PASSWORD: &str = "correct-horse-battery";
pub const TENANT: &str = "shop";
const ADMIN_EMAIL: &str = "ops@cluster.test";

/// reqwest is built without a default TLS provider (as the server is).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The haproxy binary, or None (the test then skips, or fails under CI=true).
pub fn haproxy() -> Option<PathBuf> {
    let found = [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but haproxy is not installed (apt-get install haproxy)");
        }
        eprintln!("SKIPPED (cluster): haproxy is not installed (apt-get install haproxy)");
    }
    found
}

/// The settings every node of a test cluster shares, as the compose file sets them.
pub fn shared_env(db: &str) -> Vec<(String, String)> {
    vec![
        ("PLINTH_DATABASE_URL".into(), db.into()),
        // base64 of 32 bytes, the same on every node and the CLI.
        (
            "PLINTH_SECRETS_KEY".into(),
            "Y2x1c3Rlci10ZXN0LXNlY3JldHMta2V5LTMyYnl0ZSE=".into(),
        ),
        (
            "PLINTH_JWT_SECRET".into(),
            "Y2x1c3Rlci10ZXN0LWp3dC1zaWduaW5nLXNlY3JldCEhIQ==".into(),
        ),
        ("PLINTH_TRUST_FORWARDED_FOR".into(), "true".into()),
        ("PLINTH_PG_MAX_CONNECTIONS".into(), "8".into()),
        ("PLINTH_LOG".into(), "warn".into()),
    ]
}

/// A running `plinth serve`; killed (SIGKILL) when dropped.
pub struct Node {
    child: Child,
    /// host:port it listens on.
    pub addr: String,
    pub log: PathBuf,
}

impl Node {
    /// Starts a node and waits for its listen line.
    pub async fn start(env: &[(String, String)], log: &Path) -> Node {
        let mut node = Node::spawn(env, log);
        node.wait_listening().await;
        node
    }

    /// Starts a node without waiting (to start several at once).
    pub fn spawn(env: &[(String, String)], log: &Path) -> Node {
        let log_file = std::fs::File::create(log).expect("node log file");
        let child = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn plinth serve");
        Node {
            child,
            addr: String::new(),
            log: log.to_path_buf(),
        }
    }

    pub async fn wait_listening(&mut self) {
        let stdout = self.child.stdout.take().expect("stdout");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.addr.is_empty() {
            let line = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| {
                    panic!(
                        "plinth serve did not start within 60 s (or exited):\n{}",
                        log_tail(&self.log)
                    )
                });
            if let Some(rest) = line.strip_prefix("plinth listening on http://") {
                self.addr = rest.split_whitespace().next().expect("address").into();
            }
        }
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// kill -9, after checking the node is still running (it never exits by itself).
    pub fn kill(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "the node exited by itself ({status}):\n{}",
                log_tail(&self.log)
            );
        }
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    format!("--- {} ---\n{}", log.display(), lines[from..].join("\n"))
}

/// haproxy with docker/haproxy.cfg, in the foreground; killed when dropped.
pub struct Proxy {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Proxy {
    pub async fn start(bin: &Path, nodes: &[&str], log: &Path) -> Proxy {
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/haproxy.cfg");
        for _attempt in 0..5 {
            let port = free_port();
            let bind = format!("127.0.0.1:{port}");
            let log_file = std::fs::File::create(log).expect("proxy log file");
            let mut cmd = Command::new(bin);
            cmd.arg("-db")
                .arg("-f")
                .arg(&cfg)
                .env("PLINTH_PROXY_BIND", &bind)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file);
            for (i, n) in nodes.iter().enumerate() {
                cmd.env(format!("PLINTH_NODE{}", i + 1), n);
            }
            let mut child = cmd.spawn().expect("spawn haproxy");
            let base = format!("http://{bind}");
            let http = reqwest::Client::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    eprintln!("haproxy exited ({status}):\n{}", log_tail(log));
                    break;
                }
                if let Ok(r) = http.get(format!("{base}/healthz")).send().await
                    && r.status() == 200
                {
                    return Proxy {
                        child,
                        base,
                        log: log.to_path_buf(),
                    };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("haproxy did not start:\n{}", log_tail(log));
    }

    pub fn ws_base(&self) -> String {
        self.base.replacen("http://", "ws://", 1)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The `plinth` CLI as a separate process against the cluster's database.
pub fn cli(env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plinth");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("plinth output");
    assert!(
        out.status.success(),
        "plinth {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Nodes, the proxy in front of them, and the credentials of an admin and a tenant.
pub struct Cluster {
    pub env: Vec<(String, String)>,
    pub nodes: Vec<Node>,
    pub proxy: Proxy,
    pub http: reqwest::Client,
    pub admin: String,
    pub key: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` nodes on a fresh database (created with the first node's migrations), the
    /// first admin made with the CLI, a tenant and a service key made through the proxy.
    pub async fn start(n: usize, extra_env: &[(&str, &str)]) -> Option<Cluster> {
        init();
        let bin = haproxy()?;
        if !crate::support::postgres_available() {
            return None;
        }
        let db = crate::support::fresh_postgres_database().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = shared_env(&db);
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(Node::start(&env, &dir.path().join(format!("node{i}.log"))).await);
        }
        let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
        let proxy = Proxy::start(&bin, &addrs, &dir.path().join("haproxy.log")).await;
        cli(
            &env,
            &[
                "admin",
                "create",
                "--email",
                ADMIN_EMAIL,
                "--password-stdin",
            ],
            Some(PASSWORD),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let admin = expect(
            http.post(format!("{}/admin/v1/auth/login", proxy.base))
                .json(&json!({"email": ADMIN_EMAIL, "password": PASSWORD})),
            200,
        )
        .await["access_token"]
            .as_str()
            .expect("access_token")
            .to_string();
        expect(
            http.post(format!("{}/admin/v1/tenants", proxy.base))
                .bearer_auth(&admin)
                .json(&json!({"slug": TENANT, "name": "Cluster test"})),
            201,
        )
        .await;
        let key = expect(
            http.post(format!("{}/admin/v1/tenants/{TENANT}/keys", proxy.base))
                .bearer_auth(&admin)
                .json(&json!({"name": "cluster"})),
            201,
        )
        .await["key"]
            .as_str()
            .expect("key")
            .to_string();
        Some(Cluster {
            env,
            nodes,
            proxy,
            http,
            admin,
            key,
            _dir: dir,
        })
    }

    /// The tenant's document URL on `base` (a node or the proxy).
    pub fn docs(base: &str, collection: &str) -> String {
        format!("{base}/v1/t/{TENANT}/collections/{collection}/docs")
    }

    pub fn logs(&self) -> String {
        let mut s: Vec<String> = self.nodes.iter().map(|n| log_tail(&n.log)).collect();
        s.push(log_tail(&self.proxy.log));
        s.join("\n")
    }
}

/// Sends a request that must answer `status`; returns its JSON body.
pub async fn expect(req: reqwest::RequestBuilder, status: u16) -> Value {
    let r = req.send().await.expect("request");
    let got = r.status().as_u16();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "unexpected answer: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}
