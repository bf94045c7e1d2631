//! Command line: `serve` runs the server; the other commands administer local data (the
//! SQLite data dir or the PostgreSQL database) directly, through the same services as
//! the admin API, so they are audited the same way.

mod deploy;
mod healthcheck;

use std::io::Read;

use clap::{Parser, Subcommand};

use crate::admin::Actor;
use crate::app::{App, AppState};
use crate::config::{Config, LogFormat, ServeArgs, StorageArgs};

#[derive(Parser, Debug)]
#[command(
    name = "plinth",
    version,
    about = "Plinth: a self-hosted, multi-tenant Backend-as-a-Service"
)]
pub struct Cli {
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run pending database migrations and exit.
    Migrate,
    /// Platform admins.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Service keys of a tenant.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Secrets of a tenant (its functions' environment), stored encrypted.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// JWT signing keys.
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
    /// Access rules: deploy, test, explain.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Function bundles: deploy a folder, list versions, activate one (rollback).
    Deploy(deploy::DeployArgs),
    /// After-hook jobs: list pending or dead ones, retry a dead one.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// GET /healthz of the server on the configured listen address; exit 0 when it
    /// answers 200 (for container health checks: needs no curl).
    Healthcheck(healthcheck::HealthcheckArgs),
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Jobs of a tenant, oldest first.
    List {
        #[arg(long)]
        tenant: String,
        /// pending or dead (default: both).
        #[arg(long)]
        state: Option<String>,
    },
    /// Run a dead job again, with fresh attempts.
    Retry {
        id: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Validate a TOML rule set and make it the tenant's active set.
    Deploy {
        file: std::path::PathBuf,
        #[arg(long)]
        tenant: String,
    },
    /// Run a rules test file (cases of auth, doc, new, operation, expected allow/deny);
    /// exits non-zero when a case fails. Needs no server or data.
    Test { file: std::path::PathBuf },
    /// Show which rule and sub-expression decide an operation on a stored document.
    Explain {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        collection: String,
        #[arg(long)]
        id: String,
        /// Evaluate as this user (default: anonymous).
        #[arg(long)]
        uid: Option<String>,
        /// read, update or delete.
        #[arg(long, default_value = "read")]
        op: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an admin; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required: passwords never go in argv).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        slug: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tenants.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a tenant: its routes answer 403 until resumed.
    Suspend { slug: String },
    /// Resume a suspended tenant.
    Resume { slug: String },
    /// Delete a tenant and all of its data.
    Delete {
        slug: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a service key; the key is printed once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// List a tenant's service keys.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a service key.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Create or replace a secret; the value is read from standard input (one trailing
    /// newline is dropped), never from the command line.
    Set {
        /// `^[A-Z_][A-Z0-9_]{0,63}$`
        name: String,
        #[arg(long)]
        tenant: String,
    },
    /// List a tenant's secrets (names and update times, never values).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Delete a secret.
    Delete {
        name: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SigningKeyCommand {
    /// Make a new signing key current; older keys keep verifying until restart.
    Rotate,
}

pub fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLINTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_format, "info,tower_http=warn,sqlx=warn");
            serve(&cli.storage, &args).await
        }
        Command::Rules(RulesCommand::Test { file }) => rules_test(&file),
        Command::Healthcheck(args) => healthcheck::run(args).await,
        Command::Deploy(args) => {
            init_tracing(LogFormat::Text, "warn");
            deploy::run(&cli.storage, args).await
        }
        command => {
            init_tracing(LogFormat::Text, "warn");
            let mut config = Config::new(cli.storage.location(), ([127, 0, 0, 1], 0).into());
            config.secrets_key = cli.storage.secrets_key()?;
            let state = AppState::open(config).await?;
            let result = local(&state, command).await;
            state.store.close().await;
            result
        }
    }
}

async fn serve(storage: &StorageArgs, args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(storage, args)?;
    let backend = match &config.location {
        crate::store::Location::SqliteDir(dir) => format!("sqlite:{}", dir.display()),
        crate::store::Location::Postgres(_) => "postgres".to_string(),
    };
    let print_token = config.print_setup_token;
    let app = App::build(config).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, %backend, "plinth listening");
    println!("plinth listening on http://{addr} ({backend})");
    println!("admin console: http://{addr}/_/");
    if let Some(demo) = app.demo() {
        print_demo(addr, demo);
    }
    if let (true, Some(token)) = (print_token, app.setup_token()) {
        println!(
            "\nNo admin exists yet. Create the first one in the admin console, \
             http://{addr}/_/setup, with this one-time setup token:\n\n  {token}\n\nor with curl:\n\n  \
             curl -X POST http://{addr}/admin/v1/setup -H 'content-type: application/json' \\\n    \
             -d '{{\"token\":\"{token}\",\"email\":\"you@example.com\",\"password\":\"choose-a-good-one\"}}'\n\n\
             or locally: plinth admin create --email you@example.com --password-stdin\n"
        );
    }
    app.run(shutdown_signal()).await
}

fn print_demo(addr: std::net::SocketAddr, demo: &crate::demo::Prepared) {
    use crate::demo::{DEFAULT_TWILIO_TOKEN, TENANT, TWILIO_SECRET, TokenSource};
    let token = match demo.token {
        TokenSource::Configured => "the configured PLINTH_DEMO_TWILIO_TOKEN".to_string(),
        TokenSource::Kept => format!("the tenant's {TWILIO_SECRET} secret"),
        TokenSource::Default => format!(
            "the well-known '{DEFAULT_TWILIO_TOKEN}': for local demos only, \
             set PLINTH_DEMO_TWILIO_TOKEN for anything else"
        ),
    };
    let deploy = match demo.deployed {
        Some(v) => format!("deployed the bundle as version {v}"),
        None => "bundle unchanged".to_string(),
    };
    tracing::info!(tenant = TENANT, deploy = %deploy, created = ?demo.created, "demo ready");
    println!(
        "\nSMS voting demo (tenant '{TENANT}', {deploy}): http://{addr}/demo/\n  \
         Twilio webhook: http://{addr}/v1/t/{TENANT}/fn/sms, signed with {token}\n"
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// Runs a rules test file; needs no storage.
fn rules_test(file: &std::path::Path) -> anyhow::Result<()> {
    let report = crate::rules::testing::run_file(file).map_err(|e| anyhow::anyhow!(e))?;
    let mut failed = 0;
    for case in &report.cases {
        if case.passed {
            println!("ok    {}", case.name);
        } else {
            failed += 1;
            println!(
                "FAIL  {}: expected {}, got {}{}",
                case.name,
                case.expected,
                case.actual,
                case.detail
                    .as_deref()
                    .map(|d| format!(" (decided by: {d})"))
                    .unwrap_or_default()
            );
        }
    }
    println!("{} passed, {failed} failed", report.cases.len() - failed);
    anyhow::ensure!(failed == 0, "{failed} rule test case(s) failed");
    Ok(())
}

/// A value piped in with `echo` or typed and ended with Enter: one newline is not part of it.
fn strip_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

fn ts(ms: i64) -> String {
    crate::http::dto::timestamp(ms)
}

async fn local(state: &AppState, command: Command) -> anyhow::Result<()> {
    let admin = &state.admin;
    let actor = Actor::cli();
    let e =
        |err: crate::admin::AdminError| anyhow::anyhow!(crate::error::ApiError::from(err).detail);
    match command {
        Command::Serve(_) | Command::Deploy(_) | Command::Healthcheck(_) => {
            unreachable!("handled by run")
        }
        Command::Migrate => {
            // Opening the store ran every pending migration.
            println!("migrations are up to date");
        }
        Command::Admin(AdminCommand::Create { email, .. }) => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            let row = admin.create_admin(&email, password).await.map_err(e)?;
            println!("admin created: {} ({})", row.email, row.id);
        }
        Command::Tenant(TenantCommand::Create { slug, name }) => {
            let t = admin.create_tenant(&actor, &slug, &name).await.map_err(e)?;
            println!("tenant created: {} ({})", t.slug, t.name);
        }
        Command::Tenant(TenantCommand::List { json }) => {
            let tenants = admin.list_tenants().await.map_err(e)?;
            if json {
                let dtos: Vec<_> = tenants
                    .into_iter()
                    .map(crate::http::dto::TenantDto::from)
                    .collect();
                println!("{}", serde_json::to_string_pretty(&dtos)?);
            } else {
                println!("{:<40} {:<10} {:<24} NAME", "SLUG", "STATE", "CREATED");
                for t in tenants {
                    let status = if t.suspended { "suspended" } else { "active" };
                    println!(
                        "{:<40} {:<10} {:<24} {}",
                        t.slug,
                        status,
                        ts(t.created_at),
                        t.name
                    );
                }
            }
        }
        Command::Tenant(TenantCommand::Suspend { slug }) => {
            admin.set_suspended(&actor, &slug, true).await.map_err(e)?;
            println!("tenant suspended: {slug}");
        }
        Command::Tenant(TenantCommand::Resume { slug }) => {
            admin.set_suspended(&actor, &slug, false).await.map_err(e)?;
            println!("tenant resumed: {slug}");
        }
        Command::Tenant(TenantCommand::Delete { slug, yes }) => {
            anyhow::ensure!(
                yes,
                "deleting a tenant destroys all its data; pass --yes to confirm"
            );
            admin.delete_tenant(&actor, &slug).await.map_err(e)?;
            println!("tenant deleted: {slug}");
        }
        Command::Key(KeyCommand::Create { tenant, name }) => {
            let (row, key) = admin.create_key(&actor, &tenant, &name).await.map_err(e)?;
            eprintln!(
                "service key {} ({}) created; it is shown only this once:",
                row.id, row.name
            );
            println!("{key}");
        }
        Command::Key(KeyCommand::List { tenant }) => {
            let keys = admin.list_keys(&actor, &tenant).await.map_err(e)?;
            println!(
                "{:<38} {:<16} {:<24} {:<10} NAME",
                "ID", "PREFIX", "CREATED", "STATE"
            );
            for k in keys {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<38} {:<16} {:<24} {:<10} {}",
                    k.id,
                    k.prefix,
                    ts(k.created_at),
                    status,
                    k.name
                );
            }
        }
        Command::Key(KeyCommand::Revoke { tenant, id }) => {
            admin.revoke_key(&actor, &tenant, &id).await.map_err(e)?;
            println!("service key revoked: {id}");
        }
        Command::Secret(SecretCommand::Set { name, tenant }) => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                eprintln!("reading the value of {name} from standard input; end with Ctrl-D");
            }
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|err| anyhow::anyhow!("cannot read the value from stdin: {err}"))?;
            let value = strip_one_newline(&value);
            let info = admin
                .set_secret(&actor, &tenant, &name, value)
                .await
                .map_err(e)?;
            println!("secret set: {} ({tenant})", info.name);
        }
        Command::Secret(SecretCommand::List { tenant }) => {
            let secrets = admin.list_secrets(&actor, &tenant).await.map_err(e)?;
            println!("{:<66} UPDATED", "NAME");
            for s in secrets {
                println!("{:<66} {}", s.name, ts(s.updated_at));
            }
        }
        Command::Secret(SecretCommand::Delete { name, tenant }) => {
            admin
                .delete_secret(&actor, &tenant, &name)
                .await
                .map_err(e)?;
            println!("secret deleted: {name} ({tenant})");
        }
        Command::Rules(RulesCommand::Test { .. }) => unreachable!("handled by run"),
        Command::Rules(RulesCommand::Deploy { file, tenant }) => {
            let source = std::fs::read_to_string(&file)
                .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", file.display()))?;
            match admin.install_rules(&actor, &tenant, &source).await {
                Ok(installed) => {
                    println!(
                        "rules version {} active for {tenant} ({} collection(s))",
                        installed.version,
                        installed.collections.len()
                    );
                    for w in installed.warnings {
                        eprintln!("warning: {w}");
                    }
                }
                Err(crate::admin::AdminError::InvalidRules(errors)) => {
                    for err in &errors {
                        let place = match (&err.collection, &err.operation) {
                            (Some(c), Some(o)) => format!(" [{c}] {o}:"),
                            (Some(c), None) => format!(" [{c}]:"),
                            _ => String::new(),
                        };
                        eprintln!(
                            "{}:{}:{}:{place} {}",
                            file.display(),
                            err.line,
                            err.column,
                            err.message
                        );
                    }
                    anyhow::bail!(
                        "{} error(s); the active rule set is unchanged",
                        errors.len()
                    );
                }
                Err(other) => return Err(e(other)),
            }
        }
        Command::Rules(RulesCommand::Explain {
            tenant,
            collection,
            id,
            uid,
            op,
        }) => {
            let op = crate::rules::Operation::parse_explainable(&op)
                .map_err(|m| anyhow::anyhow!("--op: {m}"))?;
            let scope = admin.cli_scope(&tenant).await.map_err(e)?;
            let r = state
                .docs
                .explain_as(&scope, &collection, &id, op, uid.as_deref())
                .await
                .map_err(|err| anyhow::anyhow!(crate::error::ApiError::from(err).detail))?;
            match (r.rule, r.explanation) {
                (Some(rule), Some(x)) => {
                    println!("rule:       [{collection}] {} = {rule}", op.as_str());
                    println!("outcome:    {}", if x.allowed { "allow" } else { "deny" });
                    println!("decided by: {}", x.decided_by);
                    for step in x.trace {
                        println!("  {} => {}", step.expression, step.value);
                    }
                }
                _ => println!("no {} rule for [{collection}]: deny", op.as_str()),
            }
        }
        Command::Jobs(JobsCommand::List { tenant, state }) => {
            let page = admin
                .list_jobs(&actor, &tenant, state.as_deref(), None, Some(500))
                .await
                .map_err(e)?;
            println!(
                "{:<38} {:<16} {:<8} {:<9} LAST ERROR",
                "ID", "FUNCTION", "STATE", "ATTEMPTS"
            );
            for j in page.items {
                println!(
                    "{:<38} {:<16} {:<8} {:<9} {}",
                    j.id,
                    j.function,
                    j.state,
                    format!("{}/{}", j.attempts, j.max_attempts),
                    j.last_error.unwrap_or_default()
                );
            }
        }
        Command::Jobs(JobsCommand::Retry { id, tenant }) => {
            admin.retry_job(&actor, &tenant, &id).await.map_err(e)?;
            println!("job {id} queued again (a running server picks it up within 30 s)");
        }
        Command::SigningKey(SigningKeyCommand::Rotate) => {
            let kid = crate::auth::tokens::Keyring::rotate(&state.store).await?;
            state
                .store
                .append_audit(crate::store::NewAudit {
                    actor: &actor.0,
                    action: "signing_key.rotate",
                    tenant: None,
                    target: Some(&kid),
                    detail: serde_json::json!({}),
                })
                .await?;
            println!(
                "new signing key: {kid} (restart servers to sign with it; old keys still verify)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::strip_one_newline;

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(strip_one_newline("v\n"), "v");
        assert_eq!(strip_one_newline("v\r\n"), "v");
        assert_eq!(strip_one_newline("v\n\n"), "v\n");
        assert_eq!(strip_one_newline("v"), "v");
        assert_eq!(strip_one_newline(" v \n"), " v ");
        assert_eq!(strip_one_newline(""), "");
    }
}
