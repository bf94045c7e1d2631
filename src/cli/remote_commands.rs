//! The admin commands on a remote server, each one or two admin API requests; what they
//! print is printed by the same code as the local commands' results (src/cli/print.rs).

use std::io::{IsTerminal, Read};

use reqwest::Method;
use serde_json::{Value, json};

use super::commands::*;
use super::remote::{Client, Problem, seg};
use super::{Command, deploy, local, print};

fn tenant_path(tenant: &str, rest: &str) -> String {
    format!("/admin/v1/tenants/{}{rest}", seg(tenant))
}

pub async fn run(c: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Tenant(cmd) => tenant(c, cmd).await,
        Command::Key(cmd) => key(c, cmd).await,
        Command::Secret(cmd) => secret(c, cmd).await,
        Command::Rules(cmd) => rules(c, cmd).await,
        Command::Users(cmd) => users(c, cmd).await,
        Command::Jobs(cmd) => jobs(c, cmd).await,
        Command::Deploy(args) => deploy::run_remote(c, args).await,
        Command::Admins(cmd) => admins(c, cmd).await,
        Command::ApiKey(cmd) => api_keys(c, cmd).await,
        Command::Usage {
            tenant,
            days,
            hours,
        } => {
            let query = match hours {
                Some(h) => format!("/usage?granularity=hour&hours={h}"),
                None => format!("/usage?days={days}"),
            };
            let r = c.get(&tenant_path(&tenant, &query)).await?;
            print::usage(&r);
            Ok(())
        }
        Command::Serve(_)
        | Command::Migrate
        | Command::Login(_)
        | Command::Logout
        | Command::Admin(_)
        | Command::SigningKey(_)
        | Command::Healthcheck(_)
        | Command::Backup(_)
        | Command::Restore(_) => unreachable!("handled by cli::run"),
    }
}

async fn tenant(c: &Client, cmd: TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create {
            slug,
            name,
            location,
        } => {
            let t = c
                .post(
                    "/admin/v1/tenants",
                    Some(json!({ "slug": slug, "name": name, "location": location })),
                )
                .await?;
            println!(
                "tenant created: {} ({}) at {}",
                str(&t["slug"]),
                str(&t["name"]),
                str(&t["location"])
            );
        }
        TenantCommand::Move { slug, to } => {
            eprintln!("moving tenant {slug} to {to} (its writes are refused until done)");
            let r = c
                .post(&tenant_path(&slug, "/move"), Some(json!({ "to": to })))
                .await?;
            super::transfer::print_moved(&slug, &r);
        }
        TenantCommand::List { json } => {
            let list = c.get("/admin/v1/tenants").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list["items"])?);
            } else {
                print::tenants(&list);
            }
        }
        TenantCommand::Suspend { slug } => {
            c.post(&tenant_path(&slug, "/suspend"), None).await?;
            println!("tenant suspended: {slug}");
        }
        TenantCommand::Resume { slug } => {
            c.post(&tenant_path(&slug, "/resume"), None).await?;
            println!("tenant resumed: {slug}");
        }
        TenantCommand::Delete { slug, yes } => {
            anyhow::ensure!(
                yes,
                "deleting a tenant destroys all its data; pass --yes to confirm"
            );
            c.delete(&tenant_path(&slug, "")).await?;
            println!("tenant deleted: {slug}");
        }
        TenantCommand::Export {
            slug,
            include_secrets,
        } => super::remote_transfer::export(c, &slug, include_secrets).await?,
        TenantCommand::Import { slugs, replace } => {
            super::remote_transfer::import(c, &slugs, replace).await?
        }
    }
    Ok(())
}

async fn key(c: &Client, cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Create { tenant, name } => {
            let k = c
                .post(
                    &tenant_path(&tenant, "/keys"),
                    Some(json!({ "name": name })),
                )
                .await?;
            eprintln!(
                "service key {} ({}) created; it is shown only this once:",
                str(&k["id"]),
                str(&k["name"])
            );
            println!("{}", str(&k["key"]));
        }
        KeyCommand::List { tenant } => print::keys(&c.get(&tenant_path(&tenant, "/keys")).await?),
        KeyCommand::Revoke { tenant, id } => {
            c.delete(&tenant_path(&tenant, &format!("/keys/{}", seg(&id))))
                .await?;
            println!("service key revoked: {id}");
        }
    }
    Ok(())
}

async fn secret(c: &Client, cmd: SecretCommand) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::Set { name, tenant } => {
            let value = read_secret_value(&name)?;
            let path = tenant_path(&tenant, &format!("/secrets/{}", seg(&name)));
            let req = c
                .request(Method::PUT, &path)
                .json(&json!({ "value": value }));
            let s = c.send(req).await?;
            println!("secret set: {} ({tenant})", str(&s["name"]));
        }
        SecretCommand::List { tenant } => {
            print::secrets(&c.get(&tenant_path(&tenant, "/secrets")).await?)
        }
        SecretCommand::Delete { name, tenant } => {
            c.delete(&tenant_path(&tenant, &format!("/secrets/{}", seg(&name))))
                .await?;
            println!("secret deleted: {name} ({tenant})");
        }
    }
    Ok(())
}

/// Standard input, less one trailing newline; never the command line (argv is visible
/// to every user of the machine).
fn read_secret_value(name: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        eprintln!("reading the value of {name} from standard input; end with Ctrl-D");
    }
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .map_err(|err| anyhow::anyhow!("cannot read the value from stdin: {err}"))?;
    Ok(local::strip_one_newline(&value).to_string())
}

async fn rules(c: &Client, cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Test { .. } => unreachable!("handled by cli::run"),
        RulesCommand::Deploy { file, tenant } => {
            let source = std::fs::read_to_string(&file)
                .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", file.display()))?;
            let req = c
                .request(Method::PUT, &tenant_path(&tenant, "/rules"))
                .header(reqwest::header::CONTENT_TYPE, "application/toml")
                .body(source);
            match c.send(req).await {
                Ok(r) => {
                    let n = r["collections"].as_array().map_or(0, Vec::len);
                    println!(
                        "rules version {} active for {tenant} ({n} collection(s))",
                        r["version"]
                    );
                    for w in r["warnings"].as_array().into_iter().flatten() {
                        eprintln!("warning: {}", str(w));
                    }
                }
                Err(e) => match e.downcast::<Problem>() {
                    Ok(p) if p.code == "invalid_rules" => {
                        let errors = p.body["errors"].as_array().cloned().unwrap_or_default();
                        print::rule_errors(&file, &errors);
                        anyhow::bail!(
                            "{} error(s); the active rule set is unchanged",
                            errors.len().max(1)
                        );
                    }
                    Ok(p) => return Err(p.into()),
                    Err(e) => return Err(e),
                },
            }
        }
        RulesCommand::Explain {
            tenant,
            collection,
            id,
            uid,
            op,
        } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("op", &op);
            if let Some(u) = &uid {
                q.append_pair("uid", u);
            }
            let path = tenant_path(
                &tenant,
                &format!(
                    "/collections/{}/docs/{}/explain?{}",
                    seg(&collection),
                    seg(&id),
                    q.finish()
                ),
            );
            print::explanation(&serde_json::from_value(c.get(&path).await?)?);
        }
    }
    Ok(())
}

async fn users(c: &Client, cmd: UsersCommand) -> anyhow::Result<()> {
    let user_path = |tenant: &str, id: &str, rest: &str| {
        tenant_path(tenant, &format!("/users/{}{rest}", seg(id)))
    };
    match cmd {
        UsersCommand::List {
            tenant,
            search,
            cursor,
            limit,
        } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(s) = &search {
                q.append_pair("search", s);
            }
            if let Some(s) = &cursor {
                q.append_pair("cursor", s);
            }
            if let Some(n) = limit {
                q.append_pair("limit", &n.to_string());
            }
            let q = q.finish();
            let q = if q.is_empty() { q } else { format!("?{q}") };
            print::users(&c.get(&tenant_path(&tenant, &format!("/users{q}"))).await?);
        }
        UsersCommand::Create {
            email,
            tenant,
            verified,
            password_stdin,
        } => {
            let password = password_stdin.then(local::read_password).transpose()?;
            let body = json!({"email": email, "password": password, "verified": verified});
            let u = c.post(&tenant_path(&tenant, "/users"), Some(body)).await?;
            println!("user created: {} ({})", str(&u["email"]), str(&u["id"]));
        }
        UsersCommand::Show { id, tenant } => {
            print::user(&c.get(&user_path(&tenant, &id, "")).await?)
        }
        UsersCommand::Disable { id, tenant } => {
            c.post(&user_path(&tenant, &id, "/disable"), None).await?;
            println!("user disabled: {id}");
        }
        UsersCommand::Enable { id, tenant } => {
            c.post(&user_path(&tenant, &id, "/enable"), None).await?;
            println!("user enabled: {id}");
        }
        UsersCommand::RevokeSessions { id, tenant } => {
            let r = c
                .post(&user_path(&tenant, &id, "/revoke-sessions"), None)
                .await?;
            println!("{} session(s) of {id} revoked", r["revoked_sessions"]);
        }
        UsersCommand::Delete { id, tenant, yes } => {
            anyhow::ensure!(yes, "deleting a user is final; pass --yes to confirm");
            c.delete(&user_path(&tenant, &id, "")).await?;
            println!("user deleted: {id}");
        }
    }
    Ok(())
}

async fn jobs(c: &Client, cmd: JobsCommand) -> anyhow::Result<()> {
    match cmd {
        JobsCommand::List { tenant, state } => {
            let q = state
                .map(|s| format!("&state={}", seg(&s)))
                .unwrap_or_default();
            let page = c
                .get(&tenant_path(&tenant, &format!("/jobs?limit=500{q}")))
                .await?;
            print::jobs(&page);
        }
        JobsCommand::Retry { id, tenant } => {
            c.post(
                &tenant_path(&tenant, &format!("/jobs/{}/retry", seg(&id))),
                None,
            )
            .await?;
            println!("job {id} queued again");
        }
    }
    Ok(())
}

async fn admins(c: &Client, cmd: AdminsCommand) -> anyhow::Result<()> {
    match cmd {
        AdminsCommand::List => print::admins(&c.get("/admin/v1/admins").await?),
        AdminsCommand::Create {
            email,
            role,
            tenants,
            ..
        } => {
            let password = local::read_password()?;
            let a = c
                .post(
                    "/admin/v1/admins",
                    Some(json!({
                        "email": email, "password": password, "role": role, "tenants": tenants
                    })),
                )
                .await?;
            println!(
                "admin created: {} ({}, {})",
                str(&a["email"]),
                str(&a["role"]),
                str(&a["id"])
            );
        }
        AdminsCommand::Update { id, role, tenants } => {
            let mut body = json!({});
            if let Some(r) = role {
                body["role"] = json!(r);
            }
            if let Some(t) = tenants {
                let t: Vec<String> = t.into_iter().filter(|s| !s.is_empty()).collect();
                body["tenants"] = json!(t);
            }
            let req = c
                .request(Method::PATCH, &format!("/admin/v1/admins/{}", seg(&id)))
                .json(&body);
            let a = c.send(req).await?;
            print::admins(&json!({ "items": [a] }));
        }
        AdminsCommand::Remove { id } => {
            c.delete(&format!("/admin/v1/admins/{}", seg(&id))).await?;
            println!("admin removed: {id}");
        }
        AdminsCommand::Invite {
            email,
            role,
            tenants,
        } => {
            let body = json!({"email": email, "role": role, "tenants": tenants});
            let i = c.post("/admin/v1/admins/invite", Some(body)).await?;
            println!(
                "invitation sent to {} ({}); the link works until {}",
                str(&i["email"]),
                str(&i["role"]),
                str(&i["expires_at"])
            );
        }
        AdminsCommand::Invitations => {
            print::invitations(&c.get("/admin/v1/admins/invite").await?);
        }
        AdminsCommand::Withdraw { id } => {
            c.delete(&format!("/admin/v1/admins/invite/{}", seg(&id)))
                .await?;
            println!("invitation withdrawn: {id}");
        }
    }
    Ok(())
}

async fn api_keys(c: &Client, cmd: ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::List => print::api_keys(&c.get("/admin/v1/api-keys").await?),
        ApiKeyCommand::Create {
            name,
            role,
            tenants,
            expires_at,
        } => {
            let mut body = json!({ "name": name, "role": role, "tenants": tenants });
            if let Some(t) = expires_at {
                body["expires_at"] = json!(t);
            }
            let k = c.post("/admin/v1/api-keys", Some(body)).await?;
            eprintln!(
                "API key {} ({}, {}) created; it is shown only this once:",
                str(&k["id"]),
                str(&k["name"]),
                str(&k["role"])
            );
            println!("{}", str(&k["key"]));
        }
        ApiKeyCommand::Revoke { id } => {
            c.delete(&format!("/admin/v1/api-keys/{}", seg(&id)))
                .await?;
            println!("API key revoked: {id}");
        }
    }
    Ok(())
}

fn str(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}
