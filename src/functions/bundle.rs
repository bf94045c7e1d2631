//! Deploy bundles: `plinth.toml`, an optional rule set and `functions/*.js`, uploaded as
//! a map of file paths to sources and validated whole before anything is stored.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::documents::valid_collection;
use crate::rules::{ExprKind, Expression, RuleSet};

pub const MANIFEST: &str = "plinth.toml";
pub const MAX_FILES: usize = 200;
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
pub const MAX_BUNDLE_BYTES: usize = 8 * 1024 * 1024;

/// `plinth.toml`, parsed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Path of the rule set inside the bundle; activating the deploy installs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    #[serde(default)]
    pub hooks: Vec<HookSpec>,
    #[serde(default)]
    pub http: Vec<HttpSpec>,
    /// Per function: limits below the server maxima.
    #[serde(default)]
    pub limits: BTreeMap<String, LimitSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    pub function: String,
    pub collection: String,
    pub on: Vec<String>,
    /// before | after
    #[serde(default = "after")]
    pub phase: String,
    /// CEL over auth, doc (before the write), new (after), id, now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// After hooks: attempts before a job is marked dead (default 5, at most 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// After hooks: the function gets an array of up to this many events per invocation
    /// (1 to 256) instead of one event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

/// Largest `batch` of an after hook.
pub const MAX_BATCH: u32 = 256;

fn after() -> String {
    "after".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// Served at `/v1/t/{tenant}/fn/{name}`.
    pub name: String,
    pub function: String,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
}

/// One problem with a bundle: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BundleError {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    pub message: String,
}

impl BundleError {
    pub fn new(file: &str, message: impl Into<String>) -> BundleError {
        BundleError {
            file: file.to_string(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub fn at(file: &str, line: u32, column: u32, message: impl Into<String>) -> BundleError {
        BundleError {
            file: file.to_string(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Server maxima that per-function limits may not exceed.
#[derive(Clone, Copy, Debug)]
pub struct LimitCaps {
    pub max_timeout_ms: u64,
    pub max_memory_mb: u64,
}

/// A bundle that passed the checks that need no JavaScript engine.
#[derive(Clone, Debug)]
pub struct CheckedBundle {
    pub manifest: Manifest,
    /// Function name -> (file path, source).
    pub functions: BTreeMap<String, (String, String)>,
    pub rules: Option<String>,
}

/// `^[a-z][a-z0-9_-]{0,63}$`: function and HTTP route names.
pub fn valid_function_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Checks the manifest, the rule set and the shape of the bundle. JavaScript is compiled
/// separately (it needs the engine); `functions` lists what must compile.
pub fn check(
    files: &BTreeMap<String, String>,
    caps: LimitCaps,
) -> Result<CheckedBundle, Vec<BundleError>> {
    let errors = check_shape(files);
    if !errors.is_empty() {
        return Err(errors);
    }
    let manifest = parse_manifest(files)?;
    let mut errors = Vec::new();
    let functions = function_files(files, &mut errors);
    let rules = rule_set(&manifest, files, &mut errors);
    check_hooks(&manifest, &functions, &mut errors);
    check_http(&manifest, &functions, &mut errors);
    check_limits(&manifest, caps, &functions, &mut errors);
    if errors.is_empty() {
        Ok(CheckedBundle {
            manifest,
            functions,
            rules,
        })
    } else {
        Err(errors)
    }
}

/// Function name -> (file path, source), as `CheckedBundle::functions` holds them.
type Functions = BTreeMap<String, (String, String)>;

/// The bundle's size and paths.
fn check_shape(files: &BTreeMap<String, String>) -> Vec<BundleError> {
    let mut errors = Vec::new();
    if files.len() > MAX_FILES {
        errors.push(BundleError::new(
            "(bundle)",
            format!("a bundle holds at most {MAX_FILES} files"),
        ));
    }
    let total: usize = files.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_BUNDLE_BYTES {
        errors.push(BundleError::new(
            "(bundle)",
            format!("a bundle is at most {MAX_BUNDLE_BYTES} bytes"),
        ));
    }
    for (path, src) in files {
        if src.len() > MAX_FILE_BYTES {
            errors.push(BundleError::new(
                path,
                format!("a file is at most {MAX_FILE_BYTES} bytes"),
            ));
        }
        if path.contains("..") || path.starts_with('/') || path.contains('\\') {
            errors.push(BundleError::new(
                path,
                "paths must be relative, without '..'",
            ));
        }
    }
    errors
}

fn parse_manifest(files: &BTreeMap<String, String>) -> Result<Manifest, Vec<BundleError>> {
    let Some(manifest_src) = files.get(MANIFEST) else {
        return Err(vec![BundleError::new(
            MANIFEST,
            "the bundle has no plinth.toml",
        )]);
    };
    match toml::from_str(manifest_src) {
        Ok(m) => Ok(m),
        Err(e) => {
            let (line, column) = e
                .span()
                .map(|s| crate::text::line_col(manifest_src, s.start))
                .unwrap_or((1, 1));
            Err(vec![BundleError::at(
                MANIFEST,
                line,
                column,
                e.message().to_string(),
            )])
        }
    }
}

/// The bundle's `functions/*.js`, by function name.
fn function_files(files: &BTreeMap<String, String>, errors: &mut Vec<BundleError>) -> Functions {
    let mut functions = BTreeMap::new();
    for (path, src) in files {
        let Some(rest) = path.strip_prefix("functions/") else {
            continue;
        };
        let Some(name) = rest.strip_suffix(".js") else {
            continue;
        };
        if !valid_function_name(name) {
            errors.push(BundleError::new(
                path,
                "a function's file name must match ^[a-z][a-z0-9_-]{0,63}\\.js$",
            ));
            continue;
        }
        functions.insert(name.to_string(), (path.clone(), src.clone()));
    }
    functions
}

/// The rule set the manifest names, checked.
fn rule_set(
    manifest: &Manifest,
    files: &BTreeMap<String, String>,
    errors: &mut Vec<BundleError>,
) -> Option<String> {
    match &manifest.rules {
        None => None,
        Some(path) => match files.get(path) {
            None => {
                errors.push(BundleError::new(
                    MANIFEST,
                    format!("rules = \"{path}\": no such file in the bundle"),
                ));
                None
            }
            Some(src) => {
                if let Err(errs) = RuleSet::parse(src) {
                    for e in errs {
                        let mut message = e.message.clone();
                        if let (Some(c), Some(o)) = (&e.collection, &e.operation) {
                            message = format!("collection '{c}', {o}: {message}");
                        }
                        errors.push(BundleError::at(path, e.line, e.column, message));
                    }
                }
                Some(src.clone())
            }
        },
    }
}

fn check_hooks(manifest: &Manifest, functions: &Functions, errors: &mut Vec<BundleError>) {
    let exists = |f: &str| functions.contains_key(f);
    for (i, h) in manifest.hooks.iter().enumerate() {
        let at = |m: String| BundleError::new(MANIFEST, format!("hooks[{i}]: {m}"));
        if !exists(&h.function) {
            errors.push(at(format!(
                "function '{}' is not in functions/ ({}.js)",
                h.function, h.function
            )));
        }
        if !valid_collection(&h.collection) {
            errors.push(at(format!("'{}' is not a valid collection", h.collection)));
        }
        if h.on.is_empty() {
            errors.push(at("`on` lists none of create, update, delete".into()));
        }
        for op in &h.on {
            if !matches!(op.as_str(), "create" | "update" | "delete") {
                errors.push(at(format!(
                    "on: '{op}' is not one of create, update, delete"
                )));
            }
        }
        if !matches!(h.phase.as_str(), "before" | "after") {
            errors.push(at(format!("phase: '{}' is not before or after", h.phase)));
        }
        if h.max_attempts.is_some_and(|n| !(1..=20).contains(&n)) {
            errors.push(at("max_attempts must be 1 to 20".into()));
        }
        if let Some(n) = h.batch {
            if h.phase != "after" {
                errors.push(at("batch is for after hooks only".into()));
            } else if !(1..=MAX_BATCH).contains(&n) {
                errors.push(at(format!("batch must be 1 to {MAX_BATCH}")));
            }
            // The function's event is an array or an object, whichever hook runs it.
            if let Some(other) = manifest
                .hooks
                .iter()
                .find(|o| o.phase == "after" && o.function == h.function && o.batch.is_none())
            {
                errors.push(at(format!(
                    "function '{}' also runs as an after hook on '{}' without batch: \
                     all its after hooks must take batches, or none",
                    h.function, other.collection
                )));
            }
        }
        if let Some(w) = &h.when
            && let Err(e) = Expression::compile(w, ExprKind::Condition)
        {
            errors.push(at(format!(
                "when, line {} column {}: {}",
                e.line, e.column, e.message
            )));
        }
    }
}

fn check_http(manifest: &Manifest, functions: &Functions, errors: &mut Vec<BundleError>) {
    let exists = |f: &str| functions.contains_key(f);
    let mut names = BTreeSet::new();
    for (i, h) in manifest.http.iter().enumerate() {
        let at = |m: String| BundleError::new(MANIFEST, format!("http[{i}]: {m}"));
        if !valid_function_name(&h.name) {
            errors.push(at(format!(
                "name '{}' must match ^[a-z][a-z0-9_-]{{0,63}}$",
                h.name
            )));
        }
        if !names.insert(h.name.clone()) {
            errors.push(at(format!("name '{}' is used twice", h.name)));
        }
        if !exists(&h.function) {
            errors.push(at(format!(
                "function '{}' is not in functions/ ({}.js)",
                h.function, h.function
            )));
        }
    }
}

fn check_limits(
    manifest: &Manifest,
    caps: LimitCaps,
    functions: &Functions,
    errors: &mut Vec<BundleError>,
) {
    for (name, l) in &manifest.limits {
        let at = |m: String| BundleError::new(MANIFEST, format!("limits.{name}: {m}"));
        if !functions.contains_key(name) {
            errors.push(at("no such function".into()));
        }
        if let Some(t) = l.timeout_ms
            && !(1..=caps.max_timeout_ms).contains(&t)
        {
            errors.push(at(format!(
                "timeout_ms must be 1 to {} (the server maximum)",
                caps.max_timeout_ms
            )));
        }
        if let Some(m) = l.memory_mb
            && !(1..=caps.max_memory_mb).contains(&m)
        {
            errors.push(at(format!(
                "memory_mb must be 1 to {} (the server maximum)",
                caps.max_memory_mb
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: LimitCaps = LimitCaps {
        max_timeout_ms: 30_000,
        max_memory_mb: 256,
    };

    fn bundle(manifest: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut files: BTreeMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        files.insert(MANIFEST.into(), manifest.into());
        files
    }

    #[test]
    fn a_good_bundle_passes() {
        let files = bundle(
            "[[hooks]]\nfunction = \"tally\"\ncollection = \"votes\"\non = [\"create\"]\n\
             [[http]]\nname = \"sms\"\nfunction = \"sms\"\n[limits.sms]\ntimeout_ms = 2000\n",
            &[
                ("functions/tally.js", "export default async () => {}"),
                ("functions/sms.js", "export default async () => {}"),
            ],
        );
        let b = check(&files, CAPS).expect("valid");
        assert_eq!(b.functions.len(), 2);
        assert_eq!(b.manifest.hooks[0].phase, "after");
    }

    #[test]
    fn manifest_errors_name_line_and_column() {
        let files = bundle("[[http]]\nname = \"x\"\nfunction = 3\n", &[]);
        let errs = check(&files, CAPS).unwrap_err();
        assert_eq!(errs[0].file, MANIFEST);
        assert_eq!(errs[0].line, Some(3));
    }

    #[test]
    fn references_and_limits_are_checked() {
        let files = bundle(
            "[[hooks]]\nfunction = \"nope\"\ncollection = \"Bad\"\non = [\"upsert\"]\n\
             phase = \"during\"\nwhen = \"new.a ==\"\n\
             [limits.nope]\ntimeout_ms = 999999\n",
            &[("functions/Bad.js", "")],
        );
        let errs = check(&files, CAPS).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let all = text.join("\n");
        for needle in [
            "Bad.js",
            "function 'nope'",
            "not a valid collection",
            "'upsert'",
            "'during'",
            "when, line 1",
            "limits.nope: no such function",
            "timeout_ms must be",
        ] {
            assert!(all.contains(needle), "{needle} missing in {all}");
        }
    }

    #[test]
    fn rules_errors_point_into_the_rules_file() {
        let files = bundle(
            "rules = \"rules.toml\"\n",
            &[("rules.toml", "[votes]\nread = \"auth.uid ==\"\n")],
        );
        let errs = check(&files, CAPS).unwrap_err();
        assert_eq!(errs[0].file, "rules.toml");
        assert_eq!(errs[0].line, Some(2));
    }

    #[test]
    fn paths_escaping_the_bundle_are_refused() {
        let files = bundle("", &[("../x.js", "")]);
        assert!(check(&files, CAPS).is_err());
    }
}
