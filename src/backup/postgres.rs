//! Backup and restore of a PostgreSQL database through `pg_dump -Fc` and `pg_restore`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::manifest::PG_DUMP_FILE;
use super::{BackupError, BackupResult, FileEntry, OnProgress, Progress, files};

/// Dumps the database into `into/plinth.dump`: one snapshot, whatever the nodes write
/// meanwhile (pg_dump reads in one repeatable-read transaction).
pub async fn take(
    url: &str,
    into: &Path,
    pg_dump: Option<&Path>,
    progress: OnProgress,
) -> BackupResult<(FileEntry, Option<i64>)> {
    let tool = find_tool("pg_dump", "--pg-dump", pg_dump)?;
    let schema_version = crate::store::backup::pg_schema_version(url).await?;
    let out = into.join(PG_DUMP_FILE);
    let mut cmd = command(&tool, url);
    cmd.arg("--format=custom")
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg("--file")
        .arg(&out);
    let watch = out.clone();
    run("pg_dump", cmd, move || {
        let bytes = std::fs::metadata(&watch).map(|m| m.len()).unwrap_or(0);
        progress(Progress::Dumped { bytes });
    })
    .await?;
    files::sync_file(&out)?;
    let (bytes, sha256) = files::digest(&out)?;
    Ok((
        FileEntry {
            path: PG_DUMP_FILE.into(),
            bytes,
            sha256,
            schema_version,
            tenant_id: None,
        },
        schema_version,
    ))
}

/// Restores a checked dump into the empty database at `url`, in one transaction: a
/// failure leaves the database as empty as it was.
pub async fn restore(
    from: &Path,
    url: &str,
    pg_restore: Option<&Path>,
    progress: OnProgress,
) -> BackupResult<()> {
    let tool = find_tool("pg_restore", "--pg-restore", pg_restore)?;
    let relations = crate::store::backup::pg_user_relations(url).await?;
    if relations > 0 {
        return Err(BackupError::Refused(format!(
            "the target database is not empty ({relations} tables, views or sequences): \
             restore into a new, empty database (CREATE DATABASE ...)"
        )));
    }
    let mut cmd = command(&tool, url);
    cmd.arg("--exit-on-error")
        .arg("--single-transaction")
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg(from.join(PG_DUMP_FILE));
    run("pg_restore", cmd, || {}).await?;
    let bytes = std::fs::metadata(from.join(PG_DUMP_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    progress(Progress::File {
        path: PG_DUMP_FILE,
        bytes,
    });
    Ok(())
}

/// The command with the database named: the URL without its password, which goes in
/// the environment (a command line is visible to every user of the machine).
fn command(tool: &Path, url: &str) -> tokio::process::Command {
    let (url, password) = without_password(url);
    let mut cmd = tokio::process::Command::new(tool);
    cmd.arg("--dbname")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd
}

/// Runs a tool to its end, calling `tick` every second meanwhile; its standard error
/// becomes the error's detail.
async fn run(
    tool: &'static str,
    mut cmd: tokio::process::Command,
    mut tick: impl FnMut(),
) -> BackupResult<()> {
    let mut child = cmd.spawn().map_err(|e| BackupError::Io {
        what: format!("cannot start {tool}"),
        cause: e,
    })?;
    let mut stderr = child.stderr.take();
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut text).await;
        }
        String::from_utf8_lossy(&text).trim().to_string()
    });
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    let waited = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = every.tick() => tick(),
        }
    };
    let status = waited.map_err(|e| BackupError::Io {
        what: format!("{tool} did not finish"),
        cause: e,
    })?;
    tick();
    let detail = errors.await.unwrap_or_default();
    if !status.success() {
        return Err(BackupError::Tool {
            tool,
            status: status.to_string(),
            detail: if detail.is_empty() {
                "no message".into()
            } else {
                detail
            },
        });
    }
    if !detail.is_empty() {
        tracing::warn!(tool, message = %detail, "said on standard error");
    }
    Ok(())
}

/// The named tool, else `name` on PATH.
fn find_tool(name: &'static str, flag: &str, given: Option<&Path>) -> BackupResult<PathBuf> {
    if let Some(path) = given {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        return Err(BackupError::ToolMissing {
            tool: name,
            hint: format!("{flag} {}: no such file", path.display()),
        });
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| BackupError::ToolMissing {
            tool: name,
            hint: format!(
                "it is not on PATH: install PostgreSQL's client tools (the server's major \
                 version or newer; Debian: postgresql-client) or pass {flag} PATH"
            ),
        })
}

/// The URL without its password, and the password (percent-decoded).
fn without_password(url: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return (url.to_string(), None);
    };
    let Some(password) = parsed.password().map(percent_decode) else {
        return (url.to_string(), None);
    };
    if parsed.set_password(None).is_err() {
        return (url.to_string(), None);
    }
    (parsed.to_string(), Some(password))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_leaves_the_url() {
        let (url, pw) =
            without_password("postgres://ann:p%40ss%2Bw@db.example:5432/plinth?sslmode=require");
        assert_eq!(url, "postgres://ann@db.example:5432/plinth?sslmode=require");
        assert_eq!(pw.as_deref(), Some("p@ss+w"));
        let (url, pw) = without_password("postgres://ann@db/plinth");
        assert_eq!((url.as_str(), pw), ("postgres://ann@db/plinth", None));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
