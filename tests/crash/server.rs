//! The `plinth serve` binary as a child process on a free loopback port, over a storage that
//! outlives it, and the admin calls that set a tenant up on it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{PASSWORD, Storage};

/// How long a claimed hook job stays its node's (`PLINTH_HOOK_LEASE`): the jobs a killed
/// server had claimed run this long after the kill at the earliest.
pub const HOOK_LEASE_SECS: u64 = 3;

pub const TENANT: &str = "crash";

/// The after hook: one marker per triggering write, `marks/{order id}-v{version}`, written
/// with `put`, so a job that runs twice leaves the same marker (one version later).
const MANIFEST: &str =
    "[[hooks]]\nfunction = \"mark\"\ncollection = \"orders\"\non = [\"create\", \"update\"]\n";
const MARK: &str = r#"
export default async function (event, ctx) {
  const d = event.doc;
  await ctx.db.put('marks', `${d.id}-v${d.version}`, { order: d.id, version: d.version, seq: event.seq });
}
"#;

/// A running `plinth serve`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    pub setup_token: Option<String>,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server and waits for its listen line (and, when `expect_token`, the
    /// setup token it prints while no admin exists). Its log goes to `log`.
    pub async fn start(storage: &Storage, log: &Path, expect_token: bool) -> Server {
        let log_file = std::fs::File::create(log).expect("server log file");
        let lease = HOOK_LEASE_SECS.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(storage.cli_args())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--hook-lease-secs",
                &lease,
            ])
            .env_remove("PLINTH_DATABASE_URL")
            .env_remove("PLINTH_DATA_DIR")
            .env("PLINTH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn plinth serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            setup_token: None,
            log: log.to_path_buf(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while server.base.is_empty() || (expect_token && server.setup_token.is_none()) {
            let line = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| {
                    panic!(
                        "plinth serve did not start within 60 s (or exited):\n{}",
                        server.log_tail()
                    )
                });
            if let Some(rest) = line.strip_prefix("plinth listening on http://") {
                let addr = rest.split_whitespace().next().expect("address");
                server.base = format!("http://{addr}");
            }
            if let Some(i) = line.find("\"token\":\"") {
                let rest = &line[i + 9..];
                server.setup_token = rest.find('"').map(|end| rest[..end].to_string());
            }
        }
        // The reader thread keeps draining stdout (and ends with the process).
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        server
    }

    /// kill -9, after checking the server is still running (it never exits by itself).
    pub fn kill(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "the server exited by itself ({status}):\n{}",
                self.log_tail()
            );
        }
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- {} ---\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the clients and checks need: the tenant's service key and an admin token.
#[derive(Clone)]
pub struct Creds {
    pub key: String,
    pub admin: String,
}

/// The first admin (with the printed setup token), the tenant, a service key and the hook
/// bundle, through the admin API.
pub async fn set_up(http: &reqwest::Client, server: &Server) -> Creds {
    let base = &server.base;
    let token = server.setup_token.clone().expect("setup token printed");
    let admin = expect(
        http.post(format!("{base}/admin/v1/setup"))
            .json(&json!({"token": token, "email": "crash@x.test", "password": PASSWORD})),
        201,
    )
    .await["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    expect(
        http.post(format!("{base}/admin/v1/tenants"))
            .bearer_auth(&admin)
            .json(&json!({"slug": TENANT, "name": "Crash test"})),
        201,
    )
    .await;
    let key = expect(
        http.post(format!("{base}/admin/v1/tenants/{TENANT}/keys"))
            .bearer_auth(&admin)
            .json(&json!({"name": "load"})),
        201,
    )
    .await["key"]
        .as_str()
        .expect("key")
        .to_string();
    expect(
        http.post(format!("{base}/admin/v1/tenants/{TENANT}/deploys"))
            .bearer_auth(&admin)
            .json(&json!({"files": {"plinth.toml": MANIFEST, "functions/mark.js": MARK}})),
        201,
    )
    .await;
    Creds { key, admin }
}

/// Sends a request that must answer `status`; returns its JSON body.
pub async fn expect(req: reqwest::RequestBuilder, status: u16) -> Value {
    let r = req.send().await.expect("request");
    let got = r.status().as_u16();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "unexpected answer: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}
