//! The CLI from another machine's point of view: a separate process with its own empty
//! HOME and working directory (no data dir), signed in with `plinth login`, changing a
//! running server only through its admin API. Every effect is checked through the API.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    remote_commands_change_the_server,
    remote_refusals_are_clear,
    remote_tenant_export_and_import
);

/// A machine that has never seen the server's data: a HOME and a working directory.
pub(crate) struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    pub(crate) fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Machine { dir }
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub(crate) fn credentials(&self) -> PathBuf {
        self.home().join(".config/plinth/credentials.toml")
    }

    pub(crate) fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_env(args, stdin, &[])
    }

    pub(crate) fn run_env(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plinth"));
        cmd.args(args)
            .current_dir(self.dir.path().join("work"))
            .env("HOME", self.home())
            .env_remove("XDG_CONFIG_HOME");
        for v in [
            "PLINTH_DATABASE_URL",
            "PLINTH_DATA_DIR",
            "PLINTH_SECRETS_KEY",
            "PLINTH_SERVER",
            "PLINTH_ADMIN_TOKEN",
            "PLINTH_API_KEY",
            "PLINTH_CA_CERT",
        ] {
            cmd.env_remove(v);
        }
        cmd.envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn plinth");
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

    /// Nothing was made locally: the commands went to the server.
    fn assert_no_local_data(&self) {
        assert!(
            !self.dir.path().join("work/plinth-data").exists(),
            "a local data dir was created: a command ran locally"
        );
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub(crate) fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[track_caller]
pub(crate) fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        out(&o),
        err(&o)
    );
    out(&o)
}

#[track_caller]
pub(crate) fn fails(o: Output, needles: &[&str]) -> String {
    assert!(!o.status.success(), "expected failure, got: {}", out(&o));
    let e = err(&o);
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
    e
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

async fn remote_commands_change_the_server(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let base = app.base.clone();
    let m = Machine::new();

    // Sign in with email and password; the credentials file is private.
    let e = err(&m.run(
        &[
            "login",
            "--server",
            &format!("{base}/"),
            "--email",
            "root@plinth.test",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    ));
    assert!(
        e.contains(&format!("logged in to {base} as root@plinth.test (owner)")),
        "{e}"
    );
    let text = std::fs::read_to_string(m.credentials()).unwrap();
    assert!(
        text.contains(&base) && text.contains("expires_at"),
        "{text}"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&m.credentials()), 0o600);
        assert_eq!(mode(m.credentials().parent().unwrap()), 0o700);
    }

    // Tenants.
    ok(m.run(&["tenant", "create", "acme", "--name", "Acme Inc"], None));
    let t = app
        .get("/admin/v1/tenants/acme", Some(&owner))
        .await
        .ok(200);
    assert_eq!(t["name"], "Acme Inc");
    fails(
        m.run(&["tenant", "create", "acme"], None),
        &["tenant_exists", "HTTP 409"],
    );
    let table = ok(m.run(&["tenant", "list"], None));
    assert!(
        table.starts_with("SLUG") && table.contains("Acme Inc"),
        "{table}"
    );
    let list: Value =
        serde_json::from_str(&ok(m.run(&["tenant", "list", "--json"], None))).unwrap();
    assert_eq!(list[0]["slug"], "acme");
    ok(m.run(&["tenant", "suspend", "acme"], None));
    let t = app
        .get("/admin/v1/tenants/acme", Some(&owner))
        .await
        .ok(200);
    assert_eq!(t["suspended"], true);
    ok(m.run(&["tenant", "resume", "acme"], None));
    let t = app
        .get("/admin/v1/tenants/acme", Some(&owner))
        .await
        .ok(200);
    assert_eq!(t["suspended"], false);
    ok(m.run(&["tenant", "create", "gone"], None));
    fails(m.run(&["tenant", "delete", "gone"], None), &["--yes"]);
    ok(m.run(&["tenant", "delete", "gone", "--yes"], None));
    app.get("/admin/v1/tenants/gone", Some(&owner))
        .await
        .problem(404, "tenant_not_found");

    // Service keys: the printed key works until revoked.
    let key = ok(m.run(&["key", "create", "--tenant", "acme", "--name", "ci"], None));
    let key = key.trim().to_string();
    assert!(key.starts_with("plk_"), "{key}");
    let keys = app
        .get("/admin/v1/tenants/acme/keys", Some(&owner))
        .await
        .ok(200);
    let id = keys["items"][0]["id"].as_str().unwrap().to_string();
    let table = ok(m.run(&["key", "list", "--tenant", "acme"], None));
    assert!(table.lines().nth(1).unwrap().starts_with(&id), "{table}");
    ok(m.run(&["key", "revoke", "--tenant", "acme", &id], None));
    let keys = app
        .get("/admin/v1/tenants/acme/keys", Some(&owner))
        .await
        .ok(200);
    assert!(keys["items"][0]["revoked_at"].is_string(), "{keys}");

    // Secrets: the value from stdin, never echoed.
    let o = ok(m.run(
        &["secret", "set", "API_TOKEN", "--tenant", "acme"],
        Some("s3cret-remote\n"),
    ));
    assert!(!o.contains("s3cret"), "{o}");
    let scope = crate::documents::scope_of(&app, "acme").await;
    let state = app.running.as_ref().unwrap().state.clone();
    assert_eq!(
        state.secrets.env(&scope).await.unwrap()["API_TOKEN"],
        "s3cret-remote"
    );
    assert!(ok(m.run(&["secret", "list", "--tenant", "acme"], None)).contains("API_TOKEN"));
    fails(
        m.run(&["secret", "set", "lower", "--tenant", "acme"], Some("v")),
        &["validation_failed", "name"],
    );
    ok(m.run(&["secret", "delete", "API_TOKEN", "--tenant", "acme"], None));
    let s = app
        .get("/admin/v1/tenants/acme/secrets", Some(&owner))
        .await
        .ok(200);
    assert_eq!(s["items"], json!([]));

    // Rules: errors at file:line:column, then a good set installed.
    let files = tempfile::tempdir().unwrap();
    write(
        files.path(),
        "bad.toml",
        "[notes]\nread = \"doc.owner ==\"\n",
    );
    write(
        files.path(),
        "rules.toml",
        "[notes]\nread = \"auth != null\"\ncreate = \"true\"\n",
    );
    let bad = files.path().join("bad.toml").display().to_string();
    fails(
        m.run(&["rules", "deploy", &bad, "--tenant", "acme"], None),
        &[
            "bad.toml:2:",
            "[notes] read",
            "active rule set is unchanged",
        ],
    );
    let good = files.path().join("rules.toml").display().to_string();
    assert!(
        ok(m.run(&["rules", "deploy", &good, "--tenant", "acme"], None))
            .contains("rules version 1 active for acme")
    );
    let r = app
        .get("/admin/v1/tenants/acme/rules", Some(&owner))
        .await
        .ok(200);
    assert_eq!(r["version"], 1);

    // Explain, as a user and anonymously.
    let carol = app.signup("acme", "carol@acme.test").await;
    let doc = app
        .post(
            "/v1/t/acme/collections/notes/docs",
            Some(&carol.access),
            json!({"title": "x"}),
        )
        .await
        .ok(201);
    let doc_id = doc["id"].as_str().unwrap();
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "rules",
            "explain",
            "--tenant",
            "acme",
            "--collection",
            "notes",
            "--id",
            doc_id,
        ];
        args.extend_from_slice(extra);
        m.run(&args, None)
    };
    let text = ok(explain(&["--uid", &carol.user_id]));
    assert!(
        text.contains("rule:       [notes] read = auth != null")
            && text.contains("outcome:    allow"),
        "{text}"
    );
    assert!(ok(explain(&[])).contains("outcome:    deny"));
    fails(explain(&["--op", "create"]), &["validation_failed", "op"]);
    fails(explain(&["--uid", "nobody"]), &["user_not_found"]);

    // Deploys: upload with progress, list, roll back.
    let bundle = files.path().join("bundle");
    write(
        &bundle,
        "plinth.toml",
        "[[http]]\nname = \"hi\"\nfunction = \"hi\"\n",
    );
    write(&bundle, "functions/hi.js", "export default () => 'one'");
    let dir = bundle.display().to_string();
    let o = m.run(&["deploy", &dir, "--tenant", "acme"], None);
    let e = err(&o);
    assert!(ok(o).contains("version 1 active for acme"));
    assert!(e.contains("uploaded") && e.contains(&base), "{e}");
    write(&bundle, "functions/hi.js", "export default () => 'two'");
    ok(m.run(&["deploy", &dir, "--tenant", "acme"], None));
    assert_eq!(app.get("/v1/t/acme/fn/hi", None).await.text, "two");
    let table = ok(m.run(&["deploy", "list", "--tenant", "acme"], None));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    // Aligned columns: the CREATED column starts at the same place on every line.
    let at = |l: &str| l.find("20").unwrap_or(usize::MAX);
    assert_eq!(at(lines[1]), at(lines[2]), "{table}");
    assert_eq!(lines[0].find("CREATED"), Some(at(lines[1])), "{table}");
    ok(m.run(&["deploy", "activate", "1", "--tenant", "acme"], None));
    assert_eq!(app.get("/v1/t/acme/fn/hi", None).await.text, "one");
    fails(
        m.run(&["deploy", "activate", "9", "--tenant", "acme"], None),
        &["no deploy version 9"],
    );

    // Users of the tenant.
    let alice = app.signup("acme", "alice@acme.test").await;
    let table = ok(m.run(&["users", "list", "--tenant", "acme"], None));
    assert!(
        table.contains("alice@acme.test") && table.contains(&alice.user_id),
        "{table}"
    );
    let uid = alice.user_id.as_str();
    let user_path = format!("/admin/v1/tenants/acme/users/{uid}");
    ok(m.run(&["users", "disable", uid, "--tenant", "acme"], None));
    assert_eq!(
        app.get(&user_path, Some(&owner)).await.ok(200)["disabled"],
        true
    );
    ok(m.run(&["users", "enable", uid, "--tenant", "acme"], None));
    assert_eq!(
        app.get(&user_path, Some(&owner)).await.ok(200)["disabled"],
        false
    );
    assert!(
        ok(m.run(&["users", "show", uid, "--tenant", "acme"], None)).contains("alice@acme.test")
    );
    ok(m.run(&["users", "revoke-sessions", uid, "--tenant", "acme"], None));
    ok(m.run(&["users", "delete", uid, "--tenant", "acme", "--yes"], None));
    app.get(&user_path, Some(&owner))
        .await
        .problem(404, "not_found");
    // Made through the admin API: the password from stdin, or none.
    let made = ok(m.run(
        &[
            "users",
            "create",
            "cora@acme.test",
            "--tenant",
            "acme",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    ));
    assert!(made.starts_with("user created: cora@acme.test ("), "{made}");
    app.login("acme", "cora@acme.test", PASSWORD).await.ok(200);
    ok(m.run(
        &[
            "users",
            "create",
            "dave@acme.test",
            "--tenant",
            "acme",
            "--verified",
        ],
        None,
    ));
    let dave = app
        .get("/admin/v1/tenants/acme/users?search=dave", Some(&owner))
        .await
        .ok(200);
    assert_eq!(dave["items"][0]["email_verified"], true, "{dave}");
    app.login("acme", "dave@acme.test", PASSWORD)
        .await
        .problem(401, "invalid_credentials");
    fails(
        m.run(
            &["users", "create", "dave@acme.test", "--tenant", "acme"],
            None,
        ),
        &["email_taken", "HTTP 409"],
    );
    fails(
        m.run(
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
        &["weak_password", "HTTP 400"],
    );

    // Jobs and usage answer with their tables.
    assert!(ok(m.run(&["jobs", "list", "--tenant", "acme"], None)).starts_with("ID"));
    fails(
        m.run(&["jobs", "retry", "nope", "--tenant", "acme"], None),
        &["job_not_found"],
    );
    let usage = ok(m.run(&["usage", "--tenant", "acme", "--days", "2"], None));
    assert!(
        usage.contains("REQUESTS") && usage.contains("total"),
        "{usage}"
    );
    let hourly = ok(m.run(&["usage", "--tenant", "acme", "--hours", "3"], None));
    assert!(
        hourly.starts_with("HOUR (UTC)") && hourly.contains("total"),
        "{hourly}"
    );

    // Admins and API keys.
    ok(m.run(
        &[
            "admins",
            "create",
            "--email",
            "ta@x.test",
            "--role",
            "tenant_admin",
            "--tenant",
            "acme",
            "--password-stdin",
        ],
        Some(PASSWORD),
    ));
    let admins = app.get("/admin/v1/admins", Some(&owner)).await.ok(200);
    let ta = admins["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["email"] == "ta@x.test")
        .unwrap()
        .clone();
    assert_eq!(ta["tenants"], json!(["acme"]));
    let ta_id = ta["id"].as_str().unwrap();
    ok(m.run(&["admins", "update", ta_id, "--role", "viewer"], None));
    let admins = app.get("/admin/v1/admins", Some(&owner)).await.ok(200);
    assert!(admins.to_string().contains("viewer"), "{admins}");
    assert!(ok(m.run(&["admins", "list"], None)).contains("ta@x.test"));
    ok(m.run(&["admins", "remove", ta_id], None));
    let admins = app.get("/admin/v1/admins", Some(&owner)).await.ok(200);
    assert_eq!(admins["items"].as_array().unwrap().len(), 1);
    let out = ok(m.run(
        &[
            "admins",
            "invite",
            "--email",
            "new@x.test",
            "--role",
            "tenant_admin",
            "--tenant",
            "acme",
        ],
        None,
    ));
    assert!(out.contains("invitation sent to new@x.test"), "{out}");
    let pending = app
        .get("/admin/v1/admins/invite", Some(&owner))
        .await
        .ok(200);
    assert_eq!(pending["items"][0]["tenants"], json!(["acme"]), "{pending}");
    let listed = ok(m.run(&["admins", "invitations"], None));
    assert!(
        listed.contains("new@x.test") && listed.contains("EXPIRES"),
        "{listed}"
    );
    let invite_id = pending["items"][0]["id"].as_str().unwrap().to_string();
    let out = ok(m.run(&["admins", "withdraw", &invite_id], None));
    assert!(out.contains("invitation withdrawn"), "{out}");
    let pending = app
        .get("/admin/v1/admins/invite", Some(&owner))
        .await
        .ok(200);
    assert_eq!(pending["items"], json!([]), "{pending}");
    fails(
        m.run(&["admins", "withdraw", &invite_id], None),
        &["not_found"],
    );

    m.assert_no_local_data();

    // Logged out, admin commands are local again: the server-only ones say so.
    ok(m.run(&["logout"], None));
    assert!(
        !std::fs::read_to_string(m.credentials())
            .unwrap()
            .contains(&base)
    );
    fails(m.run(&["admins", "list"], None), &["needs a server"]);
}

async fn remote_refusals_are_clear(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("acme").await;
    let base = app.base.clone();
    let m = Machine::new();

    // CI style: a key in the environment, no login.
    let made = app
        .post(
            "/admin/v1/api-keys",
            Some(&owner),
            json!({"name": "viewer ci", "role": "viewer"}),
        )
        .await
        .ok(201);
    let viewer_key = made["key"].as_str().unwrap().to_string();
    let env = [
        ("PLINTH_SERVER", base.as_str()),
        ("PLINTH_API_KEY", viewer_key.as_str()),
    ];
    assert!(ok(m.run_env(&["tenant", "list"], None, &env)).contains("acme"));
    // A viewer's change is a clear 403.
    fails(
        m.run_env(&["tenant", "create", "beta"], None, &env),
        &[
            "insufficient_role",
            "HTTP 403",
            "your role does not allow this",
        ],
    );
    app.get("/admin/v1/tenants/beta", Some(&owner))
        .await
        .problem(404, "tenant_not_found");

    // The same key stored by login; once revoked it is refused, with the way out.
    let e = err(&m.run(
        &["login", "--server", &base, "--api-key", &viewer_key],
        None,
    ));
    assert!(e.contains("(viewer) with an API key"), "{e}");
    assert!(ok(m.run(&["tenant", "list"], None)).contains("acme"));
    let key_id = made["id"].as_str().unwrap();
    app.delete(&format!("/admin/v1/api-keys/{key_id}"), Some(&owner))
        .await
        .ok(200);
    fails(
        m.run(&["tenant", "list"], None),
        &["invalid_token", "HTTP 401", "plinth login --server"],
    );
    // Logging in with a revoked or made-up key fails at once and stores nothing new.
    fails(
        m.run(
            &[
                "login",
                "--server",
                &base,
                "--api-key",
                "pak_0123456789_nope",
            ],
            None,
        ),
        &["invalid_token"],
    );
    // A wrong password.
    fails(
        m.run(
            &[
                "login",
                "--server",
                &base,
                "--email",
                "root@plinth.test",
                "--password-stdin",
            ],
            Some("wrong-password-here"),
        ),
        &["HTTP 401"],
    );

    // Bad servers.
    fails(
        m.run(&["--server", "not a url", "tenant", "list"], None),
        &["is not a server URL"],
    );
    fails(
        m.run(&["--server", "ftp://x.test", "tenant", "list"], None),
        &["must start with http:// or https://"],
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    fails(
        m.run_env(
            &["--server", &format!("http://{closed}"), "tenant", "list"],
            None,
            &[("PLINTH_API_KEY", "pak_x")],
        ),
        &["cannot reach http://"],
    );
    // A server named without any credential for it.
    let fresh = Machine::new();
    fails(
        fresh.run(&["--server", &base, "tenant", "list"], None),
        &["not logged in to", "plinth login --server"],
    );
    // An expired stored login is not sent; XDG_CONFIG_HOME is where logins live when set.
    let xdg = fresh.dir.path().join("xdg");
    write(
        &xdg,
        "plinth/credentials.toml",
        &format!(
            "current = \"{base}\"\n[servers.\"{base}\"]\nkind = \"token\"\n\
             credential = \"x\"\nwho = \"a\"\nexpires_at = \"2020-01-01T00:00:00Z\"\n"
        ),
    );
    let xdg_s = xdg.display().to_string();
    fails(
        fresh.run_env(&["tenant", "list"], None, &[("XDG_CONFIG_HOME", &xdg_s)]),
        &["expired at 2020-01-01T00:00:00Z", "plinth login --server"],
    );
    // Named local storage wins over the stored login.
    let local = fresh.dir.path().join("local-data").display().to_string();
    ok(fresh.run_env(
        &["--data-dir", &local, "tenant", "list"],
        None,
        &[("XDG_CONFIG_HOME", &xdg_s)],
    ));
    // Server-side-only commands refuse --server instead of running locally.
    fails(
        fresh.run(&["--server", &base, "migrate"], None),
        &["run it there"],
    );
    m.assert_no_local_data();
    fresh.assert_no_local_data();
}

/// `tenant export` and `import` through the admin API: the file comes over HTTP, goes
/// into a new tenant, is refused over an existing one, and replaces it with --replace.
async fn remote_tenant_export_and_import(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let key = crate::documents::tenant_with_key(&mut app, "shop").await;
    for id in ["a", "b"] {
        crate::documents::put(
            &app,
            &key,
            &format!("{}/{id}", crate::documents::docs("shop", "notes")),
            json!({"id": id}),
        )
        .await
        .ok(201);
    }
    app.signup("shop", "ann@example.com").await;
    let base = app.base.clone();
    let m = Machine::new();
    ok(m.run(
        &[
            "login",
            "--server",
            &base,
            "--email",
            "root@plinth.test",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    ));

    let o = m.run(&["tenant", "export", "shop"], None);
    let said = err(&o);
    let file = ok(o);
    assert!(said.contains("exported tenant shop: 2 document"), "{said}");
    assert!(
        file.lines().last().unwrap().contains("\"trailer\""),
        "{file}"
    );
    let o = m.run(&["tenant", "import", "copy"], Some(&file));
    let said = err(&o);
    ok(o);
    assert!(
        said.contains("imported tenant copy (exported from shop"),
        "{said}"
    );
    assert_eq!(app.user_count("copy").await, 1);
    fails(
        m.run(&["tenant", "import", "copy"], Some(&file)),
        &["tenant_exists", "HTTP 409"],
    );
    // A damaged file: the server names the line, and the tenant keeps its data.
    let damaged = file.replacen("\"type\":\"document\"", "\"type\":\"nonsense\"", 1);
    let first_doc = 1 + file
        .lines()
        .position(|l| l.contains("\"type\":\"document\""))
        .unwrap();
    fails(
        m.run(&["tenant", "import", "copy", "--replace"], Some(&damaged)),
        &["invalid_export", "HTTP 400", &format!("line {first_doc} ")],
    );
    // With --replace: the copy gets shop's data again, without what was added since.
    let key2 = app
        .post(
            "/admin/v1/tenants/copy/keys",
            Some(&owner),
            json!({"name": "extra"}),
        )
        .await
        .ok(201);
    ok(m.run(&["tenant", "import", "copy", "--replace"], Some(&file)));
    let keys = app
        .get("/admin/v1/tenants/copy/keys", Some(&owner))
        .await
        .ok(200);
    let ids: Vec<&str> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&key2["id"].as_str().unwrap()), "{keys}");
    assert_eq!(ids.len(), 1, "{keys}");
    m.assert_no_local_data();
}
