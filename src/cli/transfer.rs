//! `plinth tenant export|import|move` on local storage: standard output and input around
//! `AdminService::{export_tenant, import_tenant, move_tenant}`, progress on standard
//! error.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use super::progress::Counter;
use crate::admin::export::{ExportOptions, TransferError};
use crate::admin::{Actor, AdminService};
use crate::state::AppState;

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
    state: &AppState,
    actor: &Actor,
    slugs: &[String],
    replace: bool,
) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    match slugs {
        [slug] => {
            import_one(
                &state.admin,
                actor,
                slug,
                replace,
                BufReader::new(stdin.lock()),
            )
            .await
        }
        _ => {
            let mut file = Vec::new();
            stdin.lock().read_to_end(&mut file)?;
            for slug in slugs {
                import_one(&state.admin, actor, slug, replace, &file[..]).await?;
                // Each import opened its tenant's file; closed now, so one process can
                // import thousands of tenants without holding thousands of files.
                state.store.close_idle_tenant_files(Duration::ZERO).await;
            }
            Ok(())
        }
    }
}

async fn import_one(
    admin: &AdminService,
    actor: &Actor,
    slug: &str,
    replace: bool,
    input: impl BufRead,
) -> anyhow::Result<()> {
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

/// `plinth tenant move SLUG --to LOCATION` on local storage: each step on standard
/// error as it happens, the result on standard output.
pub async fn move_tenant(
    admin: &AdminService,
    actor: &Actor,
    slug: &str,
    to: &str,
) -> anyhow::Result<()> {
    use crate::store::MoveStep;
    // On SQLite no server may run meanwhile: it would not hear of the move.
    let _lock = admin
        .lock_for_local_move()
        .map_err(|e| err(TransferError::Admin(e)))?;
    let started = std::time::Instant::now();
    eprintln!("moving tenant {slug} to {to}");
    let mut progress = |step: MoveStep<'_>| {
        let line = match step {
            MoveStep::Recovered(r) => format!("interrupted move: {}", recovery_text(r)),
            MoveStep::Frozen => "writes paused (503 tenant_moving)".to_string(),
            MoveStep::Drained => "writes in flight ended".to_string(),
            MoveStep::Copied { table, rows } => format!("copied {table}: {rows}"),
            MoveStep::Verified {
                documents,
                checksum,
            } => format!("verified: counts match, {documents} documents, sha256 {checksum}"),
            MoveStep::Switched => format!("switched to {to}"),
            MoveStep::Released => "writes accepted again".to_string(),
        };
        eprintln!("  {:>6.1} s  {line}", started.elapsed().as_secs_f64());
    };
    let report = admin
        .move_tenant(actor, slug, to, &mut progress)
        .await
        .map_err(|e| err(TransferError::Admin(e)))?;
    print_moved(slug, &serde_json::to_value(&report)?);
    Ok(())
}

fn recovery_text(r: crate::store::Recovery) -> &'static str {
    use crate::store::Recovery;
    match r {
        Recovery::RolledBack => "rolled back (it had not switched; the partial copy is removed)",
        Recovery::Finished => "finished (it had switched; the old copy is removed)",
        Recovery::Cleared => "its mark cleared (it left no record)",
    }
}

/// The last line of a move, from its report (the admin API's answer, or the local one).
pub fn print_moved(slug: &str, report: &serde_json::Value) {
    let s = |k: &str| report[k].as_str().unwrap_or_default().to_string();
    if let Some(r) = report["recovered"].as_str() {
        println!("interrupted move of {slug}: {}", r.replace('_', " "));
        if report["from"] == report["to"] {
            println!("tenant {slug} stays at {} (writes accepted again)", s("to"));
            return;
        }
    }
    let documents = report["counts"]["documents"].as_u64().unwrap_or(0);
    println!(
        "tenant moved: {slug} {} -> {} ({documents} documents, sha256 {}, {} ms)",
        s("from"),
        s("to"),
        s("documents_sha256"),
        report["millis"].as_u64().unwrap_or(0)
    );
    if report["source_deleted"] == false && report["from"] != report["to"] {
        eprintln!(
            "the copy at {} could not be deleted (see the server's log); it is no longer used",
            s("from")
        );
    }
}
