//! The CLI, run as a real binary against the same storage as a test server.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    admin_create_and_migrate,
    tenant_commands,
    key_commands,
    secret_commands,
    user_and_usage_commands,
    serve_prints_a_setup_token
);

pub fn plinth(storage: &Storage, args: &[&str], stdin: Option<&str>) -> Output {
    plinth_env(storage, args, stdin, &[])
}

/// Like [`plinth`], with extra environment variables.
pub fn plinth_env(
    storage: &Storage,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let mut child = plinth_command(storage, args, env)
        .spawn()
        .expect("spawn plinth");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("plinth output")
}

/// The `plinth` command on `storage`, with extra environment variables and its standard
/// streams piped; not started.
pub fn plinth_command(storage: &Storage, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plinth"));
    cmd.args(storage.cli_args())
        .args(args)
        .env_remove("PLINTH_DATABASE_URL")
        .env_remove("PLINTH_DATA_DIR")
        .env_remove("PLINTH_SECRETS_KEY")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

#[track_caller]
fn fails(o: Output, needle: &str) {
    assert!(!o.status.success(), "expected failure, got: {}", stdout(&o));
    assert!(
        stderr(&o).contains(needle),
        "stderr lacks {needle:?}: {}",
        stderr(&o)
    );
}

async fn admin_create_and_migrate(b: Backend) {
    let storage = Storage::fresh(b).await;
    assert!(ok(plinth(&storage, &["migrate"], None)).contains("up to date"));
    fails(
        plinth(
            &storage,
            &[
                "admin",
                "create",
                "--email",
                "ops@x.test",
                "--password-stdin",
            ],
            Some("short\n"),
        ),
        "password",
    );
    // The password policy holds here too (review finding Q3).
    for weak in ["12345678\n", "ops@x.test\n"] {
        fails(
            plinth(
                &storage,
                &[
                    "admin",
                    "create",
                    "--email",
                    "ops@x.test",
                    "--password-stdin",
                ],
                Some(weak),
            ),
            "password: ",
        );
    }
    fails(
        plinth(
            &storage,
            &["admin", "create", "--email", "nope", "--password-stdin"],
            Some("long-enough-pw\n"),
        ),
        "email",
    );
    let out = ok(plinth(
        &storage,
        &[
            "admin",
            "create",
            "--email",
            "Ops@X.test",
            "--password-stdin",
        ],
        Some("long-enough-pw\n"),
    ));
    assert!(out.contains("ops@x.test"), "{out}");
    fails(
        plinth(
            &storage,
            &[
                "admin",
                "create",
                "--email",
                "ops@x.test",
                "--password-stdin",
            ],
            Some("long-enough-pw\n"),
        ),
        "exists",
    );

    // The server sees the admin: no setup token, and the admin can log in.
    let app = TestApp::start_on(b, storage, |_| {}).await;
    assert!(app.setup_token().is_none());
    let r = app
        .post(
            "/admin/v1/auth/login",
            None,
            json!({"email": "ops@x.test", "password": "long-enough-pw"}),
        )
        .await
        .ok(200);
    let token = r["access_token"].as_str().unwrap();
    let audit = app.get("/admin/v1/audit", Some(token)).await.ok(200);
    assert_eq!(audit["items"][0]["action"], "admin.create");
    assert_eq!(audit["items"][0]["actor"], "cli");
    // An admin made on the server's own disk is an owner.
    let me = app.get("/admin/v1/auth/session", Some(token)).await.ok(200);
    assert_eq!(me["admin"]["role"], "owner");
}

async fn tenant_commands(b: Backend) {
    let storage = Storage::fresh(b).await;
    ok(plinth(
        &storage,
        &["tenant", "create", "acme", "--name", "Acme Inc"],
        None,
    ));
    ok(plinth(&storage, &["tenant", "create", "beta"], None));
    fails(
        plinth(&storage, &["tenant", "create", "Bad Slug"], None),
        "slug",
    );
    fails(
        plinth(&storage, &["tenant", "create", "admin"], None),
        "reserved",
    );
    fails(
        plinth(&storage, &["tenant", "create", "acme"], None),
        "exists",
    );

    let table = ok(plinth(&storage, &["tenant", "list"], None));
    assert!(
        table.contains("acme") && table.contains("Acme Inc") && table.contains("beta"),
        "{table}"
    );
    let list: Value =
        serde_json::from_str(&ok(plinth(&storage, &["tenant", "list", "--json"], None))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);

    ok(plinth(&storage, &["tenant", "suspend", "acme"], None));
    let list: Value =
        serde_json::from_str(&ok(plinth(&storage, &["tenant", "list", "--json"], None))).unwrap();
    assert_eq!(list[0]["slug"], "acme");
    assert_eq!(list[0]["suspended"], true);
    fails(
        plinth(&storage, &["tenant", "suspend", "nope"], None),
        "no tenant",
    );

    // A running server honours what the CLI did.
    let app = TestApp::start_on(b, storage, |_| {}).await;
    app.post(
        "/v1/t/acme/auth/signup",
        None,
        json!({"email": "a@b.co", "password": PASSWORD}),
    )
    .await
    .problem(403, "tenant_suspended");
    app.signup("beta", "a@b.co").await;
    let storage = app.stop().await;

    ok(plinth(&storage, &["tenant", "resume", "acme"], None));
    fails(
        plinth(&storage, &["tenant", "delete", "beta"], None),
        "--yes",
    );
    ok(plinth(
        &storage,
        &["tenant", "delete", "beta", "--yes"],
        None,
    ));
    let list: Value =
        serde_json::from_str(&ok(plinth(&storage, &["tenant", "list", "--json"], None))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["suspended"], false);
    if let Some(dir) = storage.sqlite_dir() {
        assert!(
            !dir.join("tenants/tenant-2.db").exists(),
            "beta's file is gone"
        );
        assert!(dir.join("tenants/tenant-1.db").exists());
    }
}

async fn key_commands(b: Backend) {
    let storage = Storage::fresh(b).await;
    ok(plinth(&storage, &["tenant", "create", "acme"], None));
    let key = ok(plinth(
        &storage,
        &["key", "create", "--tenant", "acme", "--name", "ci"],
        None,
    ));
    let key = key.trim().to_string();
    assert!(key.starts_with("plk_"), "{key}");
    fails(
        plinth(
            &storage,
            &["key", "create", "--tenant", "nope", "--name", "ci"],
            None,
        ),
        "no tenant",
    );

    let table = ok(plinth(&storage, &["key", "list", "--tenant", "acme"], None));
    assert!(
        table.contains(&key[..14]) && table.contains("active") && !table.contains(&key),
        "{table}"
    );
    let id = table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    let app = TestApp::start_on(b, storage, |_| {}).await;
    app.get("/v1/t/acme/auth/me", Some(&key))
        .await
        .problem(401, "auth_required");
    let storage = app.stop().await;

    ok(plinth(
        &storage,
        &["key", "revoke", "--tenant", "acme", &id],
        None,
    ));
    fails(
        plinth(
            &storage,
            &["key", "revoke", "--tenant", "acme", "nope"],
            None,
        ),
        "no such",
    );
    assert!(ok(plinth(&storage, &["key", "list", "--tenant", "acme"], None)).contains("revoked"));
    let app = TestApp::start_on(b, storage, |_| {}).await;
    app.get("/v1/t/acme/auth/me", Some(&key))
        .await
        .problem(401, "invalid_token");
}

async fn secret_commands(b: Backend) {
    let storage = Storage::fresh(b).await;
    ok(plinth(&storage, &["tenant", "create", "acme"], None));
    let set = |name: &str, tenant: &str, value: &str| {
        plinth(
            &storage,
            &["secret", "set", name, "--tenant", tenant],
            Some(value),
        )
    };
    let out = ok(set("API_KEY", "acme", "s3cr3t-cli-value\n"));
    assert!(out.contains("API_KEY") && !out.contains("s3cr3t"), "{out}");
    // Only one trailing newline is dropped; inner whitespace is kept.
    ok(set("MULTI", "acme", " two\nlines \n\n"));
    fails(set("lower", "acme", "v"), "name");
    fails(set("BIG", "acme", &"x".repeat(8193)), "8192 bytes");
    fails(set("API_KEY", "nope", "v"), "no tenant");
    // Nothing on stdin: the empty value.
    ok(plinth(
        &storage,
        &["secret", "set", "EMPTY", "--tenant", "acme"],
        None,
    ));

    let table = ok(plinth(
        &storage,
        &["secret", "list", "--tenant", "acme"],
        None,
    ));
    assert!(
        table.contains("API_KEY") && table.contains("MULTI") && !table.contains("s3cr3t"),
        "{table}"
    );
    assert!(table.contains("EMPTY") && !table.contains("BIG"), "{table}");
    fails(
        plinth(&storage, &["secret", "list", "--tenant", "nope"], None),
        "no tenant",
    );

    // The server decrypts what the CLI sealed (the key is stored in the database).
    let app = TestApp::start_on(b, storage, |_| {}).await;
    let state = app.running.as_ref().unwrap().state.clone();
    let scope = crate::documents::scope_of(&app, "acme").await;
    let env = state.secrets.env(&scope).await.unwrap();
    assert_eq!(env["API_KEY"], "s3cr3t-cli-value");
    assert_eq!(env["MULTI"], " two\nlines \n");
    assert_eq!(env["EMPTY"], "");
    assert_eq!(env.len(), 3);
    // A write from another process (like another node) shows within the cache TTL.
    ok(plinth(
        &app.storage,
        &["secret", "set", "LATER", "--tenant", "acme"],
        Some("later-value"),
    ));
    eventually(Duration::from_secs(10), "the CLI's secret", || {
        let state = state.clone();
        let scope = scope.clone();
        async move {
            let env = state.secrets.env(&scope).await.unwrap();
            (env.get("LATER").map(String::as_str) == Some("later-value")).then_some(())
        }
    })
    .await;
    let storage = app.stop().await;

    ok(plinth(
        &storage,
        &["secret", "delete", "API_KEY", "--tenant", "acme"],
        None,
    ));
    fails(
        plinth(
            &storage,
            &["secret", "delete", "API_KEY", "--tenant", "acme"],
            None,
        ),
        "no such secret",
    );
    let table = ok(plinth(
        &storage,
        &["secret", "list", "--tenant", "acme"],
        None,
    ));
    assert!(
        !table.contains("API_KEY") && table.contains("LATER"),
        "{table}"
    );

    // A configured key must be 32 bytes of base64.
    fails(
        plinth_env(
            &storage,
            &["secret", "list", "--tenant", "acme"],
            None,
            &[("PLINTH_SECRETS_KEY", "c2hvcnQ=")],
        ),
        "PLINTH_SECRETS_KEY must be 32 bytes",
    );
    fails(
        plinth_env(
            &storage,
            &["secret", "list", "--tenant", "acme"],
            None,
            &[("PLINTH_SECRETS_KEY", "not base64!")],
        ),
        "not base64",
    );

    // Audited as the CLI, by name.
    let app = TestApp::start_on(b, storage, |_| {}).await;
    let token = app
        .post(
            "/admin/v1/setup",
            None,
            json!({"token": app.setup_token().unwrap(), "email": "a@x.test", "password": PASSWORD}),
        )
        .await
        .ok(201)["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let audit = app
        .get("/admin/v1/audit?tenant=acme", Some(&token))
        .await
        .ok(200);
    assert_eq!(audit["items"][0]["action"], "secret.delete");
    assert_eq!(audit["items"][0]["actor"], "cli");
    assert_eq!(audit["items"][0]["target"], "API_KEY");
    assert!(!audit.to_string().contains("s3cr3t"));
}

async fn user_and_usage_commands(b: Backend) {
    let storage = Storage::fresh(b).await;
    ok(plinth(&storage, &["tenant", "create", "acme"], None));
    let app = TestApp::start_on(b, storage, |_| {}).await;
    let alice = app.signup("acme", "alice@acme.test").await;
    app.signup("acme", "bob@acme.test").await;
    let storage = app.stop().await;

    let table = ok(plinth(
        &storage,
        &["users", "list", "--tenant", "acme", "--search", "alice"],
        None,
    ));
    assert!(
        table.starts_with("ID") && table.contains(&alice.user_id) && !table.contains("bob@"),
        "{table}"
    );
    let uid = alice.user_id.as_str();
    ok(plinth(
        &storage,
        &["users", "disable", uid, "--tenant", "acme"],
        None,
    ));
    let shown = ok(plinth(
        &storage,
        &["users", "show", uid, "--tenant", "acme"],
        None,
    ));
    assert!(shown.contains("disabled  true"), "{shown}");
    ok(plinth(
        &storage,
        &["users", "enable", uid, "--tenant", "acme"],
        None,
    ));
    fails(
        plinth(
            &storage,
            &["users", "delete", uid, "--tenant", "acme"],
            None,
        ),
        "--yes",
    );
    ok(plinth(
        &storage,
        &["users", "delete", uid, "--tenant", "acme", "--yes"],
        None,
    ));
    fails(
        plinth(&storage, &["users", "show", uid, "--tenant", "acme"], None),
        "no such user",
    );
    let usage = ok(plinth(
        &storage,
        &["usage", "--tenant", "acme", "--days", "1"],
        None,
    ));
    assert!(
        usage.contains("REQUESTS") && usage.lines().last().unwrap().starts_with("total"),
        "{usage}"
    );
    fails(
        plinth(
            &storage,
            &["usage", "--tenant", "acme", "--days", "0"],
            None,
        ),
        "between 1 and 366",
    );
    let hourly = ok(plinth(
        &storage,
        &["usage", "--tenant", "acme", "--hours", "24"],
        None,
    ));
    assert!(
        hourly.starts_with("HOUR (UTC)")
            && hourly.contains("ERRORS")
            && hourly.contains("WS PEAK")
            && hourly.lines().last().unwrap().starts_with("total"),
        "{hourly}"
    );
    fails(
        plinth(
            &storage,
            &["usage", "--tenant", "acme", "--hours", "337"],
            None,
        ),
        "between 1 and 336",
    );
    fails(
        plinth(
            &storage,
            &["usage", "--tenant", "acme", "--days", "2", "--hours", "2"],
            None,
        ),
        "cannot be used with",
    );
    // Without a server, the server-only commands say what they need.
    fails(
        plinth(&storage, &["admins", "list"], None),
        "needs a server",
    );

    // Users made on the command line: the password from stdin, checked as sign-up does.
    let made = ok(plinth(
        &storage,
        &[
            "users",
            "create",
            "Carol@Acme.test",
            "--tenant",
            "acme",
            "--verified",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    ));
    assert!(
        made.starts_with("user created: carol@acme.test ("),
        "{made}"
    );
    ok(plinth(
        &storage,
        &["users", "create", "dave@acme.test", "--tenant", "acme"],
        None,
    ));
    fails(
        plinth(
            &storage,
            &["users", "create", "DAVE@acme.test", "--tenant", "acme"],
            None,
        ),
        "already registered",
    );
    fails(
        plinth(
            &storage,
            &[
                "users",
                "create",
                "eve@acme.test",
                "--tenant",
                "acme",
                "--password-stdin",
            ],
            Some("12345678\n"),
        ),
        "password",
    );
    fails(
        plinth(
            &storage,
            &["users", "create", "not-an-email", "--tenant", "acme"],
            None,
        ),
        "email",
    );
    fails(
        plinth(
            &storage,
            &["users", "create", "x@acme.test", "--tenant", "nope"],
            None,
        ),
        "no tenant",
    );
    // Carol signs in with the password piped in; Dave has none.
    let app = TestApp::start_on(b, storage, |_| {}).await;
    let carol = Session::from_json(&app.login("acme", "carol@acme.test", PASSWORD).await.ok(200));
    let me = app
        .get("/v1/t/acme/auth/me", Some(&carol.access))
        .await
        .ok(200);
    assert_eq!(me["email_verified"], true, "{me}");
    app.login("acme", "dave@acme.test", PASSWORD)
        .await
        .problem(401, "invalid_credentials");
}

/// Starts `plinth serve ARGS` on the storage as a child process; its standard output
/// arrives line by line on the receiver.
pub fn serve_process(
    storage: &Storage,
    args: &[&str],
    stderr: Stdio,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(storage.cli_args())
        .arg("serve")
        .args(args)
        .env_remove("PLINTH_DATABASE_URL")
        .env_remove("PLINTH_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

async fn serve_prints_a_setup_token(b: Backend) {
    let storage = Storage::fresh(b).await;
    let (mut child, rx) = serve_process(
        &storage,
        &["--listen", "127.0.0.1:0", "--log-format", "json"],
        Stdio::piped(),
    );
    let mut addr = None;
    let mut token = None;
    while token.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve output");
        if let Some(rest) = line.strip_prefix("plinth listening on http://") {
            addr = Some(rest.split_whitespace().next().unwrap().to_string());
        }
        if let Some(i) = line.find("\"token\":\"") {
            let rest = &line[i + 9..];
            token = Some(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    let base = format!("http://{}", addr.expect("address line"));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/admin/v1/setup"))
        .json(&json!({"token": token.unwrap(), "email": "first@x.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // JSON logs on stderr.
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or("");
    let parsed: Value = serde_json::from_str(first)
        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {first}"));
    assert!(parsed["fields"]["message"].is_string(), "{parsed}");
}

#[test]
fn voting_rules_tests_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(["rules", "test", &format!("{root}/rules/voting.test.toml")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn rules_test_command() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(["rules", "test", &format!("{root}/rules/example.test.toml")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 0 failed"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.toml"),
        "[notes]\nread = \"auth != null && doc.owner == auth.uid\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.toml"),
        "rules = \"r.toml\"\n\n[[case]]\nname = \"stranger reads\"\ncollection = \"notes\"\noperation = \"read\"\nauth = { uid = \"bob\" }\ndoc = { owner = \"alice\" }\nexpect = \"allow\"\n\n[[case]]\nname = \"owner reads\"\ncollection = \"notes\"\noperation = \"read\"\nauth = { uid = \"alice\" }\ndoc = { owner = \"alice\" }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(["rules", "test", dir.path().join("t.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  stranger reads") && text.contains("ok    owner reads"),
        "{text}"
    );
}

/// `plinth healthcheck` as a container runs it: a separate process, the listen address
/// from `PLINTH_LISTEN`, the exit code as the verdict.
fn healthcheck(listen: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plinth"));
    cmd.arg("healthcheck")
        .args(extra)
        .env("PLINTH_LISTEN", listen)
        .stdin(Stdio::null());
    cmd.output().expect("run plinth healthcheck")
}

/// A one-connection-at-a-time server that answers every request with `reply` (None:
/// reads the request and never answers).
fn fake_http(reply: Option<&'static str>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            match reply {
                Some(r) => {
                    let _ = conn.write_all(r.as_bytes());
                }
                None => held.push(conn),
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exit_code_follows_healthz() {
    let app = TestApp::start(Backend::Sqlite).await;
    let port = app.base.rsplit(':').next().unwrap().to_string();
    let listen = format!("127.0.0.1:{port}");
    let wildcard = format!("0.0.0.0:{port}");
    let (up, via_wildcard) = tokio::task::spawn_blocking(move || {
        (healthcheck(&listen, &[]), healthcheck(&wildcard, &[]))
    })
    .await
    .unwrap();
    assert!(ok(up).contains("/healthz"));
    ok(via_wildcard);
    app.stop().await;

    // Nothing listens on the port any more.
    let closed = format!("127.0.0.1:{port}");
    let unhealthy = fake_http(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    ));
    let not_http = fake_http(Some("SSH-2.0-OpenSSH_9.2\r\n"));
    let silent = fake_http(None);
    tokio::task::spawn_blocking(move || {
        fails(healthcheck(&closed, &[]), "cannot connect");
        fails(
            healthcheck(&unhealthy.to_string(), &[]),
            "answered 503, not 200",
        );
        fails(
            healthcheck(&not_http.to_string(), &[]),
            "did not answer with HTTP",
        );
        let started = std::time::Instant::now();
        fails(
            healthcheck(&silent.to_string(), &["--timeout", "1"]),
            "did not answer within",
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        fails(healthcheck("not-an-address", &[]), "invalid");
    })
    .await
    .unwrap();
}

/// An operator's stdout may go away (a supervisor that drops it, `plinth serve | head`);
/// the server must go on serving rather than die on its first printed line.
#[tokio::test]
async fn serve_survives_a_closed_stdout() {
    let storage = Storage::fresh(Backend::Sqlite).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(storage.cli_args())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("PLINTH_DATABASE_URL")
        .env_remove("PLINTH_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    // Close the reading end before the server prints anything.
    drop(child.stdout.take());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let mut answered = false;
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            answered = r.status() == 200;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered, "the server did not answer (exit: {exited:?})");
    assert!(exited.is_none(), "the server exited: {exited:?}");
}

/// A CLI command against a PostgreSQL URL where no database answers (this listener
/// closes every connection at once) fails with each cause said once: the store's error
/// used to print its sqlx cause in its message and again as its source, and sqlx's own
/// source a third time.
#[test]
fn an_unreachable_database_is_reported_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(100).map_while(Result::ok) {
            drop(conn);
        }
    });
    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args([
            "--database-url",
            &format!("postgres://plinth@{addr}/nowhere"),
            "tenant",
            "list",
        ])
        .env_remove("PLINTH_DATABASE_URL")
        .env_remove("PLINTH_DATA_DIR")
        .env_remove("PLINTH_SERVER")
        .stdin(Stdio::null())
        .output()
        .expect("run plinth");
    assert!(!out.status.success(), "stdout: {}", stdout(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains("database error"), "{line}");
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} is said twice: {line}"
        );
    }
    // No cause is repeated inside a longer one either ("X: Y" then "Y").
    for i in 1..parts.len() {
        let tail = parts[i..].join(": ");
        assert_eq!(
            line.matches(tail.as_str()).count(),
            1,
            "{tail:?} is said twice: {line}"
        );
    }
}
