//! The settings of `serve --acme-domain` (automatic certificates, the `acme` module),
//! checked.

use std::path::PathBuf;
use std::time::Duration;

use super::ServeArgs;

/// Let's Encrypt's production directory, the default ACME CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Automatic certificates of `serve --acme-domain` (the `acme` module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names on the certificate, lower case, the first one the public URL's.
    pub domains: Vec<String>,
    pub email: Option<String>,
    /// Where the account key and the certificate are kept.
    pub dir: PathBuf,
    /// The CA's directory URL.
    pub directory: String,
    /// An extra root trusted for the CA's HTTPS.
    pub ca_root: Option<PathBuf>,
    /// A certificate with less validity left than this is renewed.
    pub renew_before: Duration,
    /// How often the certificate's validity is checked.
    pub check_every: Duration,
}

/// The ACME settings, when a domain is given (empty values count as not given, as for
/// the TLS files).
pub(super) fn acme_settings(serve: &ServeArgs) -> anyhow::Result<Option<AcmeSettings>> {
    // Checked even with ACME off, so a typo shows before the day it is switched on.
    let directory = match serve.acme_directory.trim() {
        "" => LETS_ENCRYPT.to_string(),
        d => d.to_string(),
    };
    anyhow::ensure!(
        directory.starts_with("https://") || directory.starts_with("http://"),
        "--acme-directory (PLINTH_ACME_DIRECTORY) {directory:?} is not an http(s) URL"
    );
    let mut domains = Vec::new();
    for d in serve.acme_domains.iter().map(|d| d.trim()) {
        if d.is_empty() {
            continue;
        }
        let d = check_domain(d).map_err(|e| anyhow::anyhow!("--acme-domain {d:?}: {e}"))?;
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    if domains.is_empty() {
        return Ok(None);
    }
    let dir = serve
        .acme_dir
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--acme-domain needs --acme-dir (PLINTH_ACME_DIR): the directory that keeps \
                 the ACME account key and the certificate across restarts"
            )
        })?;
    Ok(Some(AcmeSettings {
        domains,
        email: serve
            .acme_email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string),
        dir,
        directory,
        ca_root: serve
            .acme_ca_root
            .clone()
            .filter(|p| !p.as_os_str().is_empty()),
        renew_before: Duration::from_secs(30 * 24 * 3600),
        check_every: Duration::from_secs(12 * 3600),
    }))
}

/// A DNS name the CA can validate by TLS-ALPN-01: letters, digits, `-` and `.`, no
/// wildcard (that needs DNS-01), no scheme or port. Answered in lower case.
fn check_domain(d: &str) -> Result<String, &'static str> {
    let d = d.to_ascii_lowercase();
    if d.starts_with("*.") {
        return Err("wildcard names need the DNS-01 challenge, which Plinth does not answer");
    }
    if d.len() > 253
        || !d
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err("not a DNS name (letters, digits, '-' and '.' only; no scheme or port)");
    }
    if d.split('.').any(|label| {
        label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-')
    }) {
        return Err("not a DNS name (an empty, too long or '-'-edged label)");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, wildcard_warning};
    use crate::store::Location;

    fn acme_config(listen: &str) -> Config {
        let mut c = Config::new(Location::SqliteDir("/tmp".into()), listen.parse().unwrap());
        c.acme = Some(AcmeSettings {
            domains: vec!["api.example.com".into(), "www.example.com".into()],
            email: None,
            dir: "/data/acme".into(),
            directory: LETS_ENCRYPT.into(),
            ca_root: None,
            renew_before: Duration::from_secs(1),
            check_every: Duration::from_secs(1),
        });
        c
    }

    #[test]
    fn the_public_url_is_the_first_name() {
        let on_443 = acme_config("0.0.0.0:443");
        assert_eq!(on_443.derived_public_url(), "https://api.example.com");
        assert!(on_443.serves_tls());
        assert_eq!(wildcard_warning(&on_443), None, "the derived URL is right");
        let on_8080 = acme_config("0.0.0.0:8080");
        assert_eq!(on_8080.derived_public_url(), "https://api.example.com:8080");
        // Mapped from 443 in a container, say: the derived URL is likely wrong.
        let mut c = on_8080;
        c.public_url = c.derived_public_url();
        let warning = wildcard_warning(&c).expect("a warning");
        assert!(
            warning.contains("https://api.example.com:8080"),
            "{warning}"
        );
    }

    #[test]
    fn domains_are_checked_and_lowered() {
        assert_eq!(check_domain("API.Example.com").unwrap(), "api.example.com");
        assert_eq!(check_domain("localhost").unwrap(), "localhost");
        assert_eq!(check_domain("a-1.b2.example").unwrap(), "a-1.b2.example");
        for bad in [
            "*.example.com",
            "https://api.example.com",
            "api.example.com:443",
            "api..example.com",
            ".example.com",
            "example.com.",
            "-api.example.com",
            "api-.example.com",
            "exa mple.com",
            "bücher.example",
        ] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
        assert!(check_domain(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(check_domain(&format!("{}.com", "a".repeat(63))).is_ok());
    }
}
