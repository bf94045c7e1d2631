//! `plinth healthcheck`: one HTTP GET of /healthz on the configured listen address, for
//! container health checks (the runtime image has no curl). Exit 0 on a 200, 1 otherwise.
//! When the server serves TLS (`PLINTH_TLS_CERT` is set) the probe speaks TLS too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// The server's listen address (the same setting as `serve --listen`); a wildcard
    /// address is probed on loopback.
    #[arg(long, env = "PLINTH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// The server's TLS certificate file (the same setting as `serve --tls-cert`): when
    /// set, the probe speaks HTTPS. Only its presence matters: the probe goes to
    /// loopback, where a certificate for the public name could not match anyway.
    #[arg(long, env = "PLINTH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The server's ACME domains (the same setting as `serve --acme-domain`): when set,
    /// the probe speaks HTTPS too (and fails until the first certificate is obtained).
    #[arg(
        long = "acme-domain",
        env = "PLINTH_ACME_DOMAIN",
        value_delimiter = ','
    )]
    pub acme_domains: Vec<String>,
}

/// Where to connect for a server listening on `listen`: a wildcard cannot be connected
/// to, the same port on loopback reaches it.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let addr = probe_addr(args.listen);
    let tls = args.tls_cert.is_some_and(|p| !p.as_os_str().is_empty())
        || args.acme_domains.iter().any(|d| !d.trim().is_empty());
    let url = format!("{}://{addr}/healthz", if tls { "https" } else { "http" });
    let wait = Duration::from_secs(args.timeout.max(1));
    let status = tokio::time::timeout(wait, connect_and_get(addr, tls))
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within {wait:?}"))??;
    anyhow::ensure!(status == 200, "{url} answered {status}, not 200");
    println!("ok: {url}");
    Ok(())
}

async fn connect_and_get(addr: SocketAddr, tls: bool) -> anyhow::Result<u16> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?;
    if !tls {
        return get_status(tcp, addr).await;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::from(addr.ip()), tcp)
        .await
        .map_err(|e| anyhow::anyhow!("TLS handshake with {addr} failed: {e}"))?;
    get_status(stream, addr).await
}

/// Accepts whatever certificate the server shows (its signatures are still checked):
/// a liveness probe of our own process over loopback sends nothing secret, and must not
/// fail because the certificate names the public host, or has just expired.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn get_status<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
) -> anyhow::Result<u16> {
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: plinth-healthcheck\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    // The status line is all that is needed; the body is small but need not be read.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status(&head).ok_or_else(|| anyhow::anyhow!("{addr} did not answer with HTTP"))
}

/// The status code of an HTTP/1.x status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_probed_on_loopback() {
        assert_eq!(
            probe_addr("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            probe_addr("[::]:9000".parse().unwrap()),
            "[::1]:9000".parse().unwrap()
        );
        assert_eq!(
            probe_addr("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.1 200\r\n"), Some(200));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
