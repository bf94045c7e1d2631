//! `plinth deploy`: uploads a bundle folder, lists deploy versions, activates one. Works
//! on the local data (the same services as the admin API) or, with `--server`, through a
//! running server's admin API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::admin::Actor;
use crate::app::AppState;
use crate::config::{Config, StorageArgs};
use crate::error::ApiError;
use crate::functions::bundle::{MANIFEST, Manifest};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub command: Option<DeployCommand>,
    /// The bundle folder (plinth.toml, its rules file, functions/*.js).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Subcommand, Debug)]
pub enum DeployCommand {
    /// The tenant's deploy history, newest first.
    List,
    /// Make a stored version active (rollback or roll forward).
    Activate { version: i64 },
}

/// Where a deploy command goes; given once, before or after the subcommand.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The tenant (required).
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// A running server's base URL; without it, the local data dir (or
    /// PLINTH_DATABASE_URL) is changed directly.
    #[arg(long, env = "PLINTH_SERVER", global = true)]
    pub server: Option<String>,
    /// Admin token for `--server` (from POST /admin/v1/login).
    #[arg(
        long,
        env = "PLINTH_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
}

/// Reads a bundle folder: plinth.toml, the rules file it names, and functions/*.js.
pub fn read_bundle(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let read = |rel: &str| -> anyhow::Result<String> {
        let p = dir.join(rel);
        std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
    };
    let mut files = BTreeMap::new();
    let manifest_src = read(MANIFEST)?;
    // Only to find the rules file; the server validates the manifest (with positions).
    if let Ok(m) = toml::from_str::<Manifest>(&manifest_src)
        && let Some(rules) = m.rules
    {
        files.insert(rules.clone(), read(&rules)?);
    }
    files.insert(MANIFEST.to_string(), manifest_src);
    let fdir = dir.join("functions");
    if fdir.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(&fdir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "js"))
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| anyhow::anyhow!("{}: not a UTF-8 file name", p.display()))?;
            files.insert(
                format!("functions/{name}"),
                read(&format!("functions/{name}"))?,
            );
        }
    }
    Ok(files)
}

enum Request {
    Deploy(BTreeMap<String, String>),
    List,
    Activate(i64),
}

pub async fn run(storage: &StorageArgs, args: DeployArgs) -> anyhow::Result<()> {
    let target = args.target;
    let tenant = target
        .tenant
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--tenant is required"))?;
    let request = match args.command {
        Some(DeployCommand::List) => Request::List,
        Some(DeployCommand::Activate { version }) => Request::Activate(version),
        None => {
            let dir = args.dir.ok_or_else(|| {
                anyhow::anyhow!("give the bundle folder: plinth deploy DIR --tenant T")
            })?;
            let files = read_bundle(&dir)?;
            let bytes: usize = files.values().map(String::len).sum();
            eprintln!(
                "uploading {} ({} files, {:.1} KiB) to {}",
                dir.display(),
                files.len(),
                bytes as f64 / 1024.0,
                target.server.as_deref().unwrap_or("the local data")
            );
            Request::Deploy(files)
        }
    };
    let answer = match &target.server {
        Some(server) => remote(server, &tenant, target.token.as_deref(), request).await?,
        None => local(storage, &tenant, request).await?,
    };
    match answer {
        Ok(v) => {
            print_answer(&tenant, &v);
            Ok(())
        }
        Err(problem) => {
            if let Some(errors) = problem.get("errors").and_then(Value::as_array) {
                for e in errors {
                    let file = e["file"].as_str().unwrap_or("?");
                    let place = match (e["line"].as_u64(), e["column"].as_u64()) {
                        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
                        (Some(l), None) => format!("{file}:{l}"),
                        _ => file.to_string(),
                    };
                    eprintln!("{place}: {}", e["message"].as_str().unwrap_or(""));
                }
            }
            anyhow::bail!(
                "{}",
                problem["detail"].as_str().unwrap_or("the request failed")
            )
        }
    }
}

fn print_answer(tenant: &str, v: &Value) {
    if let Some(items) = v.get("items").and_then(Value::as_array) {
        println!("{:<8} {:<8} {:<26} BY", "VERSION", "ACTIVE", "CREATED");
        for d in items {
            println!(
                "{:<8} {:<8} {:<26} {}",
                d["version"],
                if d["active"] == true { "*" } else { "" },
                d["created_at"]
                    .as_i64()
                    .map(crate::http::dto::timestamp)
                    .unwrap_or_default(),
                d["created_by"].as_str().unwrap_or("")
            );
        }
        return;
    }
    let list = |k: &str| {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    println!("version {} active for {tenant}", v["version"]);
    println!("  functions: {}", list("functions"));
    println!("  http:      {}", list("http"));
    println!("  hooks:     {}", v["hooks"]);
    if let Some(r) = v["rules_version"].as_i64() {
        println!("  rules:     version {r}");
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or(""));
    }
}

fn problem_json(e: ApiError) -> Value {
    let mut v = serde_json::json!({ "detail": e.detail, "code": e.code });
    for (k, x) in e.extra {
        v[k] = x;
    }
    v
}

async fn local(
    storage: &StorageArgs,
    t: &str,
    request: Request,
) -> anyhow::Result<Result<Value, Value>> {
    let config = Config::new(storage.location(), ([127, 0, 0, 1], 0).into());
    let state = AppState::open(config).await?;
    let actor = Actor::cli();
    let admin = &state.admin;
    let answer = match request {
        Request::Deploy(files) => admin
            .deploy(&actor, t, files)
            .await
            .map(|d| serde_json::to_value(d).unwrap_or_default()),
        Request::List => admin
            .list_deploys(&actor, t)
            .await
            .map(|items| serde_json::json!({ "items": items })),
        Request::Activate(n) => admin
            .activate_deploy(&actor, t, n)
            .await
            .map(|d| serde_json::to_value(d).unwrap_or_default()),
    };
    state.functions.shutdown();
    state.store.close().await;
    Ok(answer.map_err(|e| problem_json(e.into())))
}

async fn remote(
    server: &str,
    tenant: &str,
    token: Option<&str>,
    request: Request,
) -> anyhow::Result<Result<Value, Value>> {
    let token =
        token.ok_or_else(|| anyhow::anyhow!("--server needs --token (or PLINTH_ADMIN_TOKEN)"))?;
    // reqwest's rustls has no crypto provider of its own here: use ring, which sqlx
    // already builds. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = format!(
        "{}/admin/v1/tenants/{}/deploys",
        server.trim_end_matches('/'),
        tenant
    );
    let client = reqwest::Client::new();
    let req = match request {
        Request::Deploy(files) => client
            .post(&base)
            .json(&serde_json::json!({ "files": files })),
        Request::List => client.get(&base),
        Request::Activate(n) => client.post(format!("{base}/{n}/activate")),
    };
    let res = req
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {server}: {e}"))?;
    let ok = res.status().is_success();
    let status = res.status();
    let text = res.text().await?;
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| serde_json::json!({ "detail": format!("{status}: {text}") }));
    Ok(if ok { Ok(v) } else { Err(v) })
}
