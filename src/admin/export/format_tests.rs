use super::*;

fn header() -> Header {
    Header {
        format: FORMAT.into(),
        version: VERSION,
        source_backend: "sqlite".into(),
        exported_at: 1,
        tenant: TenantSettings {
            slug: "acme".into(),
            name: "Acme".into(),
            suspended: false,
            cors_origins: vec![],
        },
        secrets_included: true,
        secrets_count: 1,
    }
}

fn file() -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.line(&Line::Header(header())).unwrap();
    w.line(&Line::Document(DocumentLine {
        collection: "notes".into(),
        id: "n1".into(),
        version: 2,
        data: serde_json::json!({"a": [1, "é"]}),
        created_at: 1,
        updated_at: 2,
    }))
    .unwrap();
    w.line(&Line::Secret(SecretLine {
        name: "K".into(),
        value: "v".into(),
        updated_at: 3,
    }))
    .unwrap();
    let counts = w.finish().unwrap();
    assert_eq!(counts.values().sum::<u64>(), 2);
    out
}

#[test]
fn what_is_written_reads_back() {
    let parsed = read(&file()[..]).unwrap();
    assert_eq!(parsed.header.tenant.slug, "acme");
    assert_eq!(parsed.records.len(), 2);
    assert_eq!(parsed.counts["document"], 1);
    assert!(matches!(&parsed.records[1], Line::Secret(s) if s.value == "v"));
}

#[test]
fn every_cut_is_refused() {
    let f = file();
    for end in 0..f.len() - 1 {
        assert!(
            read(&f[..end]).is_err(),
            "a file cut at byte {end} was read"
        );
    }
}

#[test]
fn an_altered_byte_is_refused() {
    let f = String::from_utf8(file()).unwrap();
    let altered = f.replace("\"version\":2", "\"version\":3");
    assert_ne!(altered, f);
    let e = read(altered.as_bytes()).unwrap_err();
    assert!(e.contains("checksum"), "{e}");
}

#[test]
fn lines_after_the_trailer_and_wrong_versions_are_refused() {
    let mut f = file();
    f.extend_from_slice(b"{\"type\":\"secret\",\"name\":\"X\",\"value\":\"\",\"updated_at\":0}\n");
    assert!(read(&f[..]).unwrap_err().contains("after the trailer"));
    let f = String::from_utf8(file())
        .unwrap()
        .replacen("\"version\":1", "\"version\":9", 1);
    assert!(read(f.as_bytes()).unwrap_err().contains("version 9"));
}

/// A user line as files already written hold it: `UserRecord` is kept apart from the
/// store's `UserRow` so that the row may change without changing this.
#[test]
fn a_user_line_keeps_its_format() {
    let line = Line::User(UserRecord {
        id: "u1".into(),
        email: "a@example.com".into(),
        password_hash: "$argon2id$x".into(),
        email_verified: true,
        disabled: false,
        created_at: 1,
        updated_at: 2,
    });
    let json = serde_json::json!({"type": "user", "id": "u1", "email": "a@example.com",
        "password_hash": "$argon2id$x", "email_verified": true, "disabled": false,
        "created_at": 1, "updated_at": 2});
    assert_eq!(serde_json::to_value(&line).unwrap(), json);
    let back: Line = serde_json::from_value(json).unwrap();
    assert!(matches!(back, Line::User(u) if u.id == "u1" && u.email_verified));
}
