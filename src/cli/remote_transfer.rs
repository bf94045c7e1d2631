//! `plinth tenant export|import` against a server: the admin API's export streamed to
//! standard output, and standard input uploaded to its import. The file is the same as
//! the local commands read and write.

use std::io::{Read, Write};

use reqwest::Method;
use serde_json::Value;

use super::progress::{self, Counter};
use super::remote::{Client, seg};

/// The trailer (counts and checksum) is the last line; a few KiB of the end hold it.
const TAIL: usize = 8 * 1024;

pub async fn export(c: &Client, slug: &str, include_secrets: bool) -> anyhow::Result<()> {
    let path = format!(
        "/admin/v1/tenants/{}/export?include_secrets={include_secrets}",
        seg(slug)
    );
    let mut res = c.send_raw(c.request(Method::GET, &path)).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut lines = Counter::new("lines");
    let mut tail: Vec<u8> = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| anyhow::Error::new(e).context("the export was cut off"))?
    {
        out.write_all(&chunk)?;
        let n = lines.count() + chunk.iter().filter(|b| **b == b'\n').count() as u64;
        lines.at(n);
        tail.extend_from_slice(&chunk);
        if tail.len() > 2 * TAIL {
            tail.drain(..tail.len() - TAIL);
        }
    }
    out.flush()?;
    lines.done();
    let trailer = String::from_utf8_lossy(&tail)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|t| t["type"] == "trailer");
    let Some(trailer) = trailer else {
        anyhow::bail!(
            "the export from {} ended without its trailer",
            c.conn.server
        );
    };
    eprintln!("exported tenant {slug}: {}", summary(&trailer["counts"]));
    if !include_secrets {
        eprintln!("secrets were left out (pass --include-secrets to export them decrypted)");
    }
    Ok(())
}

pub async fn import(c: &Client, slugs: &[String], replace: bool) -> anyhow::Result<()> {
    let mut file = Vec::new();
    std::io::stdin()
        .read_to_end(&mut file)
        .map_err(|e| anyhow::anyhow!("cannot read the export from standard input: {e}"))?;
    for slug in slugs {
        import_one(c, slug, replace, file.clone()).await?;
    }
    Ok(())
}

async fn import_one(c: &Client, slug: &str, replace: bool, file: Vec<u8>) -> anyhow::Result<()> {
    let path = format!("/admin/v1/tenants/{}/import?replace={replace}", seg(slug));
    let req = c
        .request(Method::POST, &path)
        .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
        .body(progress::body(file));
    let r = c.send(req).await?;
    eprintln!(
        "imported tenant {slug} (exported from {} on {}): {}",
        str(&r["from"]),
        str(&r["source_backend"]),
        summary(&r["counts"])
    );
    if r["secrets_included"].as_bool() == Some(false)
        && r["secrets_count"].as_u64().unwrap_or(0) > 0
    {
        eprintln!(
            "the export left out {} secret(s): set them again with `plinth secret set`",
            r["secrets_count"]
        );
    }
    Ok(())
}

fn summary(counts: &Value) -> String {
    let parts: Vec<String> = counts
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    if parts.is_empty() {
        return "no records".into();
    }
    parts.join(", ")
}

fn str(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}
