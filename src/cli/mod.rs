//! Command line: `serve` runs the server; the admin commands work either on local data
//! (the SQLite data dir or the PostgreSQL database, through the same services as the
//! admin API, audited as `cli`) or on a remote server through its admin API.
//!
//! Which one is decided once, in [`remote::resolve`]: a named server (`--server`,
//! `PLINTH_SERVER`) means remote; else named local storage (`--data-dir`,
//! `--database-url`, or their variables) means local; else the server of the last
//! `plinth login`, if any; else local. `serve`, `migrate`, `admin create`, `signing-key
//! rotate`, `backup`, `restore` and `rules test` always work locally.

mod backup;
mod commands;
mod credentials;
mod deploy;
mod healthcheck;
mod local;
mod login;
mod print;
mod progress;
mod remote;
mod remote_commands;
mod remote_transfer;
mod transfer;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use commands::*;

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
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(subcommand)]
    pub command: Command,
    /// Local storage was named on the command line or in the environment (set by
    /// [`Cli::parse_args`], not by clap).
    #[arg(skip)]
    pub local_explicit: bool,
}

/// Where admin commands go when not to the local data.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// A running server's base URL: admin commands go through its admin API.
    #[arg(long, env = "PLINTH_SERVER", global = true)]
    pub server: Option<String>,
    /// An admin token for the server (from POST /admin/v1/auth/login).
    #[arg(
        long,
        env = "PLINTH_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// An admin API key (`pak_...`) for the server, e.g. in CI.
    #[arg(long, env = "PLINTH_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// PEM certificates of a private CA to trust for the server's HTTPS certificate,
    /// besides the system's roots; `plinth login` stores it with the login.
    #[arg(long, env = "PLINTH_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Cli {
    /// Parses the process arguments and notes whether local storage was named.
    pub fn parse_args() -> Cli {
        let matches = Cli::command().get_matches();
        let mut cli = match Cli::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        };
        let named = |id: &str| {
            let mut m = &matches;
            // Global options are recorded on the deepest subcommand they were given to.
            loop {
                if matches!(
                    m.value_source(id),
                    Some(clap::parser::ValueSource::CommandLine)
                        | Some(clap::parser::ValueSource::EnvVariable)
                ) {
                    return true;
                }
                match m.subcommand() {
                    Some((_, sub)) => m = sub,
                    None => return false,
                }
            }
        };
        cli.local_explicit = named("data_dir") || named("database_url");
        cli
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Run pending database migrations and exit.
    Migrate,
    /// Sign in to a remote server; later commands go to it (see `plinth logout`).
    Login(login::LoginArgs),
    /// Forget the stored login of a server (the current one by default).
    Logout,
    /// Platform admins on the server's own disk (`admin create` makes an owner).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Admins of a remote server: list, create, update, remove (owners only).
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// Admin API keys of a remote server (for CI).
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Service keys of a tenant.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Secrets of a tenant (its functions' environment), stored encrypted.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// End users of a tenant.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Metered use of a tenant per UTC day, or per UTC hour with --hours.
    Usage {
        #[arg(long)]
        tenant: String,
        /// Days back, today included (1..366).
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Per hour instead: hours back, the current one included (1..336).
        #[arg(long, conflicts_with = "days")]
        hours: Option<u32>,
    },
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
    /// Back up the whole server's data, online, into DIR/<UTC timestamp>/ (SQLite: each
    /// file with SQLite's backup API; PostgreSQL: pg_dump).
    Backup(backup::BackupArgs),
    /// Restore a backup into a new SQLite directory (--data-dir) or an empty PostgreSQL
    /// database (--database-url), after checking its checksums.
    Restore(backup::RestoreArgs),
    /// GET /healthz of the server on the configured listen address; exit 0 when it
    /// answers 200 (for container health checks: needs no curl).
    Healthcheck(healthcheck::HealthcheckArgs),
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
    let selection = remote::Selection {
        server: cli.remote.server.as_deref(),
        token: cli.remote.token.as_deref(),
        api_key: cli.remote.api_key.as_deref(),
        ca_cert: cli.remote.ca_cert.as_deref(),
        local_explicit: cli.local_explicit,
    };
    if !matches!(cli.command, Command::Serve(_)) {
        init_tracing(LogFormat::Text, "warn");
    }
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_format, "info,tower_http=warn,sqlx=warn");
            serve(&cli.storage, &args).await
        }
        Command::Rules(RulesCommand::Test { file }) => local::rules_test(&file),
        Command::Healthcheck(args) => healthcheck::run(args).await,
        Command::Login(args) => login::login(&cli.remote, args).await,
        Command::Backup(args) => {
            local_only(&cli.remote)?;
            backup::backup(&cli.storage, args).await
        }
        Command::Restore(args) => {
            local_only(&cli.remote)?;
            backup::restore(&cli.storage, cli.local_explicit, args).await
        }
        Command::Logout => login::logout(cli.remote.server.as_deref()),
        command @ (Command::Migrate | Command::Admin(_) | Command::SigningKey(_)) => {
            local_only(&cli.remote)?;
            run_local(&cli.storage, command).await
        }
        command => match remote::resolve(&selection)? {
            Some(conn) => {
                let client = remote::Client::new(conn)?;
                remote_commands::run(&client, command).await
            }
            None => match command {
                Command::Deploy(args) => deploy::run_local(&cli.storage, args).await,
                Command::Admins(_) | Command::ApiKey(_) => anyhow::bail!(
                    "this command needs a server: `plinth login --server URL` first, \
                         or pass --server"
                ),
                command => run_local(&cli.storage, command).await,
            },
        },
    }
}

fn local_only(remote: &RemoteArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        remote.server.is_none(),
        "this command works on the server's own data: run it there, without --server"
    );
    Ok(())
}

/// The configuration of a one-shot command on the local data: the storage's settings,
/// and hooks off. The process starts no hook runner and ends with the command, so a job
/// it claimed as it committed a write would wait for its lease (130 s by default) before
/// a server ran it; left unclaimed and reported, a running server takes it at once.
pub(crate) fn local_config(storage: &StorageArgs) -> anyhow::Result<Config> {
    let mut config = Config::new(storage.location(), ([127, 0, 0, 1], 0).into());
    config.secrets_key = storage.secrets_key()?;
    config.clusters = storage.clusters()?;
    config.placement = storage.placement()?;
    config.move_lease = std::time::Duration::from_millis(storage.move_lease_ms);
    config.functions.run_hooks = false;
    Ok(config)
}

async fn run_local(storage: &StorageArgs, command: Command) -> anyhow::Result<()> {
    let state = AppState::open(local_config(storage)?).await?;
    let result = local::run(&state, command).await;
    state.store.close().await;
    result
}

async fn serve(storage: &StorageArgs, args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(storage, args)?;
    if let Some(warning) = crate::config::wildcard_warning(&config) {
        tracing::warn!("{warning}");
    }
    let backend = match &config.location {
        crate::store::Location::SqliteDir(dir) => format!("sqlite:{}", dir.display()),
        crate::store::Location::Postgres(_) => "postgres".to_string(),
    };
    let print_token = config.print_setup_token;
    let public_url = config
        .public_url_configured
        .then(|| config.public_url.trim_end_matches('/').to_string());
    let app = App::build(config).await?;
    let addr = app.local_addr();
    #[cfg(unix)]
    if let Some(store) = app.tls() {
        crate::http::tls::reload_on_sighup(store.clone())
            .map_err(|e| anyhow::anyhow!("cannot watch SIGHUP for certificate reloads: {e}"))?;
    }
    #[cfg(unix)]
    if app.acme().is_some() {
        crate::acme::ignore_sighup().map_err(|e| anyhow::anyhow!("cannot watch SIGHUP: {e}"))?;
    }
    // The address actually bound (port 0 picks one), in the scheme it speaks.
    let local = format!(
        "{}://{addr}",
        if app.serves_tls() { "https" } else { "http" }
    );
    tracing::info!(%addr, %backend, tls = app.serves_tls(), "plinth listening");
    if let Some(acme) = app.acme() {
        say(format_args!(
            "TLS certificate for {} by ACME (TLS-ALPN-01 on this port)",
            acme.domains().join(", ")
        ));
    }
    say(format_args!("plinth listening on {local} ({backend})"));
    say(format_args!("admin console: {local}/_/"));
    if let Some(demo) = app.demo() {
        // Where Twilio must post: the public URL, else the address bound.
        print_demo(public_url.as_deref().unwrap_or(&local), demo);
    }
    if let (true, Some(token)) = (print_token, app.setup_token()) {
        say(format_args!(
            "\nNo admin exists yet. Create the first one in the admin console, \
             {local}/_/setup, with this one-time setup token:\n\n  {token}\n\nor with curl:\n\n  \
             curl -X POST {local}/admin/v1/setup -H 'content-type: application/json' \\\n    \
             -d '{{\"token\":\"{token}\",\"email\":\"you@example.com\",\"password\":\"choose-a-good-one\"}}'\n\n\
             or locally: plinth admin create --email you@example.com --password-stdin\n"
        ));
    }
    app.run(shutdown_signal()).await
}

fn print_demo(public_url: &str, demo: &crate::demo::Prepared) {
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
    say(format_args!(
        "\nSMS voting demo (tenant '{TENANT}', {deploy}): {public_url}/demo/\n  \
         Twilio webhook: {public_url}/v1/t/{TENANT}/fn/sms, signed with {token}\n"
    ));
}

/// A line for the operator on stdout. A closed stdout (a supervisor that dropped it,
/// `plinth serve | head`) must not end the server, as `println!` would by panicking.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A one-shot command runs no hooks: it would claim the jobs of its writes and end.
    #[test]
    fn local_commands_run_no_hooks() {
        let cli = Cli::try_parse_from(["plinth", "--data-dir", "/nonexistent", "tenant", "list"])
            .expect("parses");
        let config = local_config(&cli.storage).expect("config");
        assert!(!config.functions.run_hooks);
        // A server runs them unless told not to.
        let serve = Cli::try_parse_from(["plinth", "serve"]).expect("parses");
        let Command::Serve(args) = serve.command else {
            panic!("not serve")
        };
        let config = Config::from_args(&serve.storage, &args).expect("config");
        assert!(config.functions.run_hooks);
    }
}
