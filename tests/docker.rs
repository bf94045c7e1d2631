//! docker/ without a container engine: the compose file parses and wires what
//! docs/deploy.md says, the Dockerfile's ENTRYPOINT/CMD/HEALTHCHECK are real `plinth`
//! subcommands, and every `PLINTH_*` setting the files use is one the binary reads from
//! its environment, and is documented in docs/deploy.md (which names no other).
//! (The proxy's config is exercised for real by tests/cluster.rs.)

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

fn repo(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn plinth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run plinth")
}

/// Every `PLINTH_*` name in a text.
fn plinth_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("PLINTH_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches('_');
        if name != "PLINTH" {
            names.insert(name.to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The settings the binary reads from its environment, from its own help texts
/// (clap prints `[env: NAME=]` for each), plus the log filter read by tracing.
fn settings() -> BTreeSet<String> {
    let mut all = BTreeSet::from(["PLINTH_LOG".to_string()]);
    for cmd in [
        &["serve", "--help"][..],
        &["deploy", "--help"],
        &["healthcheck", "--help"],
        &["backup", "--help"],
        &["restore", "--help"],
    ] {
        let out = plinth(cmd);
        assert!(out.status.success(), "plinth {cmd:?} failed");
        let help = String::from_utf8_lossy(&out.stdout);
        for part in help.split("[env: ").skip(1) {
            let name = part.split(['=', ']']).next().unwrap_or_default();
            all.insert(name.to_string());
        }
    }
    assert!(all.contains("PLINTH_DATABASE_URL") && all.contains("PLINTH_LISTEN"));
    all
}

/// docker/compose.yaml as JSON, through Python's YAML parser (python3-yaml; installed by
/// .ci/run). None (skipped) without it outside CI.
fn compose() -> Option<Value> {
    let script = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)";
    let mut child = match Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return skip(&format!("python3: {e}")),
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(repo("docker/compose.yaml").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named 'yaml'") {
        return skip("python3-yaml is not installed");
    }
    assert!(
        out.status.success(),
        "docker/compose.yaml does not parse: {err}"
    );
    Some(serde_json::from_slice(&out.stdout).expect("JSON from python"))
}

fn skip(why: &str) -> Option<Value> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but the compose file cannot be checked: {why}");
    }
    eprintln!("SKIPPED (compose check): {why}");
    None
}

fn env_of(service: &Value) -> BTreeSet<String> {
    service["environment"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn compose_file_wires_postgres_two_nodes_the_proxy_and_the_demo() {
    let Some(c) = compose() else {
        return;
    };
    let services = c["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["postgres", "plinth-1", "plinth-2", "proxy", "demo"])
    );

    let pg = &services["postgres"];
    assert!(pg["image"].as_str().unwrap().starts_with("postgres:"));
    assert!(pg["healthcheck"]["test"].to_string().contains("pg_isready"));
    let volume = pg["volumes"][0].as_str().expect("postgres volume");
    assert!(volume.ends_with(":/var/lib/postgresql/data"));
    assert!(
        c["volumes"]
            .get(volume.split(':').next().unwrap())
            .is_some()
    );

    let known = settings();
    for name in ["plinth-1", "plinth-2", "demo"] {
        let s = &services[name];
        assert_eq!(s["build"]["dockerfile"], "docker/Dockerfile", "{name}");
        assert_eq!(s["build"]["context"], "..", "{name}");
        assert_eq!(
            s["depends_on"]["postgres"]["condition"], "service_healthy",
            "{name} waits for PostgreSQL"
        );
        let env = env_of(s);
        for must in [
            "PLINTH_DATABASE_URL",
            "PLINTH_SECRETS_KEY",
            "PLINTH_JWT_SECRET",
        ] {
            assert!(env.contains(must), "{name} lacks {must}");
        }
        for var in &env {
            assert!(
                known.contains(var),
                "{name} sets {var}, which plinth does not read"
            );
        }
        assert!(
            s["environment"]["PLINTH_DATABASE_URL"]
                .as_str()
                .unwrap()
                .contains("@postgres:5432/"),
            "{name} reaches the postgres service"
        );
    }
    assert_eq!(services["demo"]["profiles"], serde_json::json!(["demo"]));
    assert_eq!(services["demo"]["environment"]["PLINTH_DEMO"], "true");
    assert!(services["plinth-1"].get("profiles").is_none());

    let proxy = &services["proxy"];
    assert!(proxy["image"].as_str().unwrap().starts_with("haproxy:"));
    assert!(
        proxy["volumes"][0]
            .as_str()
            .unwrap()
            .starts_with("./haproxy.cfg:"),
        "the proxy runs docker/haproxy.cfg"
    );
    // The variables the proxy config needs are set, and point at the nodes.
    let cfg_vars = plinth_names(&repo("docker/haproxy.cfg"));
    let proxy_env = env_of(proxy);
    for required in ["PLINTH_PROXY_BIND", "PLINTH_NODE1", "PLINTH_NODE2"] {
        assert!(cfg_vars.contains(required), "haproxy.cfg uses {required}");
        assert!(
            proxy_env.contains(required),
            "the proxy service sets {required}"
        );
    }
    assert_eq!(proxy["environment"]["PLINTH_NODE1"], "plinth-1:8080");
    assert_eq!(proxy["environment"]["PLINTH_NODE2"], "plinth-2:8080");
    for node in ["plinth-1", "plinth-2"] {
        assert_eq!(proxy["depends_on"][node]["condition"], "service_healthy");
    }
}

/// The instruction lines of the Dockerfile's last stage, by keyword.
fn runtime_stage() -> Vec<(String, String)> {
    let text = repo("docker/Dockerfile").replace("\\\n", " ");
    let lines: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_uppercase(), v.trim().to_string())
        })
        .collect();
    let last_from = lines.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    lines[last_from..].to_vec()
}

fn instruction(stage: &[(String, String)], key: &str) -> String {
    stage
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("the runtime stage has no {key}"))
}

fn json_words(v: &str) -> Vec<String> {
    serde_json::from_str(v).unwrap_or_else(|e| panic!("not an exec-form JSON array ({e}): {v}"))
}

#[test]
fn dockerfile_runs_real_subcommands_as_a_non_root_user() {
    let stage = runtime_stage();
    let entry = json_words(&instruction(&stage, "ENTRYPOINT"));
    let cmd = json_words(&instruction(&stage, "CMD"));
    assert_eq!(entry, ["plinth"]);
    assert_eq!(cmd, ["serve"]);
    let health = instruction(&stage, "HEALTHCHECK");
    let probe = json_words(health.split_once("CMD ").expect("HEALTHCHECK CMD").1);
    assert_eq!(probe[..2], ["plinth", "healthcheck"]);
    // Each command line parses (clap rejects an unknown subcommand or flag even
    // with --help).
    for args in [cmd.clone(), probe[1..].to_vec()] {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.push("--help");
        let out = plinth(&args);
        assert!(
            out.status.success(),
            "plinth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let user = instruction(&stage, "USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    assert_eq!(instruction(&stage, "VOLUME"), "[\"/data\"]");
    let env = instruction(&stage, "ENV");
    assert!(env.contains("PLINTH_DATA_DIR=/data"), "{env}");
    assert!(env.contains("PLINTH_LISTEN=0.0.0.0:8080"), "{env}");
    let known = settings();
    for var in plinth_names(&env) {
        assert!(
            known.contains(&var),
            "the Dockerfile sets {var}, which plinth does not read"
        );
    }
}

#[test]
fn deploy_doc_lists_every_setting_and_no_other() {
    let doc = repo("docs/deploy.md");
    let documented = plinth_names(&doc);
    let known = settings();
    let proxy: BTreeSet<String> = plinth_names(&repo("docker/haproxy.cfg"));
    for s in &known {
        assert!(
            documented.contains(s),
            "docs/deploy.md does not document {s}"
        );
    }
    for d in &documented {
        assert!(
            known.contains(d) || proxy.contains(d),
            "docs/deploy.md documents {d}, which neither plinth nor the proxy config reads"
        );
    }
}

/// `plinth serve` really reads each typed setting from its environment: an invalid
/// value there stops it before it serves, with an error naming the value or the setting.
/// (Free-form strings accept anything; PLINTH_TRUST_FORWARDED_FOR and PLINTH_DEMO are
/// flags, for which clap reads any value but a falsey one as true.)
#[test]
fn serve_reads_each_typed_setting_from_its_environment() {
    let untyped = [
        "PLINTH_DATABASE_URL",
        "PLINTH_DATA_DIR",
        "PLINTH_PUBLIC_URL",
        "PLINTH_SMTP_FROM",
        "PLINTH_DEMO_TWILIO_TOKEN",
        "PLINTH_LOG",
        "PLINTH_TRUST_FORWARDED_FOR",
        "PLINTH_DEMO",
        // Paths: any text names one (a missing pg_dump is found at the first backup).
        "PLINTH_BACKUP_DIR",
        "PLINTH_PG_DUMP",
        "PLINTH_PG_RESTORE",
        // Read with PLINTH_ACME_DOMAIN only (a path, an address; the CA root file is
        // read, and refused with its name, at the start of an ACME server).
        "PLINTH_ACME_DIR",
        "PLINTH_ACME_EMAIL",
        "PLINTH_ACME_CA_ROOT",
        // Only the client commands (remote administration, deploy) read these; they
        // show in `serve --help` because they are global options.
        "PLINTH_SERVER",
        "PLINTH_ADMIN_TOKEN",
        "PLINTH_API_KEY",
        "PLINTH_CA_CERT",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for var in settings() {
        if untyped.contains(&var.as_str()) {
            continue;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .arg("serve")
            .env_clear()
            .env("PLINTH_DATA_DIR", dir.path())
            .env("PLINTH_LISTEN", "127.0.0.1:0")
            .env(&var, "not-valid!")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plinth serve");
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if started.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                panic!("plinth serve started with {var}=not-valid! (the variable is not read)");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("stderr");
        assert!(!status.success(), "{var}=not-valid! was accepted");
        assert!(
            err.contains("not-valid!") || err.contains(&var),
            "{var}: the error does not name the setting or value: {err}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} settings checked");
}
