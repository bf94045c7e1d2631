//! The CLI's HTTP client for a remote server's admin API: one bearer credential (an admin
//! token or an admin API key), JSON in and out, and server refusals turned into errors
//! that show the problem's `detail` and `code`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::credentials::{Credentials, normalize};

/// A server and the credential to send it, as chosen by [`resolve`].
#[derive(Clone, Debug)]
pub struct Connection {
    pub server: String,
    pub credential: String,
    /// Where the credential came from, for the hint on a 401.
    pub stored: bool,
    /// A private CA to trust for the server's certificate (PEM file).
    pub ca_cert: Option<PathBuf>,
}

/// The credential options every command takes; see [`resolve`] for the rule.
pub struct Selection<'a> {
    pub server: Option<&'a str>,
    pub token: Option<&'a str>,
    pub api_key: Option<&'a str>,
    /// `--ca-cert` / `PLINTH_CA_CERT`.
    pub ca_cert: Option<&'a Path>,
    /// `--data-dir`, `--database-url` or their environment variables were given.
    pub local_explicit: bool,
}

/// Local or remote? Remote when a server is named (`--server`, `PLINTH_SERVER`); else
/// local when local storage is named (`--data-dir`, `--database-url` or their
/// variables); else remote to the server of the last `plinth login` if there is one;
/// else local (`./plinth-data`), as before logins existed. The credential: `--token`
/// (`PLINTH_ADMIN_TOKEN`), else `--api-key` (`PLINTH_API_KEY`), else the stored login
/// for that server. The CA to trust besides the system's: `--ca-cert` (`PLINTH_CA_CERT`),
/// else the one stored with that server's login.
pub fn resolve(sel: &Selection) -> anyhow::Result<Option<Connection>> {
    let given = sel
        .token
        .or(sel.api_key)
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_string());
    let server = match sel.server.filter(|s| !s.trim().is_empty()) {
        Some(s) => normalize(s),
        None if sel.local_explicit => return Ok(None),
        None => match Credentials::load()?.current {
            Some(current) => current,
            None => return Ok(None),
        },
    };
    check_url(&server)?;
    // With a credential given, a login is only asked for its CA: an unreadable
    // credentials file must not stop a command that needs none of it (CI).
    let stored = match given {
        Some(_) => Credentials::load().ok().and_then(|c| c.find(Some(&server))),
        None => Credentials::load()?.find(Some(&server)),
    };
    let ca_cert = sel
        .ca_cert
        .map(Path::to_path_buf)
        .or_else(|| stored.as_ref().and_then(|(_, l)| l.ca_cert.clone()));
    if let Some(credential) = given {
        return Ok(Some(Connection {
            server,
            credential,
            stored: false,
            ca_cert,
        }));
    }
    let Some((server, login)) = stored else {
        anyhow::bail!(
            "not logged in to {server}: run `plinth login --server {server}` \
             (or pass --api-key / set PLINTH_API_KEY)"
        );
    };
    if let Some(exp) = &login.expires_at
        && let Ok(t) = chrono::DateTime::parse_from_rfc3339(exp)
        && t < chrono::Utc::now()
    {
        anyhow::bail!(
            "your login to {server} expired at {exp}: run `plinth login --server {server}` again"
        );
    }
    Ok(Some(Connection {
        server,
        credential: login.credential,
        stored: true,
        ca_cert,
    }))
}

pub fn check_url(server: &str) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(server).map_err(|e| {
        anyhow::anyhow!("{server:?} is not a server URL ({e}); e.g. https://plinth.example.com")
    })?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https") && url.host().is_some(),
        "{server:?} is not a server URL: it must start with http:// or https://"
    );
    Ok(())
}

/// A refusal from the server (problem+json), or an answer that was not one.
#[derive(Debug)]
pub struct Problem {
    pub status: u16,
    pub code: String,
    pub detail: String,
    /// The whole problem document (validation `errors`, `fields`, ...).
    pub body: Value,
    hint: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, HTTP {})", self.detail, self.code, self.status)?;
        if let Some(fields) = self.body.get("fields").and_then(Value::as_object) {
            for (k, v) in fields {
                write!(f, "\n  {k}: {}", v.as_str().unwrap_or(&v.to_string()))?;
            }
        }
        if let Some(h) = &self.hint {
            write!(f, "\n{h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

pub struct Client {
    pub conn: Connection,
    http: reqwest::Client,
}

impl Client {
    pub fn new(conn: Connection) -> anyhow::Result<Client> {
        // reqwest's rustls has no crypto provider of its own here: use ring, which sqlx
        // already builds. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("plinth-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &conn.ca_cert {
            builder = builder.tls_certs_merge(read_ca(path)?);
        }
        Ok(Client {
            conn,
            http: builder.build()?,
        })
    }

    /// The bare HTTP client, for the one request made without a credential (login).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.conn.server)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.conn.credential)
    }

    /// Sends, and gives the JSON answer (`null` for an empty one) or the server's refusal.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let res = self.send_raw(req).await?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| anyhow::Error::new(e).context("the answer was cut off"))?;
        self.json_of(status, &text)
    }

    /// Sends; a successful answer is handed back unread (to stream its body), a refusal
    /// becomes the error.
    pub async fn send_raw(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let res = req.send().await.map_err(|e| {
            anyhow::Error::new(e).context(format!("cannot reach {}", self.conn.server))
        })?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let text = res
            .text()
            .await
            .map_err(|e| anyhow::Error::new(e).context("the answer was cut off"))?;
        let body = self.json_of(status, &text)?;
        let code = body["code"].as_str().unwrap_or("unknown").to_string();
        let detail = body["detail"]
            .as_str()
            .or(body["title"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("the server answered HTTP {status}"));
        let hint = match status.as_u16() {
            401 if self.conn.stored => Some(format!(
                "the stored login for {} was refused: run `plinth login --server {}` again",
                self.conn.server, self.conn.server
            )),
            403 if code == "insufficient_role" => {
                Some("your role does not allow this (see `plinth login` for who you are)".into())
            }
            _ => None,
        };
        Err(Problem {
            status: status.as_u16(),
            code,
            detail,
            body,
            hint,
        }
        .into())
    }

    fn json_of(&self, status: reqwest::StatusCode, text: &str) -> anyhow::Result<Value> {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text).map_err(|_| {
            let start: String = text.chars().take(120).collect();
            anyhow::anyhow!(
                "{} answered HTTP {status} with something that is not JSON \
                 (is it a Plinth server?): {start}",
                self.conn.server
            )
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let req = self.request(Method::POST, path);
        self.send(match body {
            Some(b) => req.json(&b),
            None => req,
        })
        .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(Method::DELETE, path)).await
    }
}

/// The certificates of a CA file (PEM; a bundle may hold several).
pub fn read_ca(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the CA certificate {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow::anyhow!("{} is not a PEM certificate file: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        path.display()
    );
    Ok(certs)
}

/// A path segment from user input (a slug, an id, a name), percent-encoded.
pub fn seg(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
