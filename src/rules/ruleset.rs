//! TOML rule sets.
//!
//! ```toml
//! [votes]
//! read   = "auth != null && doc.voter == auth.uid"
//! create = "auth != null && new.voter == auth.uid"
//! indexes = [["poll", "option"]]
//! ```
//! A missing operation denies. Unknown keys, bad collection names
//! (`^[a-z][a-z0-9_]{0,62}$`), bad index paths and any CEL error are reported with the
//! collection, the operation and the line and column in the TOML file.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Expression, Operation};

#[derive(Debug, Default)]
pub struct CollectionRules {
    pub read: Option<Expression>,
    pub create: Option<Expression>,
    pub update: Option<Expression>,
    pub delete: Option<Expression>,
    /// Each index: document paths (segments), in index column order.
    pub indexes: Vec<Vec<Vec<String>>>,
}

impl CollectionRules {
    pub fn rule(&self, op: Operation) -> Option<&Expression> {
        match op {
            Operation::Read => self.read.as_ref(),
            Operation::Create => self.create.as_ref(),
            Operation::Update => self.update.as_ref(),
            Operation::Delete => self.delete.as_ref(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleSetError {
    pub collection: Option<String>,
    pub operation: Option<String>,
    /// Position in the TOML file, 1-based.
    pub line: u32,
    pub column: u32,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct RuleSet {
    pub source: String,
    pub collections: BTreeMap<String, CollectionRules>,
}

impl RuleSet {
    /// Parses and compiles a whole rule set; all errors at once.
    pub fn parse(source: &str) -> Result<RuleSet, Vec<RuleSetError>> {
        let _ = source;
        todo!("rules helper")
    }

    /// No rules: every operation of every collection is denied.
    pub fn deny_all() -> RuleSet {
        RuleSet::default()
    }

    pub fn rule(&self, collection: &str, op: Operation) -> Option<&Expression> {
        self.collections.get(collection).and_then(|c| c.rule(op))
    }

    /// Read rules that lists can only serve by scanning the whole collection (no index
    /// starts with a path the rule compares for equality), and indexes no rule uses.
    pub fn warnings(&self) -> Vec<String> {
        todo!("rules helper")
    }
}
