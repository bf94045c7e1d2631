//! An export for the admin API, written whole to a temporary file before the answer
//! starts: memory stays flat however large the tenant, the read snapshot is not held
//! open for as long as a slow client takes to download, and a failure is still a
//! problem answer, not a cut-off body.

use std::collections::BTreeMap;
use std::io::{Seek, Write};

use super::{ExportOptions, Result};
use crate::admin::{Actor, AdminService};

/// A finished export: the file, rewound, and its length.
pub struct Spooled {
    pub file: std::fs::File,
    pub len: u64,
    pub counts: BTreeMap<String, u64>,
}

impl AdminService {
    /// Exports the tenant `slug` into an unnamed file in the system's temporary
    /// directory (`TMPDIR`); the file is gone when the answer is.
    pub async fn export_spooled(
        &self,
        actor: &Actor,
        slug: &str,
        opts: &ExportOptions,
    ) -> Result<Spooled> {
        let mut file = anonymous_file()?;
        let counts = {
            let out = std::io::BufWriter::with_capacity(256 * 1024, &mut file);
            self.export_tenant(actor, slug, opts, out, |_| {}).await?
        };
        file.flush()?;
        let len = file.stream_position()?;
        file.rewind()?;
        Ok(Spooled { file, len, counts })
    }
}

/// A new file that has no name: removed by the system once closed, even after a crash.
fn anonymous_file() -> std::io::Result<std::fs::File> {
    let dir = std::env::temp_dir();
    for _ in 0..8 {
        let path = dir.join(format!(
            ".plinth-export-{}",
            crate::crypto::random_token(12)
        ));
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = match options.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        // Unlinked at once: only this handle reaches the data (which may hold secrets).
        std::fs::remove_file(&path)?;
        return Ok(file);
    }
    Err(std::io::Error::other("cannot create a temporary file"))
}
