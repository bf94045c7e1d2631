use super::*;
use serde_json::json;

fn doc(p: &[&str]) -> Field {
    Field::Doc(p.iter().map(|s| s.to_string()).collect())
}

#[test]
fn order_fields_render_as_index_expressions() {
    use crate::names::FieldPath;
    use crate::query::OrderField;
    let path = |p: &str| OrderField::Doc(FieldPath::parse(p).unwrap());
    assert_eq!(
        field_sql(&path("poll"), Dialect::Sqlite),
        "json_extract(data, '$.poll')"
    );
    assert_eq!(
        field_sql(&path("a.b_2"), Dialect::Postgres),
        "(data -> 'a' -> 'b_2')"
    );
    assert_eq!(
        field_sql(&OrderField::Version, Dialect::Postgres),
        "version"
    );
    assert_eq!(
        field_sql(&OrderField::CreatedAt, Dialect::Sqlite),
        "created_at"
    );
    // A path that could break out of the SQL text is no FieldPath at all.
    assert!(FieldPath::parse("x'; DROP TABLE docs; --").is_err());
}

#[test]
fn equality_uses_the_indexable_expression() {
    let p = Predicate::Compare {
        field: doc(&["poll"]),
        op: CmpOp::Eq,
        value: json!("p1"),
    };
    let r = render(&p, Dialect::Sqlite, 3);
    assert!(
        r.sql.contains("json_extract(data, '$.poll') = $3"),
        "{}",
        r.sql
    );
    assert_eq!(r.params, vec![SqlParam::Text("p1".into())]);
    let r = render(&p, Dialect::Postgres, 1);
    assert_eq!(r.sql, "((data -> 'poll') = $1::jsonb)");
    assert_eq!(r.params, vec![SqlParam::Json("\"p1\"".into())]);
}

#[test]
fn prefix_successors_bound_the_prefix() {
    assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
    assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
    assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
    assert_eq!(prefix_successor("\u{10FFFF}"), None);
    assert_eq!(prefix_successor(""), None);
}

#[test]
fn ranges_outside_a_negation_keep_the_indexed_expression_bare() {
    let lt = Predicate::Compare {
        field: doc(&["n"]),
        op: CmpOp::Lt,
        value: json!(3),
    };
    let r = render(&lt, Dialect::Sqlite, 1);
    assert!(
        r.sql.starts_with("(json_extract(data, '$.n') < $1 AND"),
        "{}",
        r.sql
    );
    let r = render(&lt, Dialect::Postgres, 1);
    assert!(
        r.sql.starts_with("((data -> 'n') < $1::jsonb AND"),
        "{}",
        r.sql
    );
    // under NOT an error must stay NULL
    let r = render(&Predicate::Not(Box::new(lt)), Dialect::Sqlite, 1);
    assert!(r.sql.contains("CASE WHEN"), "{}", r.sql);
}

#[test]
fn user_text_is_never_inlined() {
    let evil = "x'); DROP TABLE docs; --";
    let p = Predicate::And(vec![
        Predicate::Compare {
            field: doc(&[evil, "b"]),
            op: CmpOp::Lt,
            value: json!(evil),
        },
        Predicate::In {
            field: doc(&[evil]),
            values: vec![json!(evil), json!(1), json!([evil])],
        },
        Predicate::Has {
            field: doc(&["ok", evil]),
        },
        Predicate::Compare {
            field: Field::Id,
            op: CmpOp::Ge,
            value: json!(evil),
        },
    ]);
    for d in [Dialect::Sqlite, Dialect::Postgres] {
        let r = render(&p, d, 1);
        assert!(!r.sql.contains("DROP"), "{}", r.sql);
        assert!(!r.params.is_empty());
    }
}

#[test]
fn placeholders_are_numbered_from_first_param() {
    let p = Predicate::Or(vec![
        Predicate::Compare {
            field: doc(&["a"]),
            op: CmpOp::Eq,
            value: json!(1),
        },
        Predicate::Compare {
            field: Field::Version,
            op: CmpOp::Gt,
            value: json!(2),
        },
    ]);
    let r = render(&p, Dialect::Postgres, 5);
    assert!(
        r.sql.contains("$5::jsonb") && r.sql.contains("$6::bigint"),
        "{}",
        r.sql
    );
    assert_eq!(r.params.len(), 2);
}
