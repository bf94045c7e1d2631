//! The ACME directory on disk: `account.json` (the account's URL and private key, for
//! one CA) and `certificate.json` (the chain and its key as PEM, the CA and the names it
//! was issued for), each written whole to a temporary file and renamed, mode 0600.
//! A certificate for another CA or other names is not used: a new one is ordered.

use std::io::Write;
use std::path::{Path, PathBuf};

use instant_acme::AccountCredentials;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::AcmeError;

#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

#[derive(Serialize, Deserialize)]
struct StoredCertificate {
    directory: String,
    domains: Vec<String>,
    chain_pem: String,
    key_pem: String,
}

/// A certificate ready to serve, and when it expires (Unix seconds).
pub struct Loaded {
    pub key: CertifiedKey,
    pub not_after: i64,
}

const ACCOUNT: &str = "account.json";
const CERTIFICATE: &str = "certificate.json";

impl Cache {
    /// Creates the directory (0700) when missing.
    pub fn open(dir: &Path) -> Result<Cache, AcmeError> {
        let err = |e: std::io::Error| AcmeError::Dir {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The account kept for this CA, if any.
    pub fn account(&self, directory: &str) -> Result<Option<AccountCredentials>, AcmeError> {
        let Some(stored) = self.read::<StoredAccount>(ACCOUNT)? else {
            return Ok(None);
        };
        Ok((stored.directory == directory).then_some(stored.credentials))
    }

    pub fn save_account(
        &self,
        directory: &str,
        credentials: AccountCredentials,
    ) -> Result<(), AcmeError> {
        let stored = StoredAccount {
            directory: directory.to_string(),
            credentials,
        };
        self.write(ACCOUNT, &stored)
    }

    /// Removes the kept account (the CA no longer knows it).
    pub fn forget_account(&self) -> Result<(), AcmeError> {
        match std::fs::remove_file(self.path(ACCOUNT)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(self.corrupt(ACCOUNT, format!("cannot remove it ({e})")))
            }
            _ => Ok(()),
        }
    }

    /// The certificate kept for this CA and exactly these names, checked.
    pub fn certificate(
        &self,
        directory: &str,
        domains: &[String],
    ) -> Result<Option<Loaded>, AcmeError> {
        let Some(stored) = self.read::<StoredCertificate>(CERTIFICATE)? else {
            return Ok(None);
        };
        if stored.directory != directory || !same_names(&stored.domains, domains) {
            return Ok(None);
        }
        certified_key(&stored.chain_pem, &stored.key_pem)
            .map(Some)
            .map_err(|reason| self.corrupt(CERTIFICATE, reason))
    }

    /// Checks the chain and key, then keeps them; answers them ready to serve.
    pub fn save_certificate(
        &self,
        directory: &str,
        domains: &[String],
        chain_pem: String,
        key_pem: String,
    ) -> Result<Loaded, AcmeError> {
        let loaded = certified_key(&chain_pem, &key_pem).map_err(AcmeError::Issued)?;
        let stored = StoredCertificate {
            directory: directory.to_string(),
            domains: domains.to_vec(),
            chain_pem,
            key_pem,
        };
        self.write(CERTIFICATE, &stored)?;
        Ok(loaded)
    }

    fn corrupt(&self, name: &str, reason: String) -> AcmeError {
        AcmeError::Cache {
            path: self.path(name),
            reason,
        }
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, AcmeError> {
        let bytes = match std::fs::read(self.path(name)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.corrupt(name, format!("cannot read it ({e})"))),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.corrupt(name, format!("not what Plinth wrote ({e})")))
    }

    fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), AcmeError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| self.corrupt(name, format!("cannot encode it ({e})")))?;
        write_private(&self.path(name), &bytes)
            .map_err(|e| self.corrupt(name, format!("cannot write it ({e})")))
    }
}

fn same_names(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// Written whole or not at all, readable by the owner only: it holds private keys.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// The chain and key as rustls serves them, and the leaf's expiry.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Loaded, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain is not valid PEM ({e})"))?;
    let leaf = chain.first().ok_or("no certificate in the chain")?;
    let not_after =
        super::der::not_after(leaf).ok_or("the certificate's validity cannot be read")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("private key is not valid PEM ({e})"))?;
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("not a usable private key ({e})"))?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match()
        .map_err(|e| format!("the key is not the certificate's ({e})"))?;
    Ok(Loaded { key, not_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    const CA: &str = "https://ca.example/dir";

    #[test]
    fn a_certificate_is_kept_for_its_ca_and_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("acme")).unwrap();
        let names = vec!["a.example".to_string(), "b.example".to_string()];
        assert!(cache.certificate(CA, &names).unwrap().is_none(), "empty");
        let (chain, key) = issued(&["a.example", "b.example"]);
        let saved = cache.save_certificate(CA, &names, chain, key).unwrap();
        assert!(saved.not_after > chrono::Utc::now().timestamp());

        let loaded = cache.certificate(CA, &names).unwrap().expect("kept");
        assert_eq!(loaded.not_after, saved.not_after);
        assert_eq!(loaded.key.cert, saved.key.cert);
        let reversed = vec![names[1].clone(), names[0].clone()];
        assert!(
            cache.certificate(CA, &reversed).unwrap().is_some(),
            "order does not matter"
        );
        assert!(
            cache
                .certificate("https://other.example/dir", &names)
                .unwrap()
                .is_none()
        );
        assert!(cache.certificate(CA, &names[..1]).unwrap().is_none());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&cache.path(CERTIFICATE)), 0o600);
            assert_eq!(mode(&dir.path().join("acme")), 0o700);
        }
    }

    #[test]
    fn broken_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let names = vec!["a.example".to_string()];
        std::fs::write(cache.path(CERTIFICATE), "{not json").unwrap();
        let err = cache
            .certificate(CA, &names)
            .err()
            .expect("an error")
            .to_string();
        assert!(
            err.contains("certificate.json") && err.contains("not what Plinth wrote"),
            "{err}"
        );

        // A key that is not the certificate's is refused when saving (and loading).
        let (chain, _) = issued(&["a.example"]);
        let (_, other_key) = issued(&["a.example"]);
        let err = cache
            .save_certificate(CA, &names, chain, other_key)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("not the certificate's"), "{err}");
        let err = cache
            .save_certificate(CA, &names, "junk".into(), "junk".into())
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("no certificate"), "{err}");
    }
}
