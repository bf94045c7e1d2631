//! Tenant export and import (`plinth tenant export|import`): a tenant's documents, rule
//! sets, deploys, users (password hashes included), service keys (hashes) and, when
//! asked, its secrets in clear, as one NDJSON file (`format`). An import checks the
//! whole file first, then creates the tenant and writes everything in one transaction;
//! on any error it deletes the tenant again, so nothing is left behind. `replace` swaps
//! an existing tenant's data for a file's in one transaction; `spool` writes an export
//! to an unnamed temporary file for the admin API to send.

pub mod format;
mod replace;
mod spool;

pub use spool::Spooled;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Actor, AdminError, AdminService};
use crate::store::{BackendKind, ExportPart, SealedSecret, TenantImport, TenantTables, now_ms};
use crate::tenancy::Scope;
use format::{DocumentLine, Header, Line, SecretLine, TenantSettings};

/// Documents read per page while exporting.
const PAGE: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The file is not a complete, unaltered export: nothing was written.
    #[error("refusing the file: {0}")]
    BadFile(String),
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The cause is in the message, not `source()` (see `StoreError`).
    #[error("writing the export: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for TransferError {
    fn from(e: std::io::Error) -> Self {
        TransferError::Io(e)
    }
}

impl TransferError {
    /// The stable code of a refused file or a failed write; an admin error says its own.
    pub fn code(&self) -> &'static str {
        match self {
            TransferError::BadFile(_) => "invalid_export",
            TransferError::Admin(a) => a.code(),
            TransferError::Io(_) => "internal",
        }
    }

    pub fn kind(&self) -> crate::fault::Kind {
        match self {
            TransferError::BadFile(_) => crate::fault::Kind::Invalid,
            TransferError::Admin(a) => a.kind(),
            TransferError::Io(_) => crate::fault::Kind::Internal,
        }
    }
}

impl From<crate::store::StoreError> for TransferError {
    fn from(e: crate::store::StoreError) -> Self {
        TransferError::Admin(e.into())
    }
}

type Result<T> = std::result::Result<T, TransferError>;

/// What to export.
pub struct ExportOptions {
    pub include_secrets: bool,
}

impl AdminService {
    /// Writes the tenant `slug` to `out`; `progress` is told the documents written so
    /// far after each page. Returns the record counts.
    ///
    /// Everything but the secrets comes from one read snapshot of the tenant's data.
    pub async fn export_tenant(
        &self,
        actor: &Actor,
        slug: &str,
        opts: &ExportOptions,
        out: impl std::io::Write,
        mut progress: impl FnMut(u64),
    ) -> Result<BTreeMap<String, u64>> {
        let scope = self.scope(actor, slug).await?;
        let tenant = scope.tenant().clone();
        let listed = self.secrets.list(&scope).await.map_err(AdminError::from)?;
        // Decrypted only when asked for: a secret this server cannot open must not stop
        // an export that leaves secrets out.
        let secrets = match opts.include_secrets {
            true => self.secrets.env(&scope).await.map_err(AdminError::from)?,
            false => Default::default(),
        };
        let header = Header {
            format: format::FORMAT.into(),
            version: format::VERSION,
            source_backend: match self.store.kind() {
                BackendKind::Sqlite => "sqlite",
                BackendKind::Postgres => "postgres",
            }
            .into(),
            exported_at: now_ms(),
            tenant: TenantSettings {
                slug: tenant.slug.clone(),
                name: tenant.name.clone(),
                suspended: tenant.suspended,
                cors_origins: tenant.cors_origins.clone(),
            },
            secrets_included: opts.include_secrets,
            secrets_count: listed.len(),
        };
        let mut w = format::Writer::new(out);
        w.line(&Line::Header(header))?;
        let mut written = 0u64;
        self.store
            .export_snapshot(&scope, PAGE, |part| {
                match part {
                    ExportPart::Tables(t) => write_tables(&mut w, t)?,
                    ExportPart::Documents(page) => {
                        for doc in page {
                            let line = DocumentLine::from_record(doc)
                                .map_err(|e| TransferError::Io(std::io::Error::other(e)))?;
                            w.line(&Line::Document(line))?;
                            written += 1;
                        }
                        progress(written);
                    }
                }
                Ok::<_, TransferError>(())
            })
            .await??;
        if opts.include_secrets {
            for meta in listed {
                if let Some(value) = secrets.get(&meta.name) {
                    w.line(&Line::Secret(SecretLine {
                        name: meta.name,
                        value: value.clone(),
                        updated_at: meta.updated_at,
                    }))?;
                }
            }
        }
        let counts = w.finish()?;
        self.audit(
            actor,
            "tenant.export",
            Some(slug),
            None,
            serde_json::json!({"counts": counts, "secrets_included": opts.include_secrets}),
        )
        .await?;
        Ok(counts)
    }

    /// Creates the tenant `slug` from an export. The file is checked whole before
    /// anything is written; a tenant of that slug must not exist. Returns the header
    /// and the record counts.
    pub async fn import_tenant(
        &self,
        actor: &Actor,
        slug: &str,
        input: impl std::io::BufRead,
    ) -> Result<(Header, BTreeMap<String, u64>)> {
        let checked_slug = super::parse_slug(slug)?;
        let parsed = format::read(input).map_err(TransferError::BadFile)?;
        self.import_parsed(actor, &checked_slug, parsed).await
    }

    async fn import_parsed(
        &self,
        actor: &Actor,
        checked_slug: &crate::tenancy::Slug,
        parsed: format::Parsed,
    ) -> Result<(Header, BTreeMap<String, u64>)> {
        let slug = checked_slug.as_str();
        let (mut data, plain_secrets) = split(parsed.records)?;
        let h = &parsed.header;
        let tenant = self
            .create_tenant(actor, checked_slug, &h.tenant.name)
            .await?;
        let written = async {
            if !h.tenant.cors_origins.is_empty() {
                self.update_tenant(actor, slug, None, Some(&h.tenant.cors_origins))
                    .await?;
            }
            let scope = Scope::admin(Arc::new(tenant.clone()), &actor.0);
            self.seal_into(tenant.id, plain_secrets, &mut data)?;
            self.store
                .import_tenant(&scope, &data)
                .await
                .map_err(file_fault)?;
            // The indexes the active rules declare, which an install would have made.
            self.rules.rebuild_indexes(&scope).await?;
            if h.tenant.suspended {
                self.set_suspended(actor, slug, true).await?;
            }
            Ok::<_, TransferError>(())
        }
        .await;
        if let Err(e) = written {
            // Leave no half-imported tenant behind; the first error is the one to tell.
            if let Err(cleanup) = self.delete_tenant(actor, slug).await {
                tracing::error!(%slug, error = %cleanup, "could not remove a failed import");
            }
            return Err(e);
        }
        self.audit(
            actor,
            "tenant.import",
            Some(slug),
            None,
            serde_json::json!({"counts": parsed.counts, "from": h.tenant.slug,
                "source_backend": h.source_backend}),
        )
        .await?;
        Ok((parsed.header, parsed.counts))
    }

    /// Seals the file's clear secrets for the tenant they are imported into.
    fn seal_into(
        &self,
        tenant_id: i64,
        plain: Vec<SecretLine>,
        data: &mut TenantImport,
    ) -> Result<()> {
        for s in plain {
            let (nonce, ciphertext) = self
                .secrets
                .seal_for(tenant_id, &s.name, &s.value)
                .map_err(AdminError::from)?;
            data.secrets.push(SealedSecret {
                name: s.name,
                nonce,
                ciphertext,
                updated_at: s.updated_at,
            });
        }
        Ok(())
    }
}

/// A key the file holds twice is found by the database when the import is written (in
/// one transaction, so nothing was): the file's fault, refused like any other bad file.
fn file_fault(e: crate::store::StoreError) -> TransferError {
    match e {
        crate::store::StoreError::Conflict(what) => TransferError::BadFile(what.to_string()),
        other => other.into(),
    }
}

fn write_tables<W: std::io::Write>(w: &mut format::Writer<W>, t: TenantTables) -> Result<()> {
    for r in t.rulesets {
        w.line(&Line::Ruleset(r))?;
    }
    for d in t.deploys {
        w.line(&Line::Deploy(d))?;
    }
    if let Some(a) = t.active_deploy {
        w.line(&Line::ActiveDeploy(a))?;
    }
    for u in t.users {
        w.line(&Line::User(u))?;
    }
    for k in t.service_keys {
        w.line(&Line::ServiceKey(k))?;
    }
    Ok(())
}

/// Sorts the records into what the store writes, checking what the store would not.
fn split(records: Vec<Line>) -> Result<(TenantImport, Vec<SecretLine>)> {
    let bad = |what: String| TransferError::BadFile(what);
    let mut data = TenantImport::default();
    let mut secrets = Vec::new();
    for record in records {
        match record {
            Line::Document(d) => {
                if !crate::names::valid_collection(&d.collection) {
                    return Err(bad(format!("invalid collection name '{}'", d.collection)));
                }
                if !d.data.is_object() {
                    return Err(bad(format!(
                        "document {}/{} is not an object",
                        d.collection, d.id
                    )));
                }
                data.documents.push(d.into_record());
            }
            Line::Ruleset(r) => data.tables.rulesets.push(r),
            Line::Deploy(d) => data.tables.deploys.push(d),
            Line::ActiveDeploy(a) => {
                if data.tables.active_deploy.replace(a).is_some() {
                    return Err(bad("two active deploys".into()));
                }
            }
            Line::User(u) => data.tables.users.push(u),
            Line::ServiceKey(k) => data.tables.service_keys.push(k),
            Line::Secret(s) => secrets.push(s),
            Line::Header(_) | Line::Trailer(_) => {
                return Err(bad("a header or trailer among the records".into()));
            }
        }
    }
    if let Some(a) = &data.tables.active_deploy
        && !data.tables.deploys.iter().any(|d| d.version == a.version)
    {
        return Err(bad(format!(
            "the active deploy {} is not in the file",
            a.version
        )));
    }
    if secrets.len() > crate::secrets::MAX_SECRETS {
        return Err(bad("more secrets than a tenant may hold".into()));
    }
    Ok((data, secrets))
}
