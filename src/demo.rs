//! The SMS voting demo, `plinth serve --demo`: on start it makes sure the `demo` tenant
//! exists with its Twilio secret, the `web-demo/` deploy bundle (embedded in the binary)
//! and the poll and tally documents; the server then serves the demo's page at `/demo/`
//! (see `http::demo_routes`). Everything here is idempotent: a restart on the same data
//! changes nothing that is already in place.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::admin::{Actor, AdminError, AdminService};
use crate::documents::{DocError, DocumentService, Preconditions};
use crate::functions::FunctionService;
use crate::secrets::SecretsService;

/// Signs a webhook as Twilio does, which is what `sms.js` verifies: base64(HMAC-SHA1(auth
/// token, the full URL followed by every POST parameter, name then value, sorted by
/// name)). For those that play Twilio: `sms-sim` and the tests.
pub fn twilio_signature<V: AsRef<str>>(token: &str, url: &str, params: &[(&str, V)]) -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `application/x-www-form-urlencoded` body of a webhook.
pub fn form_body<V: AsRef<str>>(params: &[(&str, V)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_ref())))
        .finish()
}

/// The tenant the demo lives in.
pub const TENANT: &str = "demo";
/// The poll the page shows, and the id of its tally.
pub const POLL: &str = "demo-poll";
/// The secret the `sms` function checks Twilio's signatures with.
pub const TWILIO_SECRET: &str = "TWILIO_AUTH_TOKEN";
/// The token set when neither `PLINTH_DEMO_TWILIO_TOKEN` nor an earlier secret gives one.
/// It is public (it is right here), so anyone can sign webhooks with it: local demos only.
pub const DEFAULT_TWILIO_TOKEN: &str = "plinth-demo-twilio-token";

/// `web-demo/`: the deploy bundle, as uploaded (path -> source).
pub const BUNDLE: &[(&str, &str)] = &[
    ("plinth.toml", include_str!("../web-demo/plinth.toml")),
    ("rules.toml", include_str!("../web-demo/rules.toml")),
    (
        "functions/sms.js",
        include_str!("../web-demo/functions/sms.js"),
    ),
    (
        "functions/tally.js",
        include_str!("../web-demo/functions/tally.js"),
    ),
    (
        "functions/validate.js",
        include_str!("../web-demo/functions/validate.js"),
    ),
];

/// A file of the demo's page.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The page (`web-demo/static/`) and the JavaScript client (`clients/js/src/`, under
/// `client/`), by path below `/demo/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        HTML,
        include_str!("../web-demo/static/index.html"),
    ),
    ("app.js", JS, include_str!("../web-demo/static/app.js")),
    (
        "style.css",
        CSS,
        include_str!("../web-demo/static/style.css"),
    ),
    (
        "client/auth.js",
        JS,
        include_str!("../clients/js/src/auth.js"),
    ),
    (
        "client/client.js",
        JS,
        include_str!("../clients/js/src/client.js"),
    ),
    (
        "client/documents.js",
        JS,
        include_str!("../clients/js/src/documents.js"),
    ),
    (
        "client/errors.js",
        JS,
        include_str!("../clients/js/src/errors.js"),
    ),
    (
        "client/index.js",
        JS,
        include_str!("../clients/js/src/index.js"),
    ),
    (
        "client/realtime.js",
        JS,
        include_str!("../clients/js/src/realtime.js"),
    ),
    (
        "client/storage.js",
        JS,
        include_str!("../clients/js/src/storage.js"),
    ),
    (
        "client/util.js",
        JS,
        include_str!("../clients/js/src/util.js"),
    ),
];

/// The file at `path` below `/demo/` (`""` is the index page).
pub fn asset(path: &str) -> Option<Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|&(_, content_type, body)| Asset { content_type, body })
}

/// The embedded bundle as a deploy takes it.
pub fn bundle() -> BTreeMap<String, String> {
    BUNDLE
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
}

/// Where the tenant's Twilio token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `PLINTH_DEMO_TWILIO_TOKEN` (`--demo-twilio-token`).
    Configured,
    /// No token was configured and none was stored: the well-known default.
    Default,
    /// The secret the tenant already had, kept.
    Kept,
}

/// What `prepare` found and did.
#[derive(Debug)]
pub struct Prepared {
    pub tenant_created: bool,
    pub token: TokenSource,
    /// The version a changed bundle was deployed as (None: the active one matched).
    pub deployed: Option<i64>,
    /// The documents created (`polls/demo-poll`, `tallies/demo-poll`), when absent.
    pub created: Vec<&'static str>,
}

/// The poll the demo starts with.
pub fn poll() -> Value {
    json!({
        "question": "Which colour should the Plinth logo be?",
        "options": ["red", "green", "blue", "gold"],
        "active": true,
    })
}

/// Its tally: every option at zero (the `tally` hook keeps it exact from then on).
pub fn tally() -> Value {
    json!({"poll": POLL, "counts": {"red": 0, "green": 0, "blue": 0, "gold": 0}})
}

/// The services the demo's setup uses, and nothing else of the server.
pub struct DemoServices<'a> {
    pub admin: &'a AdminService,
    pub secrets: &'a SecretsService,
    pub functions: &'a FunctionService,
    pub docs: &'a DocumentService,
}

/// Sets the demo up; `token` is the configured Twilio token, if any.
pub async fn prepare(services: DemoServices<'_>, token: Option<&str>) -> anyhow::Result<Prepared> {
    let actor = Actor("serve --demo".into());
    let DemoServices {
        admin,
        secrets,
        functions,
        docs,
    } = services;
    let tenant_created = match admin.get_tenant(TENANT).await {
        Ok(_) => false,
        Err(AdminError::TenantNotFound) => {
            let slug = crate::admin::parse_slug(TENANT)?;
            match admin.create_tenant(&actor, &slug, "SMS voting demo").await {
                Ok(_) => true,
                // Another node sharing the database got there first.
                Err(AdminError::TenantExists) => false,
                Err(e) => return Err(anyhow::anyhow!("creating the demo tenant: {e}")),
            }
        }
        Err(e) => return Err(anyhow::anyhow!("reading the demo tenant: {e}")),
    };
    let scope = admin.scope(&actor, TENANT).await?;

    let token = match token.filter(|t| !t.is_empty()) {
        Some(wanted) => {
            // Set only when it changed: each set is an audit entry. A stored value that no
            // longer decrypts (another secrets key) is replaced too.
            let current = secrets.env(&scope).await.ok();
            if current.as_ref().and_then(|env| env.get(TWILIO_SECRET)) != Some(&wanted.to_string())
            {
                admin
                    .set_secret(&actor, TENANT, TWILIO_SECRET, wanted)
                    .await?;
            }
            TokenSource::Configured
        }
        None => {
            let stored = admin.list_secrets(&actor, TENANT).await?;
            if stored.iter().any(|s| s.name == TWILIO_SECRET) {
                // Say so when the kept token is still the well-known one.
                let env = secrets.env(&scope).await.ok();
                match env.as_ref().and_then(|e| e.get(TWILIO_SECRET)) {
                    Some(v) if v == DEFAULT_TWILIO_TOKEN => TokenSource::Default,
                    _ => TokenSource::Kept,
                }
            } else {
                admin
                    .set_secret(&actor, TENANT, TWILIO_SECRET, DEFAULT_TWILIO_TOKEN)
                    .await?;
                TokenSource::Default
            }
        }
    };

    let files = bundle();
    let deployed = if functions.active_matches(&scope, &files).await? {
        None
    } else {
        let d = admin
            .deploy(&actor, TENANT, files)
            .await
            .map_err(|e| anyhow::anyhow!("deploying the demo bundle: {}", deploy_error(e)))?;
        Some(d.version)
    };

    let mut created = Vec::new();
    for (collection, data, name) in [
        ("polls", poll(), "polls/demo-poll"),
        ("tallies", tally(), "tallies/demo-poll"),
    ] {
        let (collection, id) = crate::names::parse_doc(collection, POLL)?;
        match docs.get(&scope, &collection, &id).await {
            Ok(_) => continue,
            Err(DocError::NotFound) => {}
            Err(e) => return Err(anyhow::anyhow!("reading {name}: {e}")),
        }
        let only_new = Preconditions {
            if_none_match_any: true,
            ..Default::default()
        };
        match docs.put(&scope, &collection, &id, data, only_new).await {
            Ok(_) => created.push(name),
            Err(DocError::Exists | DocError::PreconditionFailed(_)) => {}
            Err(e) => return Err(anyhow::anyhow!("creating {name}: {e}")),
        }
    }

    Ok(Prepared {
        tenant_created,
        token,
        deployed,
        created,
    })
}

/// A failed deploy of the embedded bundle, with every problem (a build that embedded a
/// broken bundle should say exactly where).
fn deploy_error(e: AdminError) -> String {
    match e {
        AdminError::Functions(crate::functions::FnError::InvalidBundle(errors)) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &str) -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".js") || n.ends_with(".html") || n.ends_with(".css"))
            .collect();
        names.sort();
        names
    }

    // The embedded lists are written out by hand (include_str! takes literal paths):
    // these fail when a file is added to the folders without being embedded.
    #[test]
    fn every_bundle_function_is_embedded() {
        for name in files_in("web-demo/functions") {
            let path = format!("functions/{name}");
            assert!(
                BUNDLE.iter().any(|(p, _)| *p == path),
                "web-demo/{path} is not in demo::BUNDLE"
            );
        }
    }

    #[test]
    fn every_client_module_and_page_file_is_served() {
        for name in files_in("clients/js/src") {
            assert!(
                asset(&format!("client/{name}")).is_some(),
                "clients/js/src/{name} is not served under /demo/client/"
            );
        }
        for name in files_in("web-demo/static") {
            assert!(
                asset(&name).is_some(),
                "web-demo/static/{name} is not served"
            );
        }
    }

    #[test]
    fn assets_have_their_content_types() {
        assert_eq!(asset("").map(|a| a.content_type), Some(HTML));
        assert_eq!(asset("index.html").map(|a| a.content_type), Some(HTML));
        assert_eq!(asset("client/index.js").map(|a| a.content_type), Some(JS));
        assert_eq!(asset("style.css").map(|a| a.content_type), Some(CSS));
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("client/").is_none());
    }
}
