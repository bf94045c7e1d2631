//! `plinth deploy`: uploads a bundle folder, lists deploy versions, activates one. Works
//! on the local data (the same services as the admin API) or through a running server's
//! admin API (the upload shows its progress on standard error).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::Value;

use reqwest::Method;

use super::remote::{Client, Problem, seg};
use super::{print, progress};
use crate::admin::Actor;
use crate::config::StorageArgs;
use crate::error::ApiError;
use crate::state::AppState;

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

/// The tenant; given once, before or after the subcommand.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The tenant (required).
    #[arg(long, global = true)]
    pub tenant: Option<String>,
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

fn request(args: DeployArgs, to: &str) -> anyhow::Result<(String, Request)> {
    let tenant = args
        .target
        .tenant
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
                "uploading {} ({} files, {:.1} KiB) to {to}",
                dir.display(),
                files.len(),
                bytes as f64 / 1024.0,
            );
            Request::Deploy(files)
        }
    };
    Ok((tenant, request))
}

/// Prints the answer, or the problem with a bundle's errors one per line
/// (`FILE:LINE:COLUMN: message`).
fn finish(tenant: &str, answer: Result<Value, Value>) -> anyhow::Result<()> {
    match answer {
        Ok(v) if v.get("items").is_some() => {
            print::deploys(&v);
            Ok(())
        }
        Ok(v) => {
            print::deployed(tenant, &v);
            Ok(())
        }
        Err(problem) => {
            print_bundle_errors(&problem);
            anyhow::bail!(
                "{}",
                problem["detail"].as_str().unwrap_or("the request failed")
            )
        }
    }
}

fn print_bundle_errors(problem: &Value) {
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
}

pub async fn run_local(storage: &StorageArgs, args: DeployArgs) -> anyhow::Result<()> {
    let (tenant, request) = request(args, "the local data")?;
    let answer = local(storage, &tenant, request).await?;
    finish(&tenant, answer)
}

/// Through the admin API of the client's server.
pub async fn run_remote(client: &Client, args: DeployArgs) -> anyhow::Result<()> {
    let (tenant, request) = request(args, &client.conn.server)?;
    let base = format!("/admin/v1/tenants/{}/deploys", seg(&tenant));
    let answer = match request {
        Request::Deploy(files) => {
            let body = serde_json::to_vec(&serde_json::json!({ "files": files }))?;
            let req = client
                .request(Method::POST, &base)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::CONTENT_LENGTH, body.len())
                .body(progress::body(body));
            client.send(req).await
        }
        Request::List => client.get(&base).await,
        Request::Activate(n) => client.post(&format!("{base}/{n}/activate"), None).await,
    };
    match answer {
        Ok(v) => finish(&tenant, Ok(v)),
        Err(e) => match e.downcast::<Problem>() {
            Ok(p) => {
                print_bundle_errors(&p.body);
                Err(p.into())
            }
            Err(e) => Err(e),
        },
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
    let state = AppState::open(super::local_config(storage)?).await?;
    let actor = Actor::cli();
    let admin = &state.admin;
    let answer = async {
        // Held until the change ends, as by the other local changes (`cli::local`).
        let _lock = match request {
            Request::List => None,
            Request::Deploy(_) | Request::Activate(_) => admin.lock_for_local_change(&[t]).await?,
        };
        match request {
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
        }
    }
    .await;
    state.functions.shutdown();
    state.store.close().await;
    Ok(answer.map_err(|e| problem_json(e.into())))
}
