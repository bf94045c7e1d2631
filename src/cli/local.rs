//! Commands on the local data (the SQLite data dir or the PostgreSQL database), through
//! the same services as the admin API, so they are audited the same way (as `cli`).

use std::io::Read;

use serde_json::{Value, json};

use super::commands::*;
use super::{Command, print};
use crate::admin::Actor;
use crate::http::dto::{KeyDto, SecretDto, TenantDto, UserDto, UserPage};
use crate::state::AppState;
use crate::usage::Granularity;

/// Runs a rules test file; needs no storage.
pub fn rules_test(file: &std::path::Path) -> anyhow::Result<()> {
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
pub fn strip_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

/// A password from standard input, less its trailing line ends; never the command line
/// (argv is visible to every user of the machine).
pub fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| anyhow::anyhow!("cannot read the password from stdin: {e}"))?;
    Ok(password.trim_end_matches(['\n', '\r']).to_string())
}

/// The operator running the CLI owns the server: a fault of its own is shown with its
/// cause, where an HTTP client would only be told "internal server error".
fn err(e: crate::admin::AdminError) -> anyhow::Error {
    match e.kind() {
        crate::fault::Kind::Internal | crate::fault::Kind::Unavailable => anyhow::anyhow!("{e}"),
        _ => anyhow::anyhow!(e.client_detail()),
    }
}

async fn users(state: &AppState, actor: &Actor, cmd: UsersCommand) -> anyhow::Result<()> {
    let admin = &state.admin;
    match cmd {
        UsersCommand::List {
            tenant,
            search,
            cursor,
            limit,
        } => {
            let page = admin
                .list_users(actor, &tenant, search.as_deref(), cursor.as_deref(), limit)
                .await
                .map_err(err)?;
            print::users(&serde_json::to_value(UserPage::from(page))?);
        }
        UsersCommand::Create {
            email,
            tenant,
            verified,
            password_stdin,
        } => {
            let password = password_stdin.then(read_password).transpose()?;
            let u = admin
                .create_user(actor, &tenant, &email, password.as_deref(), verified)
                .await
                .map_err(err)?;
            println!("user created: {} ({})", u.email, u.id);
        }
        UsersCommand::Show { id, tenant } => {
            let u = admin.get_user(actor, &tenant, &id).await.map_err(err)?;
            print::user(&serde_json::to_value(UserDto::from(u))?);
        }
        UsersCommand::Disable { id, tenant } => {
            admin
                .set_user_disabled(actor, &tenant, &id, true)
                .await
                .map_err(err)?;
            println!("user disabled: {id}");
        }
        UsersCommand::Enable { id, tenant } => {
            admin
                .set_user_disabled(actor, &tenant, &id, false)
                .await
                .map_err(err)?;
            println!("user enabled: {id}");
        }
        UsersCommand::RevokeSessions { id, tenant } => {
            let n = admin
                .revoke_user_sessions(actor, &tenant, &id)
                .await
                .map_err(err)?;
            println!("{n} session(s) of {id} revoked");
        }
        UsersCommand::Delete { id, tenant, yes } => {
            anyhow::ensure!(yes, "deleting a user is final; pass --yes to confirm");
            admin.delete_user(actor, &tenant, &id).await.map_err(err)?;
            println!("user deleted: {id}");
        }
    }
    Ok(())
}

pub async fn run(state: &AppState, command: Command) -> anyhow::Result<()> {
    let admin = &state.admin;
    let actor = Actor::cli();
    // Held until the command ends: no move copies the tenant between the command's check
    // of its mark and its write (`store::change_lock`).
    let _lock = match changed_tenants(&command) {
        Some(slugs) => admin.lock_for_local_change(&slugs).await.map_err(err)?,
        None => None,
    };
    match command {
        Command::Serve(_)
        | Command::Deploy(_)
        | Command::Healthcheck(_)
        | Command::Login(_)
        | Command::Logout
        | Command::Admins(_)
        | Command::ApiKey(_)
        | Command::Backup(_)
        | Command::Restore(_) => {
            unreachable!("handled by cli::run")
        }
        Command::Migrate => {
            // Opening the store ran every pending migration.
            println!("migrations are up to date");
        }
        Command::Admin(AdminCommand::Create { email, .. }) => {
            let password = read_password()?;
            let row = admin.create_admin(&email, &password).await.map_err(err)?;
            println!("admin created: {} ({})", row.email, row.id);
        }
        Command::Users(cmd) => users(state, &actor, cmd).await?,
        Command::Usage {
            tenant,
            days,
            hours,
        } => {
            let report = match hours {
                Some(h) => admin.usage(&tenant, Granularity::Hour, None, Some(h)),
                None => admin.usage(&tenant, Granularity::Day, Some(days), None),
            }
            .await
            .map_err(err)?;
            let mut report = serde_json::to_value(&report)?;
            report["tenant"] = json!(tenant);
            print::usage(&report);
        }
        Command::SigningKey(SigningKeyCommand::Rotate) => {
            let kid = admin.rotate_signing_key(&actor).await.map_err(err)?;
            println!(
                "new signing key: {kid} (restart servers to sign with it; old keys still verify)"
            );
        }
        Command::Tenant(cmd) => tenants(state, &actor, cmd).await?,
        Command::Key(cmd) => keys(state, &actor, cmd).await?,
        Command::Secret(cmd) => secrets(state, &actor, cmd).await?,
        Command::Rules(cmd) => rules(state, &actor, cmd).await?,
        Command::Jobs(cmd) => jobs(state, &actor, cmd).await?,
    }
    Ok(())
}

/// The tenants whose data kept at their storage location (what a move copies) a local
/// command changes, and so whose change lock it holds; `None` for a command changing
/// none. Matched whole: a new command must be placed on one side.
fn changed_tenants(command: &Command) -> Option<Vec<&str>> {
    fn one(slug: &str) -> Option<Vec<&str>> {
        Some(vec![slug])
    }
    match command {
        Command::Tenant(t) => match t {
            TenantCommand::Delete { slug, .. } => one(slug),
            TenantCommand::Import { slugs, .. } => Some(slugs.iter().map(String::as_str).collect()),
            // A new tenant, reads, the control row only, and the move, which takes the
            // lock itself.
            TenantCommand::Create { .. }
            | TenantCommand::List { .. }
            | TenantCommand::Suspend { .. }
            | TenantCommand::Resume { .. }
            | TenantCommand::Export { .. }
            | TenantCommand::Move { .. } => None,
        },
        Command::Key(k) => match k {
            KeyCommand::Create { tenant, .. } | KeyCommand::Revoke { tenant, .. } => one(tenant),
            KeyCommand::List { .. } => None,
        },
        Command::Secret(s) => match s {
            SecretCommand::Set { tenant, .. } | SecretCommand::Delete { tenant, .. } => one(tenant),
            SecretCommand::List { .. } => None,
        },
        Command::Users(u) => match u {
            UsersCommand::Create { tenant, .. }
            | UsersCommand::Disable { tenant, .. }
            | UsersCommand::Enable { tenant, .. }
            | UsersCommand::RevokeSessions { tenant, .. }
            | UsersCommand::Delete { tenant, .. } => one(tenant),
            UsersCommand::List { .. } | UsersCommand::Show { .. } => None,
        },
        Command::Rules(r) => match r {
            RulesCommand::Deploy { tenant, .. } => one(tenant),
            RulesCommand::Test { .. } | RulesCommand::Explain { .. } => None,
        },
        Command::Jobs(j) => match j {
            JobsCommand::Retry { tenant, .. } => one(tenant),
            JobsCommand::List { .. } => None,
        },
        // `deploy` takes the lock in `cli::deploy`; the rest is no tenant's data.
        Command::Serve(_)
        | Command::Migrate
        | Command::Login(_)
        | Command::Logout
        | Command::Admin(_)
        | Command::Admins(_)
        | Command::ApiKey(_)
        | Command::Usage { .. }
        | Command::SigningKey(_)
        | Command::Deploy(_)
        | Command::Backup(_)
        | Command::Restore(_)
        | Command::Healthcheck(_) => None,
    }
}

async fn tenants(state: &AppState, actor: &Actor, cmd: TenantCommand) -> anyhow::Result<()> {
    let admin = &state.admin;
    match cmd {
        TenantCommand::Create {
            slug,
            name,
            location,
        } => {
            let slug = crate::admin::parse_slug(&slug).map_err(err)?;
            let t = admin
                .create_tenant_at(actor, &slug, &name, location.as_deref())
                .await
                .map_err(err)?;
            println!("tenant created: {} ({}) at {}", t.slug, t.name, t.location);
        }
        TenantCommand::Move { slug, to } => {
            super::transfer::move_tenant(admin, actor, &slug, &to).await?;
        }
        TenantCommand::List { json } => {
            let tenants = admin.list_tenants().await.map_err(err)?;
            let items: Vec<TenantDto> = tenants.into_iter().map(TenantDto::from).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                print::tenants(&json!({ "items": items }));
            }
        }
        TenantCommand::Suspend { slug } => {
            admin.set_suspended(actor, &slug, true).await.map_err(err)?;
            println!("tenant suspended: {slug}");
        }
        TenantCommand::Resume { slug } => {
            admin
                .set_suspended(actor, &slug, false)
                .await
                .map_err(err)?;
            println!("tenant resumed: {slug}");
        }
        TenantCommand::Delete { slug, yes } => {
            anyhow::ensure!(
                yes,
                "deleting a tenant destroys all its data; pass --yes to confirm"
            );
            admin.delete_tenant(actor, &slug).await.map_err(err)?;
            println!("tenant deleted: {slug}");
        }
        TenantCommand::Export {
            slug,
            include_secrets,
        } => super::transfer::export(admin, actor, &slug, include_secrets).await?,
        TenantCommand::Import { slugs, replace } => {
            super::transfer::import(state, actor, &slugs, replace).await?
        }
    }
    Ok(())
}

async fn keys(state: &AppState, actor: &Actor, cmd: KeyCommand) -> anyhow::Result<()> {
    let admin = &state.admin;
    match cmd {
        KeyCommand::Create { tenant, name } => {
            let (row, key) = admin.create_key(actor, &tenant, &name).await.map_err(err)?;
            eprintln!(
                "service key {} ({}) created; it is shown only this once:",
                row.id, row.name
            );
            println!("{key}");
        }
        KeyCommand::List { tenant } => {
            let keys = admin.list_keys(actor, &tenant).await.map_err(err)?;
            let items: Vec<KeyDto> = keys.into_iter().map(KeyDto::from).collect();
            print::keys(&json!({ "items": items }));
        }
        KeyCommand::Revoke { tenant, id } => {
            admin.revoke_key(actor, &tenant, &id).await.map_err(err)?;
            println!("service key revoked: {id}");
        }
    }
    Ok(())
}

async fn secrets(state: &AppState, actor: &Actor, cmd: SecretCommand) -> anyhow::Result<()> {
    let admin = &state.admin;
    match cmd {
        SecretCommand::Set { name, tenant } => {
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
                .set_secret(actor, &tenant, &name, value)
                .await
                .map_err(err)?;
            println!("secret set: {} ({tenant})", info.name);
        }
        SecretCommand::List { tenant } => {
            let secrets = admin.list_secrets(actor, &tenant).await.map_err(err)?;
            let items: Vec<SecretDto> = secrets.into_iter().map(SecretDto::from).collect();
            print::secrets(&json!({ "items": items }));
        }
        SecretCommand::Delete { name, tenant } => {
            admin
                .delete_secret(actor, &tenant, &name)
                .await
                .map_err(err)?;
            println!("secret deleted: {name} ({tenant})");
        }
    }
    Ok(())
}

async fn rules(state: &AppState, actor: &Actor, cmd: RulesCommand) -> anyhow::Result<()> {
    let admin = &state.admin;
    match cmd {
        RulesCommand::Test { .. } => unreachable!("handled by run"),
        RulesCommand::Deploy { file, tenant } => {
            let source = std::fs::read_to_string(&file)
                .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", file.display()))?;
            match admin.install_rules(actor, &tenant, &source).await {
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
                    let errors: Vec<Value> = errors
                        .iter()
                        .map(|x| serde_json::to_value(x).unwrap_or_default())
                        .collect();
                    print::rule_errors(&file, &errors);
                    anyhow::bail!(
                        "{} error(s); the active rule set is unchanged",
                        errors.len()
                    );
                }
                Err(other) => return Err(err(other)),
            }
        }
        RulesCommand::Explain {
            tenant,
            collection,
            id,
            uid,
            op,
        } => {
            let op = crate::rules::Operation::parse_explainable(&op)
                .map_err(|m| anyhow::anyhow!("--op: {m}"))?;
            let scope = admin.cli_scope(&tenant).await.map_err(err)?;
            let r = state
                .docs
                .explain_as(
                    &scope,
                    crate::names::parse_doc(&collection, &id),
                    op,
                    uid.as_deref(),
                )
                .await
                .map_err(|err| anyhow::anyhow!(err.client_detail()))?;
            print::explanation(&r);
        }
    }
    Ok(())
}

async fn jobs(state: &AppState, actor: &Actor, cmd: JobsCommand) -> anyhow::Result<()> {
    let admin = &state.admin;
    match cmd {
        JobsCommand::List { tenant, state } => {
            let page = admin
                .list_jobs(actor, &tenant, state.as_deref(), None, Some(500))
                .await
                .map_err(err)?;
            print::jobs(&json!({ "items": page.items }));
        }
        JobsCommand::Retry { id, tenant } => {
            admin.retry_job(actor, &tenant, &id).await.map_err(err)?;
            println!("job {id} queued again (a running server picks it up within 30 s)");
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
