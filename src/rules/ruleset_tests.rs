use super::*;

fn errors(src: &str) -> Vec<RuleSetError> {
    match RuleSet::parse(src) {
        Ok(_) => panic!("parsed:\n{src}"),
        Err(e) => e,
    }
}

/// 1-based column of `needle` on 1-based `line` of `src`.
fn col_of(src: &str, line: u32, needle: &str) -> u32 {
    let l = src.lines().nth(line as usize - 1).unwrap();
    l[..l.find(needle).unwrap()].chars().count() as u32 + 1
}

#[test]
fn shipped_rule_sets_parse_without_warnings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let example = RuleSet::parse(&std::fs::read_to_string(dir.join("example.toml")).unwrap())
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(example.warnings(), Vec::<String>::new());
    assert!(example.rule("notes", Operation::Read).is_some());
    assert!(example.rule("votes", Operation::Update).is_none());
    let indexes: Vec<Vec<String>> = example.collections["posts"]
        .indexes
        .iter()
        .map(|i| i.iter().map(ToString::to_string).collect())
        .collect();
    assert_eq!(indexes, [["published"], ["author"]]);
    let default =
        RuleSet::parse(&std::fs::read_to_string(dir.join("default.toml")).unwrap()).unwrap();
    assert!(default.collections.is_empty());
    assert!(RuleSet::deny_all().rule("notes", Operation::Read).is_none());
}

#[test]
fn errors_point_into_the_toml_file() {
    // (source, collection, operation, line, column, message fragment)
    let basic = "[notes]\nread = \"auth != null &&\"\n";
    let escaped = "[notes]\nread = \"doc.a == \\\"x\\\" && foo == 1\"\n";
    let literal = "[notes]\ncreate = 'new.a == \"é\" && bar'\n";
    let multi = "[notes]\nupdate = \"\"\"\nauth != null\n  && doc.x == 'é' && new.y <\n\"\"\"\n";
    let multi_lit = "[notes]\ndelete = '''\n  auth != null && baz\n'''\n";
    let unicode_escape = "[notes]\nread = \"doc.a == '\\u00e9' && qux\"\n";
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, u32, u32, &'a str);
    let cases: Vec<Case> = vec![
        (
            "[notes\nread = 'true'\n",
            None,
            None,
            1,
            7,
            "TOML syntax error",
        ),
        (
            "[Notes]\nread = 'true'\n",
            Some("Notes"),
            None,
            1,
            2,
            "invalid collection name",
        ),
        (
            "[notes]\nwrite = 'true'\n",
            Some("notes"),
            None,
            2,
            1,
            "unknown key 'write'",
        ),
        (
            "[notes]\nread = 1\n",
            Some("notes"),
            Some("read"),
            2,
            8,
            "must be a string",
        ),
        ("notes = 1\n", Some("notes"), None, 1, 1, "must be a table"),
        (
            basic,
            Some("notes"),
            Some("read"),
            2,
            24,
            "unexpected end of expression",
        ),
        (
            escaped,
            Some("notes"),
            Some("read"),
            2,
            col_of(escaped, 2, "foo"),
            "unknown variable 'foo'",
        ),
        (
            literal,
            Some("notes"),
            Some("create"),
            2,
            col_of(literal, 2, "bar"),
            "unknown variable 'bar'",
        ),
        (
            multi,
            Some("notes"),
            Some("update"),
            5,
            1,
            "end of expression",
        ),
        (
            multi_lit,
            Some("notes"),
            Some("delete"),
            3,
            col_of(multi_lit, 3, "baz"),
            "unknown variable 'baz'",
        ),
        (
            unicode_escape,
            Some("notes"),
            Some("read"),
            2,
            col_of(unicode_escape, 2, "qux"),
            "unknown variable 'qux'",
        ),
        (
            "[notes]\nread = \"auth != null && size(doc.tags) > 0\"\n",
            Some("notes"),
            Some("read"),
            2,
            25,
            "must translate to SQL",
        ),
        (
            "[notes]\nread = \"doc.a == new.a\"\n",
            Some("notes"),
            Some("read"),
            2,
            18,
            "'new' is not available",
        ),
        (
            "[notes]\nindexes = [[\"a-b\"]]\n",
            Some("notes"),
            Some("indexes"),
            2,
            13,
            "invalid index path 'a-b'",
        ),
        (
            "[notes]\nindexes = [[\"1a\"]]\n",
            Some("notes"),
            Some("indexes"),
            2,
            13,
            "invalid index path",
        ),
        (
            "[notes]\nindexes = [[]]\n",
            Some("notes"),
            Some("indexes"),
            2,
            12,
            "1 to 4 paths",
        ),
        (
            "[notes]\nindexes = [[\"a\", \"b\", \"c\", \"d\", \"e\"]]\n",
            Some("notes"),
            Some("indexes"),
            2,
            12,
            "1 to 4 paths",
        ),
        (
            "[notes]\nindexes = [\"a\"]\n",
            Some("notes"),
            Some("indexes"),
            2,
            12,
            "array of indexes",
        ),
        (
            "[notes]\nindexes = [[\"a\"],[\"b\"],[\"c\"],[\"d\"],[\"e\"],[\"f\"],[\"g\"],[\"h\"],[\"i\"]]\n",
            Some("notes"),
            Some("indexes"),
            2,
            11,
            "at most 8 indexes",
        ),
    ];
    for (src, collection, operation, line, column, fragment) in cases {
        let errs = errors(src);
        let e = &errs[0];
        assert!(
            e.collection.as_deref() == collection
                && e.operation.as_deref() == operation
                && e.line == line
                && e.column == column
                && e.message.contains(fragment),
            "{src:?}\n got {e:?}\n wanted {collection:?} {operation:?} {line}:{column} …{fragment}…"
        );
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let src =
        "[notes]\nread = 'foo'\ncreate = 'new.x =='\nwrite = 'true'\n\n[BAD]\nread = 'true'\n";
    let errs = errors(src);
    let lines: Vec<u32> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 6], "{errs:?}");
}

#[test]
fn raw_offsets_follow_toml_decoding() {
    let (text, offs) = raw_offsets(r#""a\tb\u00e9c""#).unwrap();
    assert_eq!(text, "a\tbéc");
    assert_eq!(offs, vec![1, 2, 4, 5, 5, 11, 12]);
    let (text, _) = raw_offsets("\"\"\"\nx \\\n   y\"\"\"").unwrap();
    assert_eq!(text, "x y");
    let (text, offs) = raw_offsets("'''\nab'''").unwrap();
    assert_eq!((text.as_str(), offs), ("ab", vec![4, 5, 6]));
}

#[test]
fn warnings_about_indexes() {
    let rs = RuleSet::parse(
        "[a]\nread = \"auth != null && doc.owner == auth.uid && doc.kind in ['x']\"\n\
         [b]\nread = \"doc.owner == auth.uid\"\nindexes = [[\"owner\", \"at\"]]\n\
         [c]\nread = \"doc.public || doc.owner == auth.uid\"\nindexes = [[\"owner\"]]\n\
         [d]\nread = \"doc.public || doc.owner == auth.uid\"\nindexes = [[\"owner\"], [\"public\"], [\"other\"]]\n\
         [e]\nread = \"id == auth.uid\"\n\
         [f]\nread = \"auth != null\"\nindexes = [[\"x\"]]\n\
         [g]\nindexes = [[\"x\"]]\n\
         [h]\nread = \"doc.n > 3\"\n",
    )
    .unwrap();
    let w = rs.warnings();
    let of = |c: &str| {
        w.iter()
            .filter(|m| m.starts_with(&format!("collection {c}:")))
            .collect::<Vec<_>>()
    };
    assert_eq!(of("a").len(), 1, "{w:?}");
    assert!(
        of("a")[0].contains("compares doc.owner, doc.kind but no index starts with them"),
        "{w:?}"
    );
    assert!(of("b").is_empty(), "{w:?}");
    assert_eq!(of("c").len(), 1, "{w:?}");
    assert!(
        of("c")[0].contains("no document field for equality"),
        "{w:?}"
    );
    assert_eq!(of("d").len(), 1, "{w:?}");
    assert!(of("d")[0].contains("index [other]"), "{w:?}");
    assert!(of("e").is_empty(), "{w:?}");
    assert!(of("f").is_empty(), "{w:?}");
    assert_eq!(of("g").len(), 1, "{w:?}");
    assert_eq!(of("h").len(), 1, "{w:?}");
}
