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
//!
//! `auth` takes `uid`, and optionally `email`, `email_verified` and `claims`. Stored
//! documents have version 1 and timestamps 0; `now` is the current time.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{AuthInfo, Bindings, DocMeta, Operation, RuleSet};

// What the CLI prints and `POST .../rules/test` answers (OpenAPI schema
// `RuleTestCaseDto`, the JSON pinned by a test below): one type for both.
/// One test case's result.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = RuleTestCaseDto)]
pub struct CaseResult {
    pub name: String,
    /// 1-based line of the case's `[[case]]` header in its TOML text.
    pub line: usize,
    pub passed: bool,
    /// `allow` or `deny`.
    pub expected: String,
    pub actual: String,
    /// For a failed case, the sub-expression that decided (or the missing rule).
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    rules: String,
    #[serde(default, rename = "case")]
    cases: Vec<toml::Spanned<Case>>,
}

/// Cases sent without a rules file (the admin API's `rules/test`): the same `[[case]]`
/// tables, the rule set given beside them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesOnly {
    #[serde(default, rename = "case")]
    cases: Vec<toml::Spanned<Case>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    collection: String,
    operation: Operation,
    #[serde(default)]
    auth: Option<AuthInfo>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    doc: Option<serde_json::Value>,
    #[serde(default)]
    new: Option<serde_json::Value>,
    expect: Expect,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        }
    }
}

/// Loads the test file and its rule set and runs every case. Err: the file or the rule
/// set cannot be read or compiled (the message says where).
pub fn run_file(path: &Path) -> Result<TestReport, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let file: TestFile = toml::from_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let rules_path = path.parent().unwrap_or(Path::new(".")).join(&file.rules);
    let rules_text = std::fs::read_to_string(&rules_path).map_err(|e| {
        format!(
            "{}: cannot read the rules file {}: {e}",
            path.display(),
            rules_path.display()
        )
    })?;
    let rules = RuleSet::parse(&rules_text).map_err(|errors| {
        errors
            .iter()
            .map(|e| {
                let mut place = String::new();
                if let Some(c) = &e.collection {
                    place.push_str(c);
                    if let Some(op) = &e.operation {
                        place.push('.');
                        place.push_str(op);
                    }
                    place.push_str(": ");
                }
                format!(
                    "{}:{}:{}: {place}{}",
                    rules_path.display(),
                    e.line,
                    e.column,
                    e.message
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(run_cases(&rules, &file.cases, &text))
}

/// Runs `[[case]]` tables given as TOML text against a compiled rule set. Err: the text
/// is not valid cases TOML; the message starts with `line L, column C:`.
pub fn run_source(rules: &RuleSet, cases_toml: &str) -> Result<TestReport, String> {
    let file: CasesOnly = toml::from_str(cases_toml).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_col(cases_toml, s.start))
            .unwrap_or((1, 1));
        format!("line {line}, column {column}: {}", e.message().trim_end())
    })?;
    Ok(run_cases(rules, &file.cases, cases_toml))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn run_cases(rules: &RuleSet, cases: &[toml::Spanned<Case>], text: &str) -> TestReport {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let meta = DocMeta {
        version: 1,
        created_at: 0,
        updated_at: 0,
    };
    let mut results = Vec::new();
    let lines = case_lines(text, cases);
    for (spanned, line) in cases.iter().zip(lines) {
        let case = spanned.get_ref();
        let auth = case.auth.as_ref().map(|a| AuthInfo {
            claims: if a.claims.is_null() {
                serde_json::json!({})
            } else {
                a.claims.clone()
            },
            ..a.clone()
        });
        let (allowed, detail) = match rules.rule(&case.collection, case.operation) {
            None => (
                false,
                format!(
                    "no {} rule for collection '{}' (a missing rule denies)",
                    case.operation.as_str(),
                    case.collection
                ),
            ),
            Some(expr) => {
                let has_meta = case.operation != Operation::Create;
                let x = expr.explain(&Bindings {
                    auth: auth.as_ref(),
                    id: case.id.as_deref().unwrap_or(""),
                    doc: case.doc.as_ref(),
                    new: case.new.as_ref(),
                    meta: has_meta.then_some(&meta),
                    now_ms,
                });
                let last = x.trace.iter().rev().find(|t| t.expression == x.decided_by);
                let detail = match last {
                    Some(t) => format!("decided by `{}` = {}", x.decided_by, t.value),
                    None => format!("decided by `{}`", x.decided_by),
                };
                (x.allowed, detail)
            }
        };
        let actual = if allowed { Expect::Allow } else { Expect::Deny };
        let passed = actual == case.expect;
        results.push(CaseResult {
            name: case.name.clone(),
            line,
            passed,
            expected: case.expect.as_str().to_string(),
            actual: actual.as_str().to_string(),
            detail: (!passed).then_some(detail),
        });
    }
    TestReport { cases: results }
}

/// The 1-based lines of the `[[case]]` headers, one a case when every case was written
/// as such a header; otherwise (cases as an inline array) the line each case's span
/// starts on, which toml reports for the array, not the element.
fn case_lines(text: &str, cases: &[toml::Spanned<Case>]) -> Vec<usize> {
    let headers: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            l.starts_with("[[") && l[2..].trim_start().starts_with("case") && {
                let rest = l[2..].trim_start()["case".len()..].trim_start();
                rest.starts_with("]]")
            }
        })
        .map(|(i, _)| i + 1)
        .collect();
    if headers.len() == cases.len() {
        headers
    } else {
        cases
            .iter()
            .map(|c| line_col(text, c.span().start).0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_result_answers_the_documented_json() {
        let case = CaseResult {
            name: "owner reads".into(),
            line: 7,
            passed: false,
            expected: "allow".into(),
            actual: "deny".into(),
            detail: Some("doc.owner == auth.uid".into()),
        };
        assert_eq!(
            serde_json::to_value(&case).unwrap(),
            serde_json::json!({"name": "owner reads", "line": 7, "passed": false,
                "expected": "allow", "actual": "deny", "detail": "doc.owner == auth.uid"})
        );
    }

    #[test]
    fn the_example_cases_pass() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/example.test.toml");
        let report = run_file(&path).unwrap();
        let failed: Vec<_> = report.cases.iter().filter(|c| !c.passed).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert!(report.cases.len() >= 12);
        for op in ["read", "create", "update", "delete"] {
            let _ = op; // every operation has allow and deny cases (checked in the file)
        }
        assert!(report.passed());
    }

    #[test]
    fn a_failing_case_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("r.toml"),
            "[notes]\nread = \"auth != null && doc.owner == auth.uid\"\n",
        )
        .unwrap();
        let test = dir.path().join("t.toml");
        std::fs::write(
            &test,
            r#"rules = "r.toml"

[[case]]
name = "wrongly expects a stranger to read"
collection = "notes"
operation = "read"
auth = { uid = "bob" }
doc = { owner = "alice" }
expect = "allow"

[[case]]
name = "no rule denies"
collection = "notes"
operation = "delete"
auth = { uid = "alice" }
doc = { owner = "alice" }
expect = "deny"
"#,
        )
        .unwrap();
        let report = run_file(&test).unwrap();
        assert!(!report.passed());
        let c = &report.cases[0];
        assert!(!c.passed);
        assert_eq!((c.expected.as_str(), c.actual.as_str()), ("allow", "deny"));
        assert_eq!(
            c.detail.as_deref(),
            Some("decided by `doc.owner == auth.uid` = false")
        );
        assert!(report.cases[1].passed);
    }

    #[test]
    fn unusable_files_are_errors_with_positions() {
        let dir = tempfile::tempdir().unwrap();
        let missing = run_file(&dir.path().join("nope.toml")).unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
        let t = dir.path().join("t.toml");
        std::fs::write(&t, "rules = \"r.toml\"\n[[case]]\nname = 1\n").unwrap();
        let bad = run_file(&t).unwrap_err();
        assert!(bad.contains("line 3"), "{bad}");
        std::fs::write(&t, "rules = \"r.toml\"\n").unwrap();
        let no_rules = run_file(&t).unwrap_err();
        assert!(
            no_rules.contains("cannot read the rules file"),
            "{no_rules}"
        );
        std::fs::write(dir.path().join("r.toml"), "[notes]\nread = \"doc.x ==\"\n").unwrap();
        let bad_rules = run_file(&t).unwrap_err();
        assert!(
            bad_rules.contains("r.toml:2:17: notes.read: "),
            "{bad_rules}"
        );
    }

    #[test]
    fn cases_as_text_report_their_lines() {
        let rules = RuleSet::parse("[notes]\nread = \"auth != null\"\n").unwrap();
        let cases = "# two cases\n\n[[case]]\nname = \"anon\"\ncollection = \"notes\"\noperation = \"read\"\nexpect = \"allow\"\n\n[[case]]\nname = \"alice\"\ncollection = \"notes\"\noperation = \"read\"\nauth = { uid = \"alice\" }\nexpect = \"allow\"\n";
        let report = run_source(&rules, cases).unwrap();
        let got: Vec<_> = report
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.line, c.passed, c.actual.as_str()))
            .collect();
        assert_eq!(
            got,
            [("anon", 3, false, "deny"), ("alice", 9, true, "allow")]
        );
        assert_eq!(run_source(&rules, "").unwrap().cases.len(), 0);
    }

    #[test]
    fn bad_cases_text_is_an_error_at_its_line() {
        let rules = RuleSet::parse("[notes]\nread = \"true\"\n").unwrap();
        let e = run_source(&rules, "[[case]]\nname = \"x\"\nexpect = \"maybe\"\n").unwrap_err();
        assert!(e.starts_with("line "), "{e}");
        let e = run_source(&rules, "rules = \"r.toml\"\n").unwrap_err();
        assert!(e.starts_with("line 1, column 1:"), "{e}");
        let e = run_source(&rules, "[[case]\n").unwrap_err();
        assert!(e.starts_with("line 1,"), "{e}");
    }
}
