//! The admin console's files (`console/`), embedded in the binary and served at `/_/` by
//! `http::console_routes`. The console is a client of the public admin and tenant APIs;
//! nothing here is an API of its own.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Embeds `console/<path>` for each path (include_bytes! needs literal paths; a unit test
/// fails when a file in `console/` is left out).
macro_rules! files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../console/", $path)) as &[u8])),*]
    };
}

const FILES: &[(&str, &[u8])] = files![
    "index.html",
    "app.css",
    "code-editor.css",
    "js/main.js",
    "js/api.js",
    "js/ui.js",
    "js/code-editor.js",
    "js/toml-tokens.js",
    "js/pages/auth.js",
    "js/pages/overview.js",
    "js/pages/tenants.js",
    "js/pages/users.js",
    "js/pages/data.js",
    "js/pages/rules.js",
    "js/pages/keys.js",
    "js/pages/audit.js",
    "js/pages/functions.js",
    "js/pages/usage.js",
    "js/pages/admins.js",
    "vendor/preact.mjs",
    "vendor/hooks.mjs",
    "vendor/htm.mjs",
    "vendor/uplot.iife.min.js",
    "vendor/uplot.min.css",
];

pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// A strong ETag from the content, so a browser revalidates cheaply (304).
    pub etag: &'static str,
}

static ASSETS: LazyLock<Vec<(&'static str, Asset)>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(path, body)| {
            let hash = hex::encode(&Sha256::digest(body)[..12]);
            let asset = Asset {
                content_type: content_type(path),
                body,
                etag: Box::leak(format!("\"{hash}\"").into_boxed_str()),
            };
            (path, asset)
        })
        .collect()
});

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => HTML,
        Some("css") => CSS,
        _ => JS,
    }
}

/// What `/_/<path>` serves: the file at `path`; the page itself for a path that names no
/// file (the console routes in the browser, so `/_/tenants/x/data` must load it); `None`
/// for a missing file (a path with an extension, or under a folder of files).
pub fn asset(path: &str) -> Option<&'static Asset> {
    if let Some((_, a)) = ASSETS.iter().find(|(p, _)| *p == path) {
        return Some(a);
    }
    let last = path.rsplit('/').next().unwrap_or("");
    if last.contains('.') || path.starts_with("js/") || path.starts_with("vendor/") {
        return None;
    }
    ASSETS
        .iter()
        .find(|(p, _)| *p == "index.html")
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("console/ is readable") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{prefix}{name}");
            if entry.file_type().expect("type").is_dir() {
                files_under(&entry.path(), &format!("{path}/"), out);
            } else if [".html", ".css", ".js", ".mjs"]
                .iter()
                .any(|e| name.ends_with(e))
            {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_console_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut found = Vec::new();
        files_under(&root, "", &mut found);
        assert!(found.len() >= 10, "{found:?}");
        for path in found {
            assert!(
                FILES.iter().any(|(p, _)| *p == path),
                "console/{path} is not embedded in console::FILES"
            );
        }
    }

    #[test]
    fn unknown_paths_load_the_page_and_missing_files_do_not() {
        let index = asset("index.html").expect("index").etag;
        for page in ["", "tenants", "tenants/demo/data/votes", "setup"] {
            assert_eq!(asset(page).map(|a| a.etag), Some(index), "{page}");
        }
        for missing in [
            "js/nope.js",
            "vendor/x",
            "favicon.ico",
            "../Cargo.toml",
            "app.css.map",
        ] {
            assert!(asset(missing).is_none(), "{missing}");
        }
        assert_eq!(asset("js/api.js").map(|a| a.content_type), Some(JS));
        assert_eq!(asset("vendor/preact.mjs").map(|a| a.content_type), Some(JS));
        assert_eq!(asset("app.css").map(|a| a.content_type), Some(CSS));
        assert_ne!(asset("app.css").map(|a| a.etag), Some(index));
    }
}
