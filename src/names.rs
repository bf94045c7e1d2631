//! Shape checks of collection names, document ids, field paths and document data, and
//! the name types that carry a passed check.

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

/// `[A-Za-z_][A-Za-z0-9_]*`: a segment of a [`FieldPath`], and a key of a filter's
/// document path that the store may write into SQL text (it binds any other key).
pub fn valid_identifier(segment: &str) -> bool {
    let b = segment.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
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

/// A dotted path into a document's data (`author.id`): one or more segments, each
/// [`valid_identifier`]; built only by [`FieldPath::parse`]. Declared indexes and list
/// orders hold one, and the store writes it into SQL text (`ORDER BY`, `CREATE INDEX`),
/// which this grammar is what makes safe. There is no bound on the number of segments or
/// their length here; a caller that has one (the `order` parameter) checks it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

/// A text that is not a [`FieldPath`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a dotted path of names made of letters, digits and '_', not starting with a digit")]
pub struct FieldPathError;

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, FieldPathError> {
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.iter().all(|s| valid_identifier(s)) {
            Ok(FieldPath(segments))
        } else {
            Err(FieldPathError)
        }
    }

    /// The path's keys, outermost first; never empty.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
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
    fn field_paths_are_dotted_identifiers() {
        let p = FieldPath::parse("author.id_2").unwrap();
        assert_eq!(p.segments(), ["author", "id_2"]);
        assert_eq!(p.to_string(), "author.id_2");
        assert_eq!(FieldPath::parse("_x").unwrap().segments(), ["_x"]);
        // no limit on length or depth in the grammar itself
        let long = format!("{}.{}", "a".repeat(200), ["b"; 40].join("."));
        assert_eq!(FieldPath::parse(&long).unwrap().to_string(), long);
        for bad in [
            "",
            ".",
            ".a",
            "a.",
            "a..b",
            "1a",
            "a.1b",
            "a-b",
            "a b",
            "a.b c",
            "é",
            "a.$",
            "x'; DROP TABLE documents; --",
            "a[0]",
            "doc['a']",
        ] {
            assert_eq!(FieldPath::parse(bad), Err(FieldPathError), "{bad:?}");
        }
        assert!(valid_identifier("A_9") && !valid_identifier("9") && !valid_identifier(""));
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
