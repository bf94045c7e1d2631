//! The local `plinth` CLI and a moving tenant: the CLI is a process of its own, whose
//! writes no server's freeze stops, so its changes to a tenant's data are refused while
//! a move holds the tenant (here, one whose mover died half-way), as the admin API's are.

use std::path::Path;

use crate::backend_tests;
use crate::cli::{plinth, plinth_env};
use crate::documents::tenant_with_key;
use crate::placement::second_cluster;
use crate::placement_recovery::{crashed_move, past_the_lease, restart};
use crate::support::*;

backend_tests!(cli_changes_are_refused_while_the_tenant_moves);

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Runs the CLI; (success, stdout and stderr).
fn run(storage: &Storage, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let o = plinth(storage, args, stdin);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// Every change of the tenant's data through the CLI exits non-zero saying the tenant is
/// moving, and changes nothing; changes to its control row only (suspend, resume) go
/// through, as over HTTP. Once the move is rolled back, the same commands work.
async fn cli_changes_are_refused_while_the_tenant_moves(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let cluster = format!("eu2={url}");
    let mut app = restart(b, Storage::fresh(b).await, &url).await;
    let admin = app.admin().await;
    tenant_with_key(&mut app, "shop").await;
    let storage = app.stop().await;

    let files = tempfile::tempdir().unwrap();
    write(
        files.path(),
        "rules.toml",
        "[notes]\nread = \"auth != null\"\ncreate = \"true\"\n",
    );
    write(
        files.path(),
        "bundle/plinth.toml",
        "[[http]]\nname = \"hi\"\nfunction = \"hi\"\n",
    );
    write(
        files.path(),
        "bundle/functions/hi.js",
        "export default () => 'hi'",
    );
    let rules = files.path().join("rules.toml").display().to_string();
    let bundle = files.path().join("bundle").display().to_string();
    let changes: Vec<(Vec<&str>, Option<&str>)> = vec![
        (
            vec!["rules", "deploy", rules.as_str(), "--tenant", "shop"],
            None,
        ),
        (vec!["deploy", bundle.as_str(), "--tenant", "shop"], None),
        (vec!["deploy", "activate", "1", "--tenant", "shop"], None),
        (
            vec!["secret", "set", "TOKEN", "--tenant", "shop"],
            Some("v"),
        ),
        (vec!["secret", "delete", "TOKEN", "--tenant", "shop"], None),
        (
            vec!["key", "create", "--tenant", "shop", "--name", "k2"],
            None,
        ),
        (
            vec!["users", "create", "new@shop.test", "--tenant", "shop"],
            None,
        ),
        (vec!["tenant", "delete", "shop", "--yes"], None),
    ];

    let crashed = crashed_move(&storage, &cluster, "eu2", "after-copy");
    for (args, stdin) in &changes {
        let (ok, out) = run(&storage, args, *stdin);
        assert!(!ok, "{args:?} went through a moving tenant: {out}");
        assert!(out.contains("moving"), "{args:?}: {out}");
    }
    for args in [["tenant", "suspend", "shop"], ["tenant", "resume", "shop"]] {
        let (ok, out) = run(&storage, &args, None);
        assert!(ok, "{args:?}: {out}");
    }

    // Nothing changed: no rules, deploy, secret or extra key; the tenant is there.
    let app = restart(b, storage, &url).await;
    let t = app
        .get("/admin/v1/tenants/shop", Some(&admin))
        .await
        .ok(200);
    assert_eq!(t["moving"], true, "{t}");
    assert_eq!(t["suspended"], false, "{t}");
    for (path, empty) in [
        ("deploys", true),
        ("secrets", true),
        ("keys", false),
        ("users", true),
    ] {
        let list = app
            .get(&format!("/admin/v1/tenants/shop/{path}"), Some(&admin))
            .await
            .ok(200);
        let n = list["items"].as_array().map_or(0, Vec::len);
        assert_eq!(n == 0, empty, "{path}: {list}");
        if path == "keys" {
            assert_eq!(n, 1, "{list}");
        }
    }
    let storage = app.stop().await;

    // The move rolled back, the CLI's changes go through.
    past_the_lease(crashed).await;
    let o = plinth_env(
        &storage,
        &["tenant", "move", "shop", "--to", "default"],
        None,
        &[("PLINTH_CLUSTERS", cluster.as_str())],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (args, stdin) in &changes[..4] {
        let (ok, out) = run(&storage, args, *stdin);
        assert!(ok, "{args:?} after the move: {out}");
    }
}
