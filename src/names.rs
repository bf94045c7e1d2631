//! Shape checks of collection names, document ids and document data, and the name types
//! that carry a passed check.

use serde_json::Value;

/// `^[a-z][a-z0-9_]{0,62}$`
pub fn valid_collection(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// 1-128 of `[A-Za-z0-9_-]`.
pub fn valid_doc_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Why a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid collection name")]
    Collection,
    #[error("invalid document id")]
    DocId,
}

/// A collection name that obeys [`valid_collection`]: built only by [`CollectionName::parse`],
/// so code that holds one needs no check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CollectionName(String);

impl CollectionName {
    pub fn parse(name: &str) -> Result<CollectionName, NameError> {
        if valid_collection(name) {
            Ok(CollectionName(name.to_string()))
        } else {
            Err(NameError::Collection)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A document id that obeys [`valid_doc_id`]; built only by [`DocId::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DocId(String);

impl DocId {
    pub fn parse(id: &str) -> Result<DocId, NameError> {
        if valid_doc_id(id) {
            Ok(DocId(id.to_string()))
        } else {
            Err(NameError::DocId)
        }
    }

    /// A new UUIDv7 (time-ordered), which is always a valid id.
    pub fn new_v7() -> DocId {
        DocId(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A document's collection and id as they arrive (HTTP path, batch body, `ctx.db`
/// arguments), checked in that order, so a request wrong in both names the collection.
pub fn parse_doc(collection: &str, id: &str) -> Result<(CollectionName, DocId), NameError> {
    Ok((CollectionName::parse(collection)?, DocId::parse(id)?))
}

impl std::fmt::Display for CollectionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Nesting depth of a JSON value: a scalar is 0, `{}` is 1, `{"a":{}}` is 2.
pub fn depth(v: &Value) -> usize {
    // Iterative, so a hostile document cannot overflow the stack here.
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                max = max.max(d + 1);
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            Value::Array(a) => {
                max = max.max(d + 1);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// True when any string or key holds U+0000, which PostgreSQL's jsonb cannot store; it is
/// refused on every backend so documents behave the same everywhere.
pub fn has_nul(v: &Value) -> bool {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Object(m) => {
                if m.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(valid_collection("votes") && valid_collection("a") && valid_collection("a_1"));
        assert!(!valid_collection("") && !valid_collection("1a") && !valid_collection("A"));
        assert!(!valid_collection(&"a".repeat(64)) && valid_collection(&"a".repeat(63)));
        assert!(valid_doc_id("abc-DEF_123") && !valid_doc_id("") && !valid_doc_id("a b"));
        assert!(!valid_doc_id(&"a".repeat(129)) && !valid_doc_id("é"));
        assert_eq!(CollectionName::parse("votes").unwrap().as_str(), "votes");
        assert_eq!(CollectionName::parse("Votes"), Err(NameError::Collection));
        assert_eq!(DocId::parse("a-1").unwrap().to_string(), "a-1");
        assert_eq!(DocId::parse("a/1"), Err(NameError::DocId));
        assert!(DocId::parse(DocId::new_v7().as_str()).is_ok());
    }

    #[test]
    fn nul() {
        assert!(has_nul(&json!({"a": ["x\u{0000}"]})));
        assert!(has_nul(&json!({"k\u{0000}": 1})));
        assert!(!has_nul(&json!({"a": "b"})));
    }

    #[test]
    fn depths() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [{"b": 1}]})), 3);
    }
}
