//! HTTP calls to the server under test, their answers, and the account helpers (admin
//! setup, tenants, sign-ups, keys) built on them.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{PASSWORD, TestApp};

/// A signed-in end user.
#[derive(Clone, Debug)]
pub struct Session {
    pub user_id: String,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

impl Session {
    pub fn from_json(v: &Value) -> Session {
        Session {
            user_id: v["user"]["id"].as_str().expect("user.id").to_string(),
            email: v["user"]["email"].as_str().expect("user.email").to_string(),
            access: v["access_token"]
                .as_str()
                .expect("access_token")
                .to_string(),
            refresh: v["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_string(),
        }
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts a problem+json answer with this status and code; returns the body.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text
        );
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/problem+json"),
            "content-type {ct}: {}",
            self.text
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{}", self.text);
        assert_eq!(body["status"], status, "{}", self.text);
        assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["detail"].as_str().is_some(), "{}", self.text);
        body
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.text
        );
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            text,
        }
    }

    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.req(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(self.req(Method::POST, path, token).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(self.req(Method::PATCH, path, token).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.req(Method::DELETE, path, token)).await
    }

    /// The first admin's token (created through the setup endpoint on first use).
    pub async fn admin(&mut self) -> String {
        if let Some(t) = &self.admin_token {
            return t.clone();
        }
        let token = self.setup_token().expect("fresh app has a setup token");
        let r = self
            .post(
                "/admin/v1/setup",
                None,
                json!({"token": token, "email": "root@plinth.test", "password": PASSWORD}),
            )
            .await;
        let t = r.ok(201)["access_token"]
            .as_str()
            .expect("token")
            .to_string();
        self.admin_token = Some(t.clone());
        t
    }

    pub async fn create_tenant(&mut self, slug: &str) -> Value {
        let admin = self.admin().await;
        self.post(
            "/admin/v1/tenants",
            Some(&admin),
            json!({"slug": slug, "name": slug}),
        )
        .await
        .ok(201)
    }

    pub async fn signup(&self, tenant: &str, email: &str) -> Session {
        let r = self
            .post(
                &format!("/v1/t/{tenant}/auth/signup"),
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        Session::from_json(&r.ok(201))
    }

    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> Reply {
        self.post(
            &format!("/v1/t/{tenant}/auth/login"),
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// A login from `ip`, as a trusted proxy would forward it (the server needs
    /// `trust_forwarded_for`).
    pub async fn login_from(&self, ip: &str, tenant: &str, email: &str, password: &str) -> Reply {
        self.send(
            self.req(Method::POST, &format!("/v1/t/{tenant}/auth/login"), None)
                .header("x-forwarded-for", ip)
                .json(&json!({"email": email, "password": password})),
        )
        .await
    }

    pub async fn create_key(&mut self, tenant: &str, name: &str) -> Value {
        let admin = self.admin().await;
        self.post(
            &format!("/admin/v1/tenants/{tenant}/keys"),
            Some(&admin),
            json!({"name": name}),
        )
        .await
        .ok(201)
    }

    /// Number of users of a tenant, as the admin API sees them.
    pub async fn user_count(&mut self, tenant: &str) -> usize {
        let admin = self.admin().await;
        let r = self
            .get(
                &format!("/admin/v1/tenants/{tenant}/users?limit=1000"),
                Some(&admin),
            )
            .await;
        r.ok(200)["items"].as_array().expect("items").len()
    }
}

/// The slowest of `n` `/healthz` answers, 10 ms apart: run beside an attack, it shows
/// whether the server kept serving (print it; assert only a generous bound).
pub async fn worst_healthz(app: &TestApp, n: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let t = std::time::Instant::now();
        app.get("/healthz", None).await.ok(200);
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worst
}
