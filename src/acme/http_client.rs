//! instant-acme's requests sent through reqwest, the HTTP client Plinth already has
//! (rustls with ring, the system's roots and an optional extra one). instant-acme's own
//! client would bring hyper-rustls and, with its default features, aws-lc.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use super::AcmeError;

pub struct ReqwestClient(reqwest::Client);

impl ReqwestClient {
    /// A client that also trusts the certificates in `ca_root` (a PEM file).
    pub fn new(ca_root: Option<&Path>) -> Result<ReqwestClient, AcmeError> {
        // reqwest's rustls has no crypto provider of its own here (as in `cli::remote`).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("plinth/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_root {
            let ca_err = |reason: String| AcmeError::CaRoot {
                path: path.to_path_buf(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(format!("cannot read it ({e})")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_err(format!("not a PEM certificate file ({e})")))?;
            if certs.is_empty() {
                return Err(ca_err("no PEM CERTIFICATE block in it".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| AcmeError::Setup(format!("HTTP client: {e}")))?;
        Ok(ReqwestClient(client))
    }
}

impl HttpClient for ReqwestClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // A JWS document held in memory: collecting it cannot fail.
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let other = |e: reqwest::Error| instant_acme::Error::Other(Box::new(e));
            let rsp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(other)?;
            let mut head = http::Response::new(());
            *head.status_mut() = rsp.status();
            *head.headers_mut() = rsp.headers().clone();
            let bytes = rsp.bytes().await.map_err(other)?;
            let (parts, ()) = head.into_parts();
            Ok(BytesResponse {
                parts,
                body: Box::new(bytes),
            })
        })
    }
}
