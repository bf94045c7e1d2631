use std::time::Duration;

use super::manifest::{is_stamp, stamp};
use super::*;

#[test]
fn intervals() {
    assert_eq!(parse_interval("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_interval("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_interval(" 1h "), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_interval("1d"), Ok(Duration::from_secs(86_400)));
    for bad in ["", "h", "0s", "1w", "-1h", "1.5h", "1 h"] {
        assert!(parse_interval(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn stamps_sort_by_time_and_partials_are_not_stamps() {
    let a = chrono::DateTime::parse_from_rfc3339("2026-12-06T09:59:59.999Z")
        .unwrap()
        .to_utc();
    let b = a + chrono::Duration::milliseconds(1);
    let (sa, sb) = (stamp(a), stamp(b));
    assert_eq!(sa, "20261206T095959.999Z");
    assert!(sa < sb, "{sa} {sb}");
    assert!(is_stamp(&sa) && is_stamp(&sb));
    assert!(!is_stamp(&format!(".{sa}.partial")));
    assert!(!is_stamp("notes"));
}

fn fake_backup(dir: &std::path::Path, name: &str, with_manifest: bool) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    if with_manifest {
        std::fs::write(dir.join(name).join(MANIFEST_FILE), "{}").unwrap();
    }
}

#[test]
fn prune_keeps_the_newest_and_touches_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for s in [
        "20260101T000000.000Z",
        "20260102T000000.000Z",
        "20260103T000000.000Z",
        "20260104T000000.000Z",
    ] {
        fake_backup(dir, s, true);
    }
    fake_backup(dir, ".20260105T000000.000Z.partial", false);
    fake_backup(dir, "20260106T000000.000Z", false); // no manifest: not a backup
    fake_backup(dir, "mine", true);
    let removed = prune(dir, 2).unwrap();
    let names = |v: Vec<std::path::PathBuf>| {
        v.iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(removed),
        vec!["20260101T000000.000Z", "20260102T000000.000Z"]
    );
    assert_eq!(
        names(list(dir).unwrap()),
        vec!["20260103T000000.000Z", "20260104T000000.000Z"]
    );
    for other in [
        ".20260105T000000.000Z.partial",
        "20260106T000000.000Z",
        "mine",
    ] {
        assert!(dir.join(other).exists(), "{other}");
    }
    // keep 0 means 1: a schedule never empties its directory.
    assert_eq!(prune(dir, 0).unwrap().len(), 1);
    assert_eq!(list(dir).unwrap().len(), 1);
}

fn manifest_with(backend: &str, paths: &[&str]) -> String {
    let files: Vec<serde_json::Value> = paths
        .iter()
        .map(|p| serde_json::json!({"path": p, "bytes": 1, "sha256": "00"}))
        .collect();
    serde_json::json!({
        "format": "plinth-backup", "format_version": 1, "plinth_version": "0.1.0",
        "backend": backend, "schema_version": 1,
        "started_at": "2026-12-06T10:00:00Z", "finished_at": "2026-12-06T10:00:01Z",
        "files": files,
    })
    .to_string()
}

#[test]
fn manifests_name_only_files_a_backup_makes() {
    let tmp = tempfile::tempdir().unwrap();
    let read = |text: &str| {
        std::fs::write(tmp.path().join(MANIFEST_FILE), text).unwrap();
        Manifest::read(tmp.path())
    };
    assert!(
        read(&manifest_with(
            "sqlite",
            &["control.db", "tenants/tenant-12.db"]
        ))
        .is_ok()
    );
    assert!(read(&manifest_with("postgres", &["plinth.dump"])).is_ok());
    for bad in [
        manifest_with("sqlite", &["control.db", "../etc/passwd"]),
        manifest_with("sqlite", &["/control.db"]),
        manifest_with("sqlite", &["tenants/tenant-1.db"]),
        manifest_with("sqlite", &["control.db", "tenants/tenant-x.db"]),
        manifest_with("postgres", &["control.db"]),
        manifest_with("mysql", &["plinth.dump"]),
        manifest_with("postgres", &[]),
        "{not json".to_string(),
    ] {
        assert!(
            matches!(read(&bad), Err(BackupError::Damaged { .. })),
            "{bad}"
        );
    }
    let newer = manifest_with("postgres", &["plinth.dump"])
        .replace("\"format_version\":1", "\"format_version\":2");
    assert!(matches!(read(&newer), Err(BackupError::Refused(_))));
    std::fs::remove_file(tmp.path().join(MANIFEST_FILE)).unwrap();
    assert!(matches!(
        Manifest::read(tmp.path()),
        Err(BackupError::Refused(_))
    ));
}

#[cfg(unix)]
#[test]
fn clear_partials_removes_only_unheld_partial_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fake_backup(dir, "20260101T000000.000Z", true);
    fake_backup(dir, ".20260102T000000.000Z.partial", false);
    fake_backup(dir, ".20260103T000000.000Z.partial", false);
    fake_backup(dir, ".mine.partial", false);
    fake_backup(dir, ".2026.partial", false);
    // A link named like a partial folder, to a folder of the operator's: not followed.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("keep"), "x").unwrap();
    std::os::unix::fs::symlink(&theirs, dir.join(".20260104T000000.000Z.partial")).unwrap();
    // One still being written: its lock is held.
    let held = files::lock_dir(&dir.join(".20260103T000000.000Z.partial")).unwrap();

    let removed = clear_partials(dir);
    let names: Vec<String> = removed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [".20260102T000000.000Z.partial"]);
    for kept in [
        "20260101T000000.000Z",
        ".20260103T000000.000Z.partial",
        ".mine.partial",
        ".2026.partial",
        ".20260104T000000.000Z.partial",
    ] {
        assert!(dir.join(kept).exists(), "{kept} was removed");
    }
    assert!(theirs.join("keep").is_file());
    // A second lock on a held folder is refused.
    assert!(files::lock_dir(&dir.join(".20260103T000000.000Z.partial")).is_err());
    drop(held);
    assert_eq!(clear_partials(dir).len(), 1);
}
