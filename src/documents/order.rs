//! The `order` parameter of lists.

use super::DocError;
use crate::rules::Field;
use crate::store::OrderKey;

pub const MAX_ORDER_KEYS: usize = 4;

/// `order=field,-other`: meta fields by name (id, version, created_at, updated_at),
/// anything else a dotted path into the data (optionally prefixed `doc.`).
/// Keys without `created_at` get it appended (see below).
pub fn parse_order(src: &str) -> Result<Vec<OrderKey>, DocError> {
    let src = src.trim();
    if src.is_empty() {
        return Ok(vec![OrderKey {
            field: Field::CreatedAt,
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
            "id" => Field::Id,
            "version" => Field::Version,
            "created_at" => Field::CreatedAt,
            "updated_at" => Field::UpdatedAt,
            _ => {
                let path = name.strip_prefix("doc.").unwrap_or(name);
                let segs: Vec<String> = path.split('.').map(str::to_string).collect();
                let ok = !path.is_empty()
                    && segs.iter().all(|s| {
                        let b = s.as_bytes();
                        !b.is_empty()
                            && b.len() <= 64
                            && (b[0].is_ascii_alphabetic() || b[0] == b'_')
                            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    });
                if !ok {
                    return Err(bad(format!(
                        "'{name}' is not a field: use id, version, created_at, updated_at or a dotted path of identifiers"
                    )));
                }
                Field::Doc(segs)
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
            field: Field::Id,
            ..
        })
    );
    if !unique_last && !keys.iter().any(|k| k.field == Field::CreatedAt) {
        let desc = keys.last().is_some_and(|k| k.desc);
        keys.push(OrderKey {
            field: Field::CreatedAt,
            desc,
        });
    }
    Ok(keys)
}
