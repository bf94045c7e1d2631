//! The `order` parameter of lists.

use super::DocError;
use crate::names::FieldPath;
use crate::query::OrderField;
use crate::store::OrderKey;

pub const MAX_ORDER_KEYS: usize = 4;
/// The longest name in a path of the `order` parameter, in bytes: a limit of the
/// parameter, not of the path grammar (declared index paths have none).
pub const MAX_ORDER_SEGMENT: usize = 64;

/// `order=field,-other`: meta fields by name (id, version, created_at, updated_at),
/// anything else a dotted path into the data (optionally prefixed `doc.`).
/// Keys without `created_at` get it appended (see below).
pub fn parse_order(src: &str) -> Result<Vec<OrderKey>, DocError> {
    let src = src.trim();
    if src.is_empty() {
        return Ok(vec![OrderKey {
            field: OrderField::CreatedAt,
            desc: false,
        }]);
    }
    let bad = |m: String| DocError::InvalidParam {
        param: "order",
        message: m,
    };
    let mut keys = Vec::new();
    for part in src.split(',') {
        let part = part.trim();
        let (desc, name) = match part.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, part.strip_prefix('+').unwrap_or(part)),
        };
        let field = match name {
            "id" => OrderField::Id,
            "version" => OrderField::Version,
            "created_at" => OrderField::CreatedAt,
            "updated_at" => OrderField::UpdatedAt,
            _ => {
                let path = name.strip_prefix("doc.").unwrap_or(name);
                match FieldPath::parse(path) {
                    Ok(p) if p.segments().iter().all(|s| s.len() <= MAX_ORDER_SEGMENT) => {
                        OrderField::Doc(p)
                    }
                    _ => {
                        return Err(bad(format!(
                            "'{name}' is not a field: use id, version, created_at, updated_at or a dotted path of identifiers"
                        )));
                    }
                }
            }
        };
        keys.push(OrderKey { field, desc });
    }
    if keys.len() > MAX_ORDER_KEYS {
        return Err(bad(format!("at most {MAX_ORDER_KEYS} fields")));
    }
    // Equal keys are ordered by the default order (created_at, then the tie-break), the
    // keys every declared index ends with: `order=score` on an index of
    // `["owner", "score"]` then reads in index order, without a sort.
    let unique_last = matches!(
        keys.last(),
        Some(OrderKey {
            field: OrderField::Id,
            ..
        })
    );
    if !unique_last && !keys.iter().any(|k| k.field == OrderField::CreatedAt) {
        let desc = keys.last().is_some_and(|k| k.desc);
        keys.push(OrderKey {
            field: OrderField::CreatedAt,
            desc,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(keys: &[OrderKey]) -> Vec<String> {
        keys.iter()
            .filter_map(|k| match &k.field {
                OrderField::Doc(p) => Some(p.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn paths_follow_the_field_path_grammar_with_the_parameter_s_limit() {
        assert_eq!(doc(&parse_order("doc.a.b,-c").unwrap()), ["a.b", "c"]);
        let longest = "x".repeat(MAX_ORDER_SEGMENT);
        assert!(parse_order(&format!("a.{longest}")).is_ok());
        for bad in [
            ".a",
            "a.",
            "a..b",
            "doc.",
            "1a",
            "a-b",
            "a.b c",
            &format!("{longest}x"),
        ] {
            assert!(
                matches!(
                    parse_order(bad),
                    Err(DocError::InvalidParam { param: "order", .. })
                ),
                "{bad:?}"
            );
        }
        let keys = parse_order("-score").unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[1].field == OrderField::CreatedAt && keys[1].desc);
    }
}
