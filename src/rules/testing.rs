//! `plinth rules test FILE`: a TOML file of cases run against a rule set.
//!
//! ```toml
//! rules = "example.toml"          # relative to this file
//!
//! [[case]]
//! name = "owner reads own note"
//! collection = "notes"
//! operation = "read"
//! auth = { uid = "alice" }        # omit for anonymous
//! id = "n1"                       # optional
//! doc = { owner = "alice" }       # stored data (read, update, delete)
//! new = { owner = "alice" }       # data after the write (create, update)
//! expect = "allow"                # or "deny"
//! ```

use std::path::Path;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    /// `allow` or `deny`.
    pub expected: String,
    pub actual: String,
    /// The deciding sub-expression, when the case failed.
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TestReport {
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }
}

/// Loads the test file and its rule set and runs every case. Err: the file or the rule
/// set cannot be read or compiled (the message says where).
pub fn run_file(path: &Path) -> Result<TestReport, String> {
    let _ = path;
    todo!("rules helper")
}
