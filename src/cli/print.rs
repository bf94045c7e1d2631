//! Printing of command results. Local and remote commands both hand over the admin API's
//! JSON shapes (local results go through the same DTOs), so a table looks the same
//! whichever way it was fetched.

use comfy_table::{CellAlignment, Table, presets};
use serde_json::Value;

use crate::documents::RuleExplanation;

/// A table without borders: a header line, then one line per row, columns padded to
/// their widest cell (the first cell of a row is still its first whitespace-separated
/// word, which scripts rely on).
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().copied());
    for row in rows {
        t.add_row(row);
    }
    for col in t.column_iter_mut() {
        col.set_padding((0, 2));
        col.set_cell_alignment(CellAlignment::Left);
    }
    t
}

fn print(t: Table) {
    // trim_fmt: the last column is padded too; trailing blanks help nobody.
    println!("{}", t.trim_fmt());
}

/// A time from the API: RFC 3339 text as is, milliseconds since the epoch formatted.
pub fn time(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n
            .as_i64()
            .map(crate::http::dto::timestamp)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> &[Value] {
    v.get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn strings(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

pub fn tenants(list: &Value) {
    print(table(
        &["SLUG", "STATE", "LOCATION", "CREATED", "NAME"],
        items(list).iter().map(|t| {
            let state = if t["suspended"] == true {
                "suspended"
            } else if t["moving"] == true {
                "moving"
            } else {
                "active"
            };
            vec![
                s(&t["slug"]),
                state.into(),
                s(&t["location"]),
                time(&t["created_at"]),
                s(&t["name"]),
            ]
        }),
    ));
}

pub fn keys(list: &Value) {
    print(table(
        &["ID", "PREFIX", "CREATED", "STATE", "NAME"],
        items(list).iter().map(|k| {
            let state = if k["revoked_at"].is_null() {
                "active"
            } else {
                "revoked"
            };
            vec![
                s(&k["id"]),
                s(&k["prefix"]),
                time(&k["created_at"]),
                state.into(),
                s(&k["name"]),
            ]
        }),
    ));
}

pub fn secrets(list: &Value) {
    print(table(
        &["NAME", "UPDATED"],
        items(list)
            .iter()
            .map(|x| vec![s(&x["name"]), time(&x["updated_at"])]),
    ));
}

pub fn jobs(list: &Value) {
    print(table(
        &["ID", "FUNCTION", "STATE", "ATTEMPTS", "LAST ERROR"],
        items(list).iter().map(|j| {
            vec![
                s(&j["id"]),
                s(&j["function"]),
                s(&j["state"]),
                format!("{}/{}", j["attempts"], j["max_attempts"]),
                s(&j["last_error"]),
            ]
        }),
    ));
}

pub fn deploys(list: &Value) {
    print(table(
        &["VERSION", "ACTIVE", "CREATED", "BY"],
        items(list).iter().map(|d| {
            vec![
                s(&d["version"]),
                if d["active"] == true { "*" } else { "" }.into(),
                time(&d["created_at"]),
                s(&d["created_by"]),
            ]
        }),
    ));
}

pub fn users(page: &Value) {
    print(table(
        &["ID", "EMAIL", "VERIFIED", "STATE", "CREATED"],
        items(page).iter().map(|u| {
            vec![
                s(&u["id"]),
                s(&u["email"]),
                if u["email_verified"] == true {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                if u["disabled"] == true {
                    "disabled"
                } else {
                    "active"
                }
                .into(),
                time(&u["created_at"]),
            ]
        }),
    ));
    if let Some(next) = page["next_cursor"].as_str() {
        eprintln!("more: --cursor {next}");
    }
}

pub fn user(u: &Value) {
    for (k, label) in [
        ("id", "id"),
        ("email", "email"),
        ("email_verified", "verified"),
        ("disabled", "disabled"),
        ("created_at", "created"),
        ("updated_at", "updated"),
    ] {
        println!("{label:<10}{}", s(&u[k]));
    }
}

pub fn admins(list: &Value) {
    print(table(
        &["ID", "EMAIL", "ROLE", "TENANTS", "CREATED"],
        items(list).iter().map(|a| {
            vec![
                s(&a["id"]),
                s(&a["email"]),
                s(&a["role"]),
                strings(&a["tenants"]),
                time(&a["created_at"]),
            ]
        }),
    ));
}

pub fn invitations(list: &Value) {
    print(table(
        &["ID", "EMAIL", "ROLE", "TENANTS", "SENT", "EXPIRES"],
        items(list).iter().map(|i| {
            vec![
                s(&i["id"]),
                s(&i["email"]),
                s(&i["role"]),
                strings(&i["tenants"]),
                time(&i["created_at"]),
                time(&i["expires_at"]),
            ]
        }),
    ));
}

pub fn api_keys(list: &Value) {
    print(table(
        &[
            "ID",
            "PREFIX",
            "NAME",
            "ROLE",
            "TENANTS",
            "EXPIRES",
            "LAST USED",
            "STATE",
        ],
        items(list).iter().map(|k| {
            vec![
                s(&k["id"]),
                s(&k["prefix"]),
                s(&k["name"]),
                s(&k["role"]),
                strings(&k["tenants"]),
                time(&k["expires_at"]),
                time(&k["last_used_at"]),
                if k["revoked_at"].is_null() {
                    "active"
                } else {
                    "revoked"
                }
                .into(),
            ]
        }),
    ));
}

/// A usage report, per day or per hour (whichever the report holds).
pub fn usage(report: &Value) {
    let row = |label: String, c: &Value| {
        vec![
            label,
            s(&c["requests"]),
            s(&c["errors"]),
            s(&c["doc_writes"]),
            s(&c["invocations"]),
            format!("{:.1}", c["cpu_us"].as_f64().unwrap_or(0.0) / 1000.0),
            s(&c["realtime_connections"]),
            s(&c["realtime_peak"]),
        ]
    };
    let (list, key, head) = if report["granularity"] == "hour" {
        ("hours", "hour", "HOUR (UTC)")
    } else {
        ("days", "day", "DAY")
    };
    let buckets = report[list].as_array().cloned().unwrap_or_default();
    let mut rows: Vec<_> = buckets.iter().map(|b| row(s(&b[key]), b)).collect();
    rows.push(row("total".into(), &report["total"]));
    let mut t = table(
        &[
            head,
            "REQUESTS",
            "ERRORS",
            "DOC WRITES",
            "INVOCATIONS",
            "CPU MS",
            "WS OPENED",
            "WS PEAK",
        ],
        rows,
    );
    for i in 1..8 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    print(t);
}

/// The answer to a bundle upload or an activation.
pub fn deployed(tenant: &str, v: &Value) {
    let list = |k: &str| {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    println!("version {} active for {tenant}", v["version"]);
    println!("  functions: {}", list("functions"));
    println!("  http:      {}", list("http"));
    println!("  hooks:     {}", v["hooks"]);
    if let Some(r) = v["rules_version"].as_i64() {
        println!("  rules:     version {r}");
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or(""));
    }
}

/// The answer of an explain.
pub fn explanation(x: &RuleExplanation) {
    let (collection, op) = (&x.collection, x.operation.as_str());
    if !x.exists {
        println!("document:   not stored (explained as doc == null)");
    }
    match &x.rule {
        Some(rule) => {
            println!("rule:       [{collection}] {op} = {rule}");
            println!("outcome:    {}", if x.allowed { "allow" } else { "deny" });
            println!("decided by: {}", x.decided_by.as_deref().unwrap_or(""));
            for step in &x.trace {
                println!("  {} => {}", step.expression, step.value);
            }
        }
        None => println!("no {op} rule for [{collection}]: deny"),
    }
}

/// Rule-set errors as `FILE:LINE:COLUMN: [collection] op: message`, the way compilers
/// print them (editors jump to them).
pub fn rule_errors(file: &std::path::Path, errors: &[Value]) {
    for err in errors {
        let place = match (err["collection"].as_str(), err["operation"].as_str()) {
            (Some(c), Some(o)) => format!(" [{c}] {o}:"),
            (Some(c), None) => format!(" [{c}]:"),
            _ => String::new(),
        };
        eprintln!(
            "{}:{}:{}:{place} {}",
            file.display(),
            err["line"],
            err["column"],
            s(&err["message"])
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_rows_start_with_the_first_cell() {
        let t = table(
            &["VERSION", "ACTIVE", "BY"],
            vec![
                vec!["1".into(), "".into(), "cli".into()],
                vec!["12".into(), "*".into(), "root@x.test".into()],
            ],
        )
        .to_string();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[1].starts_with("1 "), "{t}");
        let col = |l: &str| l.find(['c', 'r', 'B']);
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
        assert_eq!(time(&serde_json::json!(0)), "1970-01-01T00:00:00.000Z");
    }
}
