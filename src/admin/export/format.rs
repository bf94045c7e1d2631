//! The tenant export file: NDJSON, a header line, one line per record, a trailer line.
//! The trailer holds the record counts and a SHA-256 over every line before it (the
//! header included, each with its newline), so an import can refuse a truncated or
//! altered file before it writes anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{
    ActiveDeployRecord, DeployRecord, DocRecord, RulesetRecord, ServiceKeyRecord, UserRecord,
};

pub const FORMAT: &str = "plinth-tenant-export";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// `sqlite` or `postgres`: where the tenant came from.
    pub source_backend: String,
    /// Milliseconds since the Unix epoch.
    pub exported_at: i64,
    pub tenant: TenantSettings,
    /// Whether secret values are in the file (`--include-secrets`); when false the
    /// tenant's secrets were left out and must be set again after an import.
    pub secrets_included: bool,
    /// How many secrets the tenant had, included or not.
    pub secrets_count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantSettings {
    pub slug: String,
    pub name: String,
    pub suspended: bool,
    pub cors_origins: Vec<String>,
}

/// A document as written: `data` is the JSON object itself, not its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentLine {
    pub collection: String,
    pub id: String,
    pub version: i64,
    pub data: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

impl DocumentLine {
    pub fn from_record(r: DocRecord) -> Result<DocumentLine, serde_json::Error> {
        Ok(DocumentLine {
            data: serde_json::from_str(&r.data)?,
            collection: r.collection,
            id: r.id,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    pub fn into_record(self) -> DocRecord {
        DocRecord {
            data: self.data.to_string(),
            collection: self.collection,
            id: self.id,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A secret in clear text: only in a file made with `--include-secrets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretLine {
    pub name: String,
    pub value: String,
    pub updated_at: i64,
}

/// One line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Header(Header),
    Document(DocumentLine),
    Ruleset(RulesetRecord),
    Deploy(DeployRecord),
    ActiveDeploy(ActiveDeployRecord),
    User(UserRecord),
    ServiceKey(ServiceKeyRecord),
    Secret(SecretLine),
    Trailer(Trailer),
}

impl Line {
    /// The record's kind, as counted in the trailer.
    pub fn kind(&self) -> &'static str {
        match self {
            Line::Header(_) => "header",
            Line::Document(_) => "document",
            Line::Ruleset(_) => "ruleset",
            Line::Deploy(_) => "deploy",
            Line::ActiveDeploy(_) => "active_deploy",
            Line::User(_) => "user",
            Line::ServiceKey(_) => "service_key",
            Line::Secret(_) => "secret",
            Line::Trailer(_) => "trailer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trailer {
    /// Records by kind (the header and trailer are not records).
    pub counts: BTreeMap<String, u64>,
    /// Hex SHA-256 over every line before the trailer, each with its `\n`.
    pub sha256: String,
}

/// Writes lines and keeps the running checksum and counts.
pub struct Writer<W> {
    out: W,
    hash: Sha256,
    counts: BTreeMap<String, u64>,
}

impl<W: std::io::Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer {
            out,
            hash: Sha256::new(),
            counts: BTreeMap::new(),
        }
    }

    pub fn line(&mut self, line: &Line) -> std::io::Result<()> {
        let mut text = serde_json::to_vec(line)?;
        text.push(b'\n');
        self.hash.update(&text);
        if !matches!(line, Line::Header(_)) {
            *self.counts.entry(line.kind().to_string()).or_default() += 1;
        }
        self.out.write_all(&text)
    }

    /// Writes the trailer and returns the counts.
    pub fn finish(mut self) -> std::io::Result<BTreeMap<String, u64>> {
        let trailer = Trailer {
            counts: self.counts.clone(),
            sha256: hex::encode(self.hash.finalize()),
        };
        let mut text = serde_json::to_vec(&Line::Trailer(trailer))?;
        text.push(b'\n');
        self.out.write_all(&text)?;
        self.out.flush()?;
        Ok(self.counts)
    }
}

/// A whole file, read and checked: the header and the records, in file order.
#[derive(Debug)]
pub struct Parsed {
    pub header: Header,
    pub records: Vec<Line>,
    pub counts: BTreeMap<String, u64>,
}

/// Reads a file and checks it whole: a header first, a trailer last, every line
/// parsed, the counts and the checksum as the trailer says. Nothing is trusted before
/// this returns.
pub fn read(input: impl std::io::BufRead) -> Result<Parsed, String> {
    let mut hash = Sha256::new();
    let mut header = None;
    let mut records = Vec::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut trailer = None;
    for (i, raw) in input.split(b'\n').enumerate() {
        let n = i + 1;
        let raw = raw.map_err(|e| format!("reading line {n}: {e}"))?;
        if trailer.is_some() {
            if raw.is_empty() {
                continue;
            }
            return Err(format!("line {n}: data after the trailer"));
        }
        let line: Line = serde_json::from_slice(&raw)
            .map_err(|e| format!("line {n} is not a record of this format: {e}"))?;
        match line {
            Line::Header(h) if n == 1 => {
                if h.format != FORMAT || h.version != VERSION {
                    return Err(format!(
                        "not a {FORMAT} version {VERSION} file (it says {} version {})",
                        h.format, h.version
                    ));
                }
                header = Some(h);
            }
            _ if n == 1 => return Err("the first line is not a header".into()),
            Line::Header(_) => return Err(format!("line {n}: a second header")),
            Line::Trailer(t) => {
                trailer = Some(t);
                continue;
            }
            record => {
                *counts.entry(record.kind().to_string()).or_default() += 1;
                records.push(record);
            }
        }
        hash.update(&raw);
        hash.update(b"\n");
    }
    let header = header.ok_or("the file is empty")?;
    let trailer = trailer.ok_or("the file ends before its trailer: it was cut short")?;
    if trailer.counts != counts {
        return Err(format!(
            "the trailer counts {:?}, the file holds {counts:?}",
            trailer.counts
        ));
    }
    if trailer.sha256 != hex::encode(hash.finalize()) {
        return Err("the checksum does not match: the file was altered or damaged".into());
    }
    Ok(Parsed {
        header,
        records,
        counts,
    })
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
