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
//!
//! A CEL error's position is mapped from the expression into the TOML file by decoding the
//! TOML string the way TOML does (escapes, multi-line strings, the newline trimmed after
//! the opening delimiter, line-ending backslashes), so it is exact for every string form;
//! an escape sequence maps to its backslash.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Serialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ExprKind;
use super::lex;
use super::{Expression, Operation};
use crate::names::FieldPath;

/// At most this many indexes per collection, of at most this many paths each.
pub const MAX_INDEXES: usize = 8;
pub const MAX_INDEX_PATHS: usize = 4;

#[derive(Debug, Default)]
pub struct CollectionRules {
    pub read: Option<Expression>,
    pub create: Option<Expression>,
    pub update: Option<Expression>,
    pub delete: Option<Expression>,
    /// Each index: document paths, in index column order.
    pub indexes: Vec<Vec<FieldPath>>,
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
        let table = match DeTable::parse(source) {
            Ok(t) => t,
            Err(e) => {
                let at = e.span().map(|s| s.start).unwrap_or(0);
                let (line, column) = lex::line_col(source, at);
                return Err(vec![RuleSetError {
                    collection: None,
                    operation: None,
                    line,
                    column,
                    message: format!("TOML syntax error: {}", e.message().trim()),
                }]);
            }
        };
        let mut p = Parsing {
            source,
            errors: Vec::new(),
        };
        let mut collections = BTreeMap::new();
        for (key, value) in table.get_ref().iter() {
            let name: &str = key.get_ref().as_ref();
            if !crate::names::valid_collection(name) {
                p.error(
                    Some(name),
                    None,
                    key.span(),
                    format!(
                        "invalid collection name '{name}': use lowercase letters, digits and '_', starting with a letter (at most 63)"
                    ),
                );
                continue;
            }
            let DeValue::Table(t) = value.get_ref() else {
                p.error(
                    Some(name),
                    None,
                    key.span(),
                    format!(
                        "'{name}' must be a table ([{name}]) of rules, not {}",
                        value.get_ref().type_str()
                    ),
                );
                continue;
            };
            collections.insert(name.to_string(), p.collection(name, t));
        }
        if p.errors.is_empty() {
            Ok(RuleSet {
                source: source.to_string(),
                collections,
            })
        } else {
            p.errors.sort_by_key(|e| (e.line, e.column));
            Err(p.errors)
        }
    }

    /// No rules: every operation of every collection is denied.
    pub fn deny_all() -> RuleSet {
        RuleSet::default()
    }

    pub fn rule(&self, collection: &str, op: Operation) -> Option<&Expression> {
        self.collections.get(collection).and_then(|c| c.rule(op))
    }

    /// The collection's declared indexes (each a list of document paths).
    pub fn indexes(&self, collection: &str) -> &[Vec<FieldPath>] {
        self.collections
            .get(collection)
            .map_or(&[], |c| c.indexes.as_slice())
    }

    /// Read rules that lists can only serve by scanning the whole collection (no index
    /// starts with a path the rule compares for equality), and indexes no rule uses.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, c) in &self.collections {
            let firsts: Vec<Vec<String>> = c
                .indexes
                .iter()
                .filter_map(|i| i.first().map(|p| p.segments().to_vec()))
                .collect();
            let Some(read) = &c.read else {
                for index in &c.indexes {
                    out.push(format!(
                        "collection {name}: index [{}] serves no read rule (the collection has none, so nothing can be listed)",
                        show_index(index)
                    ));
                }
                continue;
            };
            if read.is_constant() || !read.uses_document() {
                continue;
            }
            if !read.served_by_index(&firsts) {
                let eq = read.equality_paths();
                out.push(if eq.is_empty() {
                    format!(
                        "collection {name}: the read rule compares no document field for equality at its top level; lists scan the whole collection"
                    )
                } else {
                    format!(
                        "collection {name}: read rule compares {} but no index starts with {}; lists scan the whole collection",
                        eq.iter().map(|p| show_path(p)).collect::<Vec<_>>().join(", "),
                        if eq.len() == 1 { "it" } else { "them" }
                    )
                });
            }
            let used = read.all_equality_paths();
            for index in &c.indexes {
                if let Some(first) = index.first()
                    && !used.iter().any(|u| u == first.segments())
                {
                    out.push(format!(
                            "collection {name}: index [{}] starts with {}, which the read rule never compares for equality; only filters can use it",
                            show_index(index),
                            show_path(first.segments())
                        ));
                }
            }
        }
        out
    }
}

fn show_path(p: &[String]) -> String {
    format!("doc.{}", p.join("."))
}

fn show_index(index: &[FieldPath]) -> String {
    index
        .iter()
        .map(FieldPath::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

struct Parsing<'s> {
    source: &'s str,
    errors: Vec<RuleSetError>,
}

impl Parsing<'_> {
    fn error(
        &mut self,
        collection: Option<&str>,
        operation: Option<&str>,
        span: Range<usize>,
        message: String,
    ) {
        let (line, column) = lex::line_col(self.source, span.start);
        self.errors.push(RuleSetError {
            collection: collection.map(str::to_string),
            operation: operation.map(str::to_string),
            line,
            column,
            message,
        });
    }

    fn collection(&mut self, name: &str, t: &DeTable<'_>) -> CollectionRules {
        let mut rules = CollectionRules::default();
        for (key, value) in t.iter() {
            let k: &str = key.get_ref().as_ref();
            let op = match k.parse::<Operation>() {
                Ok(op) => op,
                Err(_) if k == "indexes" => {
                    rules.indexes = self.indexes(name, value);
                    continue;
                }
                Err(_) => {
                    self.error(
                        Some(name),
                        None,
                        key.span(),
                        format!(
                            "unknown key '{k}' in [{name}] (expected read, create, update, delete or indexes)"
                        ),
                    );
                    continue;
                }
            };
            let DeValue::String(src) = value.get_ref() else {
                self.error(
                    Some(name),
                    Some(k),
                    value.span(),
                    format!(
                        "{name}.{k} must be a string holding a CEL expression, not {}",
                        value.get_ref().type_str()
                    ),
                );
                continue;
            };
            let src: &str = src.as_ref();
            match Expression::compile(src, ExprKind::Rule(op)) {
                Ok(expr) => {
                    if op == Operation::Read
                        && let Err(u) = expr.check_translatable()
                    {
                        let at = self.position_in_string(value, src, u.line, u.column);
                        self.error(
                            Some(name),
                            Some(k),
                            at..at,
                            format!(
                                "a read rule must translate to SQL (lists filter with it): {}",
                                u.message
                            ),
                        );
                        continue;
                    }
                    match op {
                        Operation::Read => rules.read = Some(expr),
                        Operation::Create => rules.create = Some(expr),
                        Operation::Update => rules.update = Some(expr),
                        Operation::Delete => rules.delete = Some(expr),
                    }
                }
                Err(e) => {
                    let at = self.position_in_string(value, src, e.line, e.column);
                    self.error(Some(name), Some(k), at..at, e.message);
                }
            }
        }
        rules
    }

    /// The TOML byte offset of `line`:`column` of the decoded string `value`.
    fn position_in_string(
        &self,
        value: &Spanned<DeValue<'_>>,
        decoded: &str,
        line: u32,
        column: u32,
    ) -> usize {
        let span = value.span();
        let at = lex::byte_offset(decoded, line, column);
        let Some(raw) = self.source.get(span.clone()) else {
            return span.start;
        };
        match raw_offsets(raw) {
            Some((text, offsets)) if text == decoded => {
                span.start + offsets[at.min(offsets.len() - 1)]
            }
            // not decoded the way TOML did (should not happen): point at the string
            _ => span.start,
        }
    }

    fn indexes(&mut self, name: &str, value: &Spanned<DeValue<'_>>) -> Vec<Vec<FieldPath>> {
        let mut out = Vec::new();
        let shape = "indexes must be an array of indexes, each an array of dotted field paths, e.g. indexes = [[\"poll\", \"option\"]]";
        let Some(list) = value.get_ref().as_array() else {
            self.error(Some(name), Some("indexes"), value.span(), shape.to_string());
            return out;
        };
        if list.len() > MAX_INDEXES {
            self.error(
                Some(name),
                Some("indexes"),
                value.span(),
                format!(
                    "at most {MAX_INDEXES} indexes per collection ({} given)",
                    list.len()
                ),
            );
        }
        for index in list.iter() {
            let Some(paths) = index.get_ref().as_array() else {
                self.error(Some(name), Some("indexes"), index.span(), shape.to_string());
                continue;
            };
            if paths.is_empty() || paths.len() > MAX_INDEX_PATHS {
                self.error(
                    Some(name),
                    Some("indexes"),
                    index.span(),
                    format!(
                        "an index has 1 to {MAX_INDEX_PATHS} paths ({} given)",
                        paths.len()
                    ),
                );
                continue;
            }
            let mut parsed = Vec::new();
            for path in paths.iter() {
                let Some(text) = path.get_ref().as_str() else {
                    self.error(Some(name), Some("indexes"), path.span(), shape.to_string());
                    continue;
                };
                let Ok(field) = FieldPath::parse(text) else {
                    self.error(
                        Some(name),
                        Some("indexes"),
                        path.span(),
                        format!(
                            "invalid index path '{text}': dotted names of letters, digits and '_', not starting with a digit (e.g. \"author.id\")"
                        ),
                    );
                    continue;
                };
                parsed.push(field);
            }
            if parsed.len() == paths.len() {
                out.push(parsed);
            }
        }
        out
    }
}

/// Decodes a raw TOML string (with its quotes) and returns the text with, for every byte
/// of it (and its end), the offset in `raw` it comes from.
fn raw_offsets(raw: &str) -> Option<(String, Vec<usize>)> {
    let b = raw.as_bytes();
    let (delim, literal) = if raw.starts_with("\"\"\"") {
        (3, false)
    } else if raw.starts_with("'''") {
        (3, true)
    } else if raw.starts_with('"') {
        (1, false)
    } else if raw.starts_with('\'') {
        (1, true)
    } else {
        return None;
    };
    if b.len() < 2 * delim {
        return None;
    }
    let end = b.len() - delim;
    let mut i = delim;
    // a newline right after the opening delimiter of a multi-line string is trimmed
    if delim == 3 {
        if raw[i..].starts_with("\r\n") {
            i += 2;
        } else if raw[i..].starts_with('\n') {
            i += 1;
        }
    }
    let mut text = String::new();
    let mut offsets = Vec::new();
    let push = |text: &mut String, offsets: &mut Vec<usize>, c: char, at: usize| {
        text.push(c);
        for _ in 0..c.len_utf8() {
            offsets.push(at);
        }
    };
    while i < end {
        let c = raw[i..].chars().next()?;
        if literal || c != '\\' {
            push(&mut text, &mut offsets, c, i);
            i += c.len_utf8();
            continue;
        }
        let start = i;
        let e = *b.get(i + 1)? as char;
        let simple = match e {
            'b' => Some('\u{8}'),
            't' => Some('\t'),
            'n' => Some('\n'),
            'f' => Some('\u{c}'),
            'r' => Some('\r'),
            'e' => Some('\u{1b}'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            _ => None,
        };
        if let Some(ch) = simple {
            push(&mut text, &mut offsets, ch, start);
            i += 2;
            continue;
        }
        let hex = match e {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => 0,
        };
        if hex > 0 {
            let digits = raw.get(i + 2..i + 2 + hex)?;
            let ch = char::from_u32(u32::from_str_radix(digits, 16).ok()?)?;
            push(&mut text, &mut offsets, ch, start);
            i += 2 + hex;
            continue;
        }
        // line-ending backslash (multi-line basic strings): skip whitespace and newlines
        if delim == 3 {
            let mut j = i + 1;
            while j < end && matches!(b[j], b' ' | b'\t') {
                j += 1;
            }
            if j < end && matches!(b[j], b'\n' | b'\r') {
                while j < end && matches!(b[j], b' ' | b'\t' | b'\n' | b'\r') {
                    j += 1;
                }
                i = j;
                continue;
            }
        }
        return None;
    }
    offsets.push(end);
    Some((text, offsets))
}

#[cfg(test)]
#[path = "ruleset_tests.rs"]
mod tests;
