//! Changes made on one node (or by the `plinth` CLI, a separate process on the same
//! database) take effect on every other node within one second: rules, deploys,
//! activations, secrets, user disables, session revokes, key revokes, suspensions and
//! deletions. What the CLI changes is announced by the CLI itself, not by a server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Cluster, PASSWORD, TENANT, cli, expect};

/// What a node is asked to see whether a change reached it.
#[derive(Clone, Debug)]
enum Probe {
    /// An anonymous read of notes/n1: its status.
    AnonRead,
    /// GET fn/hello: its body (the deploy version and the GREETING secret).
    Hello,
    /// GET auth/me with a user's access token: its status.
    Me(String),
    /// A read with the service key: its status.
    KeyRead,
    /// A read with another service key: its status.
    KeyReadWith(String),
}

/// A change, made through node A (`nodes[0]`) or the CLI.
#[derive(Clone, Debug)]
enum Change {
    Rules(&'static str),
    Deploy(u32),
    Activate(u32),
    Secret(&'static str),
    SecretByCli(&'static str),
    DisableUser(String),
    RevokeSessions(String),
    Suspend,
    ResumeByCli,
    RulesByCli(&'static str),
    ActivateByCli(u32),
    RevokeKeyByCli(String),
    SuspendByCli,
    DeleteByCli,
}

fn bundle(v: u32) -> Value {
    let js = format!(
        "export default async function (req, ctx) {{\n  \
         return {{ status: 200, body: {{ v: {v}, g: ctx.env.GREETING ?? null }} }};\n}}\n"
    );
    json!({"files": {
        "plinth.toml": "[[http]]\nname = \"hello\"\nfunction = \"hello\"\n",
        "functions/hello.js": js,
    }})
}

async fn probe(c: &Cluster, base: &str, p: &Probe) -> String {
    let url = |path: &str| format!("{base}/v1/t/{TENANT}{path}");
    let req = match p {
        Probe::AnonRead => c.http.get(url("/collections/notes/docs/n1")),
        Probe::Hello => c.http.get(url("/fn/hello")),
        Probe::Me(token) => c.http.get(url("/auth/me")).bearer_auth(token),
        Probe::KeyRead => c
            .http
            .get(url("/collections/notes/docs/n1"))
            .bearer_auth(&c.key),
        Probe::KeyReadWith(key) => c
            .http
            .get(url("/collections/notes/docs/n1"))
            .bearer_auth(key),
    };
    let r = req.send().await.expect("probe request");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    match p {
        Probe::Hello if status == 200 => body,
        _ => status.to_string(),
    }
}

async fn apply(c: &Cluster, change: &Change) {
    let a = c.nodes[0].base();
    let admin = |path: &str| format!("{a}/admin/v1/tenants/{TENANT}{path}");
    match change {
        Change::Rules(src) => {
            expect(
                c.http
                    .put(admin("/rules"))
                    .bearer_auth(&c.admin)
                    .header("content-type", "application/toml")
                    .body(*src),
                200,
            )
            .await;
        }
        Change::Deploy(v) => {
            expect(
                c.http
                    .post(admin("/deploys"))
                    .bearer_auth(&c.admin)
                    .json(&bundle(*v)),
                201,
            )
            .await;
        }
        Change::Activate(v) => {
            expect(
                c.http
                    .post(admin(&format!("/deploys/{v}/activate")))
                    .bearer_auth(&c.admin),
                200,
            )
            .await;
        }
        Change::Secret(value) => {
            expect(
                c.http
                    .put(admin("/secrets/GREETING"))
                    .bearer_auth(&c.admin)
                    .json(&json!({"value": value})),
                200,
            )
            .await;
        }
        Change::SecretByCli(value) => {
            let env = c.env.clone();
            let value = value.to_string();
            tokio::task::spawn_blocking(move || {
                cli(
                    &env,
                    &["secret", "set", "GREETING", "--tenant", TENANT],
                    Some(&value),
                )
            })
            .await
            .unwrap();
        }
        Change::DisableUser(uid) => {
            expect(
                c.http
                    .post(admin(&format!("/users/{uid}/disable")))
                    .bearer_auth(&c.admin),
                200,
            )
            .await;
        }
        Change::RevokeSessions(uid) => {
            expect(
                c.http
                    .post(admin(&format!("/users/{uid}/revoke-sessions")))
                    .bearer_auth(&c.admin),
                200,
            )
            .await;
        }
        Change::Suspend => {
            expect(c.http.post(admin("/suspend")).bearer_auth(&c.admin), 200).await;
        }
        Change::ResumeByCli => by_cli(c, &["tenant", "resume", TENANT]).await,
        Change::SuspendByCli => by_cli(c, &["tenant", "suspend", TENANT]).await,
        Change::DeleteByCli => by_cli(c, &["tenant", "delete", TENANT, "--yes"]).await,
        Change::RulesByCli(src) => {
            let file = tempfile::NamedTempFile::new().expect("rules file");
            std::fs::write(file.path(), src).expect("write rules");
            let path = file.path().to_string_lossy().into_owned();
            by_cli(c, &["rules", "deploy", &path, "--tenant", TENANT]).await;
        }
        Change::ActivateByCli(v) => {
            let v = v.to_string();
            by_cli(c, &["deploy", "activate", &v, "--tenant", TENANT]).await;
        }
        Change::RevokeKeyByCli(id) => {
            by_cli(c, &["key", "revoke", id, "--tenant", TENANT]).await;
        }
    }
}

/// Runs the `plinth` CLI as a process of its own on the cluster's database: no node
/// sees the change being made.
async fn by_cli(c: &Cluster, args: &[&str]) {
    let env = c.env.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&env, &args, None)
    })
    .await
    .unwrap();
}

async fn signup(c: &Cluster, email: &str) -> (String, String) {
    let v = expect(
        c.http
            .post(format!("{}/v1/t/{TENANT}/auth/signup", c.proxy.base))
            .json(&json!({"email": email, "password": PASSWORD})),
        201,
    )
    .await;
    (
        v["user"]["id"].as_str().expect("user.id").to_string(),
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_node_reach_every_node_within_a_second() {
    let Some(c) = Cluster::start(3, &[]).await else {
        return;
    };
    expect(
        c.http
            .put(format!("{}/n1", Cluster::docs(&c.proxy.base, "notes")))
            .bearer_auth(&c.key)
            .json(&json!({"data": {"title": "hello"}})),
        201,
    )
    .await;
    let (ann, ann_token) = signup(&c, "ann@cluster.test").await;
    let (bob, bob_token) = signup(&c, "bob@cluster.test").await;
    apply(&c, &Change::Deploy(1)).await;
    apply(&c, &Change::Secret("first")).await;
    let doomed = expect(
        c.http
            .post(format!("{}/admin/v1/tenants/{TENANT}/keys", c.proxy.base))
            .bearer_auth(&c.admin)
            .json(&json!({"name": "doomed"})),
        201,
    )
    .await;
    let doomed_key = doomed["key"].as_str().expect("key").to_string();
    let doomed_id = doomed["id"].as_str().expect("id").to_string();
    let hello = |v: u32, g: &str| json!({"v": v, "g": g}).to_string();

    let cases: Vec<(&str, Probe, Change, String, String)> = vec![
        (
            "rules install",
            Probe::AnonRead,
            Change::Rules("[notes]\nread = \"true\"\n"),
            "403".into(),
            "200".into(),
        ),
        (
            "function deploy",
            Probe::Hello,
            Change::Deploy(2),
            hello(1, "first"),
            hello(2, "first"),
        ),
        (
            "deploy activation",
            Probe::Hello,
            Change::Activate(1),
            hello(2, "first"),
            hello(1, "first"),
        ),
        (
            "secret set",
            Probe::Hello,
            Change::Secret("second"),
            hello(1, "first"),
            hello(1, "second"),
        ),
        (
            "secret set by the CLI",
            Probe::Hello,
            Change::SecretByCli("third"),
            hello(1, "second"),
            hello(1, "third"),
        ),
        (
            "deploy activation by the CLI",
            Probe::Hello,
            Change::ActivateByCli(2),
            hello(1, "third"),
            hello(2, "third"),
        ),
        (
            "rules deploy by the CLI",
            Probe::AnonRead,
            Change::RulesByCli("[notes]\nread = \"false\"\n"),
            "200".into(),
            "403".into(),
        ),
        (
            "key revoke by the CLI",
            Probe::KeyReadWith(doomed_key),
            Change::RevokeKeyByCli(doomed_id),
            "200".into(),
            "401".into(),
        ),
        (
            "user disable",
            Probe::Me(ann_token),
            Change::DisableUser(ann),
            "200".into(),
            "401".into(),
        ),
        (
            "session revoke",
            Probe::Me(bob_token),
            Change::RevokeSessions(bob),
            "200".into(),
            "401".into(),
        ),
        (
            "tenant suspend",
            Probe::KeyRead,
            Change::Suspend,
            "200".into(),
            "403".into(),
        ),
        (
            "tenant resume by the CLI",
            Probe::KeyRead,
            Change::ResumeByCli,
            "403".into(),
            "200".into(),
        ),
        (
            "tenant suspend by the CLI",
            Probe::KeyRead,
            Change::SuspendByCli,
            "200".into(),
            "403".into(),
        ),
        (
            "tenant delete by the CLI",
            Probe::KeyRead,
            Change::DeleteByCli,
            "403".into(),
            "404".into(),
        ),
    ];
    let mut report = Vec::new();
    for (name, p, change, before, after) in cases {
        // Every node has the old state cached (a stale cache is what this is about).
        for n in &c.nodes {
            let seen = probe(&c, &n.base(), &p).await;
            assert_eq!(seen, before, "{name}: before the change, node {}", n.addr);
        }
        apply(&c, &change).await;
        let done = Instant::now();
        let mut worst = Duration::ZERO;
        // A change made through node A is seen there at once; one made by the CLI, a
        // process of its own, reaches every node by announcement, node A included.
        let watched = if name.ends_with("by the CLI") {
            &c.nodes[..]
        } else {
            &c.nodes[1..]
        };
        for n in watched {
            let seen_at = loop {
                let seen = probe(&c, &n.base(), &p).await;
                if seen == after {
                    break done.elapsed();
                }
                assert!(
                    done.elapsed() < Duration::from_secs(1),
                    "{name}: node {} still answers {seen} (wanted {after}) a second after the change",
                    n.addr
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            worst = worst.max(seen_at);
        }
        eprintln!("{name}: on every node after {worst:?}");
        report.push(format!("{name}: {worst:?}"));
    }
    eprintln!(
        "propagation to the other nodes (worst of two):\n  {}",
        report.join("\n  ")
    );
}

/// A user signing out of one session through node A: that session's socket on node B is
/// closed (1008) and its token refused there within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_node_ends_the_session_on_every_node() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let Some(c) = Cluster::start(3, &[]).await else {
        return;
    };
    apply(&c, &Change::Rules("[notes]\nread = \"auth != null\"\n")).await;
    let (_, token) = signup(&c, "carl@cluster.test").await;
    let b = c.nodes[1].base();
    let ws_url = format!(
        "{}/v1/t/{TENANT}/realtime",
        b.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("socket on B");
    for m in [
        json!({"type": "auth", "token": token}),
        json!({"type": "subscribe", "id": "n", "collection": "notes"}),
    ] {
        ws.send(Message::text(m.to_string())).await.expect("send");
    }
    loop {
        let f = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .expect("frame");
        if f.to_text().unwrap_or_default().contains("\"subscribed\"") {
            break;
        }
    }
    for n in &c.nodes {
        assert_eq!(probe(&c, &n.base(), &Probe::Me(token.clone())).await, "200");
    }

    let a = c.nodes[0].base();
    let r = c
        .http
        .post(format!("{a}/v1/t/{TENANT}/auth/logout"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status().as_u16(), 204, "logout");
    let done = Instant::now();

    // The socket on B is closed for the ended session.
    let closed = loop {
        let left = Duration::from_secs(1).saturating_sub(done.elapsed());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("B kept the ended session's socket open for a second"),
            Ok(None) | Ok(Some(Err(_))) => break None,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
        }
    };
    assert!(matches!(closed, Some(1008) | None), "close code {closed:?}");
    let socket_closed = done.elapsed();
    for n in &c.nodes[1..] {
        loop {
            if probe(&c, &n.base(), &Probe::Me(token.clone())).await == "401" {
                break;
            }
            assert!(
                done.elapsed() < Duration::from_secs(1),
                "node {} still accepts the ended session's token",
                n.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "logout on A: socket on B closed after {socket_closed:?}, token refused everywhere after {:?}",
        done.elapsed()
    );
}
