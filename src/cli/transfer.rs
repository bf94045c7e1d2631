//! `plinth tenant export|import` on local storage: standard output and input around
//! `AdminService::{export_tenant, import_tenant}`, progress on standard error.

use std::io::Write;

use super::progress::Counter;
use crate::admin::export::{ExportOptions, TransferError};
use crate::admin::{Actor, AdminService};

fn err(e: TransferError) -> anyhow::Error {
    match e {
        TransferError::Admin(a) => match a.kind() {
            crate::fault::Kind::Internal | crate::fault::Kind::Unavailable => {
                anyhow::anyhow!("{a}")
            }
            _ => anyhow::anyhow!(a.client_detail()),
        },
        other => anyhow::anyhow!("{other}"),
    }
}

pub async fn export(
    admin: &AdminService,
    actor: &Actor,
    slug: &str,
    include_secrets: bool,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let out = std::io::BufWriter::new(stdout.lock());
    let mut counter = Counter::new("documents");
    let opts = ExportOptions { include_secrets };
    let counts = admin
        .export_tenant(actor, slug, &opts, out, |n| counter.at(n))
        .await
        .map_err(err)?;
    counter.done();
    eprintln!("exported tenant {slug}: {}", summary(&counts));
    if !include_secrets {
        eprintln!("secrets were left out (pass --include-secrets to export them decrypted)");
    }
    Ok(())
}

pub async fn import(
    admin: &AdminService,
    actor: &Actor,
    slug: &str,
    replace: bool,
) -> anyhow::Result<()> {
    let input = std::io::BufReader::new(std::io::stdin().lock());
    let imported = match replace {
        true => admin.replace_tenant(actor, slug, input).await,
        false => admin.import_tenant(actor, slug, input).await,
    };
    let (header, counts) = imported.map_err(err)?;
    eprintln!(
        "imported tenant {slug} (exported from {} on {}): {}",
        header.tenant.slug,
        header.source_backend,
        summary(&counts)
    );
    if !header.secrets_included && header.secrets_count > 0 {
        eprintln!(
            "the export left out {} secret(s): set them again with `plinth secret set`",
            header.secrets_count
        );
    }
    std::io::stderr().flush()?;
    Ok(())
}

fn summary(counts: &std::collections::BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "no records".into();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
