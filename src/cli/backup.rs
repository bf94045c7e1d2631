//! `plinth backup` and `plinth restore`: the whole server's data, around `crate::backup`.
//! They read and write files and databases directly (no server, no migrations): a backup
//! runs beside a live server; a restore writes only into an empty target.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;

use super::progress::Counter;
use crate::backup::{self, OnProgress, Progress, RestoreOptions, Tools};
use crate::config::StorageArgs;
use crate::store::Location;

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Directory the backup goes in, as a new folder named by the UTC time it started.
    #[arg(long)]
    pub to: PathBuf,
    /// pg_dump to run on PostgreSQL (default: the one on PATH).
    #[arg(long, env = "PLINTH_PG_DUMP")]
    pub pg_dump: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A backup folder (DIR/<timestamp>) that `plinth backup` or `serve --backup-dir` made.
    #[arg(long)]
    pub from: PathBuf,
    /// SQLite: replace what the target directory holds (stop its server first).
    #[arg(long)]
    pub force: bool,
    /// pg_restore to run on PostgreSQL (default: the one on PATH).
    #[arg(long, env = "PLINTH_PG_RESTORE")]
    pub pg_restore: Option<PathBuf>,
}

/// A progress counter shared with the backup's thread.
fn counter(what: &'static str, dumped: &'static str) -> (OnProgress, Arc<Mutex<Counter>>) {
    let files = Arc::new(Mutex::new(Counter::new(what)));
    let dump = Mutex::new(Counter::new(dumped));
    let shown = files.clone();
    let on: OnProgress = Arc::new(move |p: Progress<'_>| match p {
        Progress::File { path, bytes } => {
            tracing::debug!(path, bytes, "file done");
            if let Ok(mut c) = shown.lock() {
                let n = c.count() + 1;
                c.at(n);
            }
        }
        Progress::Dumped { bytes } => {
            if let Ok(mut c) = dump.lock() {
                c.at(bytes / 1024);
            }
        }
    });
    (on, files)
}

fn finish(files: Arc<Mutex<Counter>>) {
    if let Some(c) = Arc::into_inner(files).and_then(|m| m.into_inner().ok()) {
        c.done();
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub async fn backup(storage: &StorageArgs, args: BackupArgs) -> anyhow::Result<()> {
    let location = storage.location();
    let tools = Tools {
        pg_dump: args.pg_dump,
        pg_restore: None,
    };
    let (on, files) = counter("files copied", "KiB dumped");
    let taken = backup::take(&location, &args.to, &tools, on).await?;
    finish(files);
    eprintln!(
        "backup of {} file(s), {}, schema version {}: {}",
        taken.manifest.files.len(),
        mib(taken.bytes()),
        taken
            .manifest
            .schema_version
            .map_or("unknown".into(), |v| v.to_string()),
        taken.dir.display()
    );
    // The folder alone on standard output, for scripts.
    println!("{}", taken.dir.display());
    Ok(())
}

pub async fn restore(
    storage: &StorageArgs,
    target_named: bool,
    args: RestoreArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        target_named,
        "name the target: --data-dir NEW (a SQLite backup) or --database-url URL of an \
         empty database (a PostgreSQL backup)"
    );
    let target = storage.location();
    let options = RestoreOptions {
        force: args.force,
        tools: Tools {
            pg_dump: None,
            pg_restore: args.pg_restore,
        },
    };
    let (on, files) = counter("files restored", "KiB restored");
    let manifest = backup::restore(&args.from, &target, &options, on).await?;
    finish(files);
    let serve = match &target {
        Location::SqliteDir(dir) => format!("plinth serve --data-dir {}", dir.display()),
        Location::Postgres(_) => "plinth serve --database-url URL".into(),
    };
    eprintln!(
        "restored the {} backup of {} (Plinth {}, schema version {}): start it with `{serve}`",
        manifest.backend,
        manifest.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        manifest.plinth_version,
        manifest
            .schema_version
            .map_or("unknown".into(), |v| v.to_string()),
    );
    Ok(())
}
