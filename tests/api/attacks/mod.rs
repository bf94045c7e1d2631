//! The attack suite: what the black-box probe of issue 14 did by hand, as tests. Each
//! area runs against two tenants, `alpha` (the attacker's) and `bravo` (the victim),
//! asserts the precise answer of every attack, and that the victim's stored state (and
//! the attacker's, where the attack must not write) is unchanged. Every area prints one
//! line, `attack summary: area=... backend=... attacks=N 5xx=M ...`, which RELIABILITY.md
//! quotes. Run it alone with `./scripts/test.sh --test api -- attacks`.

mod bad_input;
mod bad_params;
mod cross_tenant;
mod functions;
mod tokens;
mod websocket;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::documents::{put, scope_of};
use crate::functions::deploy;
use crate::rules::install_rules;
use crate::support::*;

/// The rules both tenants run: owner-only notes, a public collection anyone may write,
/// a collection nobody may read.
pub const RULES: &str = r#"
[notes]
read   = "auth != null && doc.owner == auth.uid"
create = "auth != null && new.owner == auth.uid"
update = "auth != null && doc.owner == auth.uid && new.owner == doc.owner"
delete = "auth != null && doc.owner == auth.uid"

[public]
read   = "true"
create = "true"
update = "true"
delete = "true"

[secret]
read   = "false"
create = "false"
"#;

/// Functions every tenant of the suite deploys; the hostile ones live in functions.rs.
pub const PEEK: &str = "export default async (req, ctx) => {
    const q = req.query;
    const out = {};
    out.get = await ctx.db.get(q.c || 'notes', q.id || 'none').then(d => d && d.data, e => 'error: ' + e.message);
    out.list = await ctx.db.list(q.c || 'notes', {}).then(p => p.items.map(d => d.data.tenant), e => 'error: ' + e.message);
    out.env = Object.keys(ctx.env);
    return out;
}";

/// One tenant of the suite and what it holds.
pub struct Tenant {
    pub slug: &'static str,
    pub key: String,
    pub owner: Session,
    pub other: Session,
    /// (collection, id) of every document seeded.
    pub docs: Vec<(String, String)>,
}

impl Tenant {
    pub fn doc(&self, collection: &str) -> &str {
        &self
            .docs
            .iter()
            .find(|(c, _)| c == collection)
            .expect("a seeded document")
            .1
    }
}

/// Two tenants, each with two users, documents in each collection (with versions above
/// one), the rules above, an HTTP function and a secret.
pub struct World {
    pub app: TestApp,
    pub alpha: Tenant,
    pub bravo: Tenant,
}

pub async fn world(b: Backend, extra_files: &[(&str, &str)]) -> World {
    world_with(b, extra_files, |_| {}).await
}

pub async fn world_with(
    b: Backend,
    extra_files: &[(&str, &str)],
    configure: impl FnOnce(&mut plinth::config::Config),
) -> World {
    let mut app = TestApp::start_with(b, configure).await;
    let alpha = seed_tenant(&mut app, "alpha", extra_files).await;
    let bravo = seed_tenant(&mut app, "bravo", extra_files).await;
    World { app, alpha, bravo }
}

async fn seed_tenant(app: &mut TestApp, slug: &'static str, extra: &[(&str, &str)]) -> Tenant {
    app.create_tenant(slug).await;
    let key = app.create_key(slug, "suite").await["key"]
        .as_str()
        .expect("key")
        .to_string();
    install_rules(app, slug, RULES).await.ok(200);
    let owner = app.signup(slug, &format!("owner@{slug}.test")).await;
    let other = app.signup(slug, &format!("other@{slug}.test")).await;
    let mut docs = Vec::new();
    for (collection, id) in [
        ("notes", format!("{slug}-note")),
        ("public", format!("{slug}-pub")),
        ("secret", format!("{slug}-secret")),
    ] {
        let path = format!("/v1/t/{slug}/collections/{collection}/docs/{id}");
        for v in 0..2 {
            put(
                app,
                &key,
                &path,
                json!({"owner": owner.user_id, "tenant": slug, "v": v, "n": 1}),
            )
            .await
            .ok(if v == 0 { 201 } else { 200 });
        }
        docs.push((collection.to_string(), id));
    }
    let admin = app.admin().await;
    app.send(
        app.req(
            reqwest::Method::PUT,
            &format!("/admin/v1/tenants/{slug}/secrets/API_KEY"),
            Some(&admin),
        )
        .json(&json!({"value": format!("{slug}-secret-value")})),
    )
    .await
    .ok(200);
    let mut manifest = "[[http]]\nname = \"peek\"\nfunction = \"peek\"\n".to_string();
    let mut files = vec![("functions/peek.js", PEEK)];
    for (name, src) in extra {
        if *name == "plinth.toml" {
            manifest.push_str(src);
        } else {
            files.push((name, src));
        }
    }
    files.push(("plinth.toml", &manifest));
    deploy(app, slug, &files).await.ok(201);
    Tenant {
        slug,
        key,
        owner,
        other,
        docs,
    }
}

/// Everything an attack could have changed in a tenant, as its real interfaces show it:
/// every document of every collection ever written (with version and data), the users
/// (disabled, verified, updated_at), service keys, secret names with their update times,
/// the rule set's and the active deploy's versions, and the change log's high-water mark.
#[derive(Debug, PartialEq)]
pub struct TenantState {
    pub documents: BTreeMap<(String, String), (i64, Value)>,
    pub users: Vec<Value>,
    pub keys: Vec<Value>,
    pub secrets: Vec<Value>,
    pub rules_version: i64,
    pub deploy_version: i64,
    pub change_seq: i64,
}

pub async fn state(app: &mut TestApp, t: &Tenant) -> TenantState {
    let admin = app.admin().await;
    let running = app.running.as_ref().expect("running");
    let store = &running.state.store;
    let scope = scope_of(app, t.slug).await;
    let (change_seq, _) = store.change_seq(&scope).await.expect("change seq");
    let (changes, _) = store
        .changes_since(&scope, 0, 1_000_000, None)
        .await
        .expect("change log");
    let collections: BTreeSet<String> = changes.into_iter().map(|c| c.collection).collect();
    let mut documents = BTreeMap::new();
    for c in collections {
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/t/{}/collections/{c}/docs?limit=1000", t.slug);
            if let Some(cur) = &cursor {
                path.push_str(&format!("&cursor={cur}"));
            }
            let page = app.get(&path, Some(&t.key)).await.ok(200);
            for d in page["items"].as_array().expect("items") {
                documents.insert(
                    (c.clone(), d["id"].as_str().expect("id").to_string()),
                    (d["version"].as_i64().expect("version"), d["data"].clone()),
                );
            }
            match page["next_cursor"].as_str() {
                Some(n) => cursor = Some(n.to_string()),
                None => break,
            }
        }
    }
    let items = |v: Value| v["items"].as_array().cloned().unwrap_or_default();
    let base = format!("/admin/v1/tenants/{}", t.slug);
    let users = items(
        app.get(&format!("{base}/users?limit=1000"), Some(&admin))
            .await
            .ok(200),
    );
    let keys = items(app.get(&format!("{base}/keys"), Some(&admin)).await.ok(200));
    let secrets = items(
        app.get(&format!("{base}/secrets"), Some(&admin))
            .await
            .ok(200),
    );
    TenantState {
        documents,
        users,
        keys,
        secrets,
        rules_version: store.active_ruleset_version(&scope).await.expect("rules"),
        deploy_version: store.active_deploy_version(&scope).await.expect("deploy"),
        change_seq,
    }
}

/// Asserts that a tenant's state is what it was.
pub async fn assert_unchanged(app: &mut TestApp, t: &Tenant, before: &TenantState, what: &str) {
    let after = state(app, t).await;
    assert_eq!(
        &after, before,
        "{what}: tenant {} changed under attack",
        t.slug
    );
}

/// Counts the attacks of one area and what came back; mismatches are collected so one
/// run reports them all.
pub struct Tally {
    pub area: &'static str,
    backend: Backend,
    tried: AtomicUsize,
    /// 5xx answers a function documents for itself (500 function_error, 504 timeout...).
    documented: AtomicUsize,
    five_xx: Mutex<Vec<String>>,
    wrong: Mutex<Vec<String>>,
}

impl Tally {
    pub fn new(area: &'static str, backend: Backend) -> Tally {
        Tally {
            area,
            backend,
            tried: AtomicUsize::new(0),
            documented: AtomicUsize::new(0),
            five_xx: Mutex::new(Vec::new()),
            wrong: Mutex::new(Vec::new()),
        }
    }

    /// Counts one attack; any 5xx is recorded as such.
    pub fn saw(&self, what: &str, r: &Reply) {
        self.tried.fetch_add(1, Ordering::Relaxed);
        if r.status.is_server_error() {
            self.five_xx
                .lock()
                .unwrap()
                .push(format!("{what}: {} {}", r.status, r.text));
        }
    }

    /// Counts one attack that is not an HTTP request (a WebSocket frame).
    pub fn tried(&self) {
        self.tried.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attack answered by a documented function failure (5xx on purpose).
    pub fn documented_failure(&self, what: &str, r: &Reply, status: u16, code: &str) {
        self.tried.fetch_add(1, Ordering::Relaxed);
        if r.status.as_u16() == status && problem_code(r).as_deref() == Some(code) {
            self.documented.fetch_add(1, Ordering::Relaxed);
        } else {
            self.mismatch(format!(
                "{what}: expected {status} {code}, got {} {}",
                r.status, r.text
            ));
        }
    }

    /// Counts one attack and checks its answer is this problem (status, code,
    /// `application/problem+json`).
    pub fn expect(&self, what: &str, r: &Reply, status: u16, code: &str) {
        self.saw(what, r);
        if let Err(e) = check_problem(r, status, code) {
            self.mismatch(format!("{what}: {e}"));
        }
    }

    /// Counts one attack and checks it was answered with one of these problems.
    pub fn expect_any(&self, what: &str, r: &Reply, allowed: &[(u16, &str)]) {
        self.saw(what, r);
        if !allowed.iter().any(|(s, c)| check_problem(r, *s, c).is_ok()) {
            self.mismatch(format!(
                "{what}: expected one of {allowed:?}, got {} {}",
                r.status, r.text
            ));
        }
    }

    pub fn mismatch(&self, m: String) {
        self.wrong.lock().unwrap().push(m);
    }

    /// Prints the area's summary line and fails on any 5xx or wrong answer.
    pub fn finish(self) {
        let tried = self.tried.load(Ordering::Relaxed);
        let five = self.five_xx.into_inner().unwrap();
        let wrong = self.wrong.into_inner().unwrap();
        println!(
            "attack summary: area={} backend={:?} attacks={tried} 5xx={} documented_function_failures={} wrong_answers={}",
            self.area,
            self.backend,
            five.len(),
            self.documented.load(Ordering::Relaxed),
            wrong.len()
        );
        assert!(
            five.is_empty() && wrong.is_empty(),
            "{}: {} 5xx, {} wrong answers:\n{}\n{}",
            self.area,
            five.len(),
            wrong.len(),
            five.join("\n"),
            wrong.join("\n")
        );
    }
}

pub fn problem_code(r: &Reply) -> Option<String> {
    serde_json::from_str::<Value>(&r.text)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
}

/// Like `Reply::problem`, as a result.
pub fn check_problem(r: &Reply, status: u16, code: &str) -> Result<(), String> {
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body: Option<Value> = serde_json::from_str(&r.text).ok();
    let ok = r.status.as_u16() == status
        && ct.starts_with("application/problem+json")
        && body.as_ref().is_some_and(|b| {
            b["code"] == code
                && b["status"] == status
                && b["type"].as_str().is_some_and(|t| !t.is_empty())
                && b["title"].as_str().is_some()
                && b["detail"].as_str().is_some()
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected {status} {code}, got {} ({ct}) {}",
            r.status,
            r.text.chars().take(300).collect::<String>()
        ))
    }
}
