//! The logins `plinth login` keeps: `$XDG_CONFIG_HOME/plinth/credentials.toml` (else
//! `~/.config/plinth/credentials.toml`), one entry per server plus the current one. The
//! file holds bearer credentials, so it is written 0600 in a 0700 directory, and replaced
//! atomically (a crash mid-write leaves the old file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Credentials {
    /// The server commands go to when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, Login>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Login {
    /// `token` (from email and password; it expires) or `api_key`.
    pub kind: String,
    pub credential: String,
    /// Who signed in (email, or the key's name), for `plinth login --status` and messages.
    #[serde(default)]
    pub who: String,
    /// RFC 3339; a token past it is not sent (the server would say 401 anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The private CA's PEM file (absolute) trusted for this server (`--ca-cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// Servers are compared by their base URL without a trailing slash.
pub fn normalize(server: &str) -> String {
    server.trim().trim_end_matches('/').to_string()
}

pub fn path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep logins"
                    )
                })?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(base.join("plinth").join("credentials.toml"))
}

impl Credentials {
    /// The stored logins; none when the file does not exist.
    pub fn load() -> anyhow::Result<Credentials> {
        let p = path()?;
        match std::fs::read_to_string(&p) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                anyhow::anyhow!("{} is not a valid credentials file: {e}", p.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
            Err(e) => anyhow::bail!("cannot read {}: {e}", p.display()),
        }
    }

    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let p = path()?;
        let dir = p.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        let text = toml::to_string(self)?;
        let tmp = dir.join(".credentials.toml.tmp");
        write_private(&tmp, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &p)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
        Ok(p)
    }

    /// The login for `server`, or for the current server when none is named.
    pub fn find(&self, server: Option<&str>) -> Option<(String, Login)> {
        let server = match server {
            Some(s) => normalize(s),
            None => self.current.clone()?,
        };
        let login = self.servers.get(&server)?.clone();
        Some((server, login))
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    // An existing directory keeps its mode unless we tighten it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| anyhow::anyhow!("cannot restrict {}: {e}", dir.display()))?;
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))
}

/// Created with mode 0600 from the start: never world-readable, not even for a moment.
#[cfg(unix)]
fn write_private(p: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let _ = std::fs::remove_file(p);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(p: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(p, bytes)
}
