//! `plinth login` and `plinth logout`: keep (or forget) a credential for a server in
//! the user's config dir, so later commands reach it without flags.

use std::io::{BufRead, IsTerminal, Read, Write};

use clap::Args;
use serde_json::{Value, json};

use super::RemoteArgs;
use super::credentials::{Credentials, Login, normalize};
use super::remote::{Client, Connection, check_url};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The admin's email (asked for when missing and standard input is a terminal).
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from standard input instead of asking for it.
    #[arg(long)]
    pub password_stdin: bool,
}

pub async fn login(remote: &RemoteArgs, args: LoginArgs) -> anyhow::Result<()> {
    let stored = Credentials::load()?;
    let server = match remote.server.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => normalize(s),
        None => stored.current.clone().ok_or_else(|| {
            anyhow::anyhow!("which server? `plinth login --server https://plinth.example.com`")
        })?,
    };
    check_url(&server)?;
    // The CA named now, else the one this server's login had: kept with the new login.
    let ca_cert =
        match &remote.ca_cert {
            Some(p) => Some(std::fs::canonicalize(p).map_err(|e| {
                anyhow::anyhow!("cannot read the CA certificate {}: {e}", p.display())
            })?),
            None => stored.find(Some(&server)).and_then(|(_, l)| l.ca_cert),
        };
    let at = Connection {
        server: server.clone(),
        credential: String::new(),
        stored: false,
        ca_cert,
    };
    let key = remote
        .api_key
        .as_deref()
        .or(remote.token.as_deref())
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let login = match key {
        Some(key) => {
            // Ask the server who the key is, so a mistyped or revoked key fails here.
            let me = whoami(&at, key).await?;
            let kind = if me["via"] == "api_key" {
                "api_key"
            } else {
                "token"
            };
            Login {
                kind: kind.into(),
                credential: key.to_string(),
                who: describe(&me),
                expires_at: None,
                ca_cert: at.ca_cert.clone(),
            }
        }
        None => password_login(&at, &args).await?,
    };
    let mut creds = stored;
    let who = login.who.clone();
    let until = login
        .expires_at
        .as_deref()
        .map(|t| format!(" until {t}"))
        .unwrap_or_default();
    creds.servers.insert(server.clone(), login);
    creds.current = Some(server.clone());
    let path = creds.save()?;
    eprintln!(
        "logged in to {server} as {who}{until} (saved in {})",
        path.display()
    );
    if let Some(ca) = &at.ca_cert {
        eprintln!("trusting the CA in {} for {server}", ca.display());
    }
    Ok(())
}

async fn password_login(at: &Connection, args: &LoginArgs) -> anyhow::Result<Login> {
    let server = at.server.as_str();
    let stdin_tty = std::io::stdin().is_terminal();
    let email = match &args.email {
        Some(e) => e.clone(),
        None if stdin_tty && !args.password_stdin => prompt("Email: ")?,
        None => anyhow::bail!("give --email (and --password-stdin, or --api-key for CI)"),
    };
    let password = if args.password_stdin {
        let mut p = String::new();
        std::io::stdin()
            .read_to_string(&mut p)
            .map_err(|e| anyhow::anyhow!("cannot read the password from stdin: {e}"))?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else if stdin_tty {
        prompt_hidden("Password: ")?
    } else {
        anyhow::bail!("standard input is not a terminal: pass --password-stdin")
    };
    // Signing in needs no credential: the client is built with an empty one.
    let anon = Client::new(at.clone())?;
    let answer = anon
        .send(
            anon.http()
                .post(anon.url("/admin/v1/auth/login"))
                .json(&json!({ "email": email, "password": password })),
        )
        .await?;
    let token = answer["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{server} answered the login without a token"))?
        .to_string();
    let secs = answer["expires_in"].as_i64().unwrap_or(0);
    let expires_at = (secs > 0).then(|| {
        (chrono::Utc::now() + chrono::Duration::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let me = whoami(at, &token).await?;
    Ok(Login {
        kind: "token".into(),
        credential: token,
        who: describe(&me),
        expires_at,
        ca_cert: at.ca_cert.clone(),
    })
}

async fn whoami(at: &Connection, credential: &str) -> anyhow::Result<Value> {
    let client = Client::new(Connection {
        credential: credential.to_string(),
        ..at.clone()
    })?;
    client.get("/admin/v1/auth/session").await
}

fn describe(me: &Value) -> String {
    let a = &me["admin"];
    let tenants = a["tenants"]
        .as_array()
        .filter(|t| !t.is_empty())
        .map(|t| {
            let names: Vec<_> = t.iter().filter_map(Value::as_str).collect();
            format!(" of {}", names.join(","))
        })
        .unwrap_or_default();
    let via = if me["via"] == "api_key" {
        " with an API key"
    } else {
        ""
    };
    format!(
        "{} ({}{tenants}){via}",
        a["email"].as_str().unwrap_or("?"),
        a["role"].as_str().unwrap_or("?")
    )
}

pub fn logout(server: Option<&str>) -> anyhow::Result<()> {
    let mut creds = Credentials::load()?;
    let server = match server {
        Some(s) => normalize(s),
        None => creds
            .current
            .clone()
            .ok_or_else(|| anyhow::anyhow!("not logged in to any server"))?,
    };
    let Some(login) = creds.servers.remove(&server) else {
        anyhow::bail!("not logged in to {server}");
    };
    if creds.current.as_deref() == Some(server.as_str()) {
        creds.current = None;
    }
    creds.save()?;
    eprintln!("logged out of {server}");
    if login.kind == "api_key" {
        // Forgetting is not revoking: the key may be in use elsewhere (CI).
        eprintln!("the API key itself still works until revoked: plinth api-key revoke ID");
    }
    Ok(())
}

fn prompt(label: &str) -> anyhow::Result<String> {
    Ok(read_line(label)?.trim().to_string())
}

/// One line from standard input, without its line ending (spaces are kept: they may be
/// part of a password).
fn read_line(label: &str) -> anyhow::Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a line from the terminal with echo off (restored even when reading fails).
#[cfg(unix)]
fn prompt_hidden(label: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let before = tcgetattr(&stdin)?;
    let mut quiet = before.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let line = read_line(label);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &before);
    eprintln!();
    line
}

#[cfg(not(unix))]
fn prompt_hidden(label: &str) -> anyhow::Result<String> {
    anyhow::bail!("cannot hide the password here ({label}): use --password-stdin")
}
