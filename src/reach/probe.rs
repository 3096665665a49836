//! Owns: capturing the certificate chain a TLS port actually serves, over any Transport
//! stream (an SSH direct-tcpip channel, or a local TCP socket).
//! Must not: trust what it captures: verification is off on purpose, this only looks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::pki::CertInfo;
use crate::pki::cert::parse_der;
use super::transport::Transport;

#[derive(Debug)]
struct Capture {
    chain: Mutex<Vec<Vec<u8>>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().expect("capture lock");
        chain.push(end_entity.to_vec());
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// The chain served on `host:port` as seen from the node, leaf first.
pub async fn served_chain(t: &dyn Transport, host: &str, port: u16, timeout: Duration) -> Result<Vec<CertInfo>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let capture = Arc::new(Capture {
        chain: Mutex::new(Vec::new()),
        schemes: provider.signature_verification_algorithms.supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("bad host {host:?}: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let work = async {
        let stream = t.dial(host, port).await.map_err(|e| e.message)?;
        // A server that demands a client cert may end the handshake: the chain is captured by then.
        connector.connect(name, stream).await.map(|_| ()).map_err(|e| e.to_string())
    };
    let outcome = tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")));
    let chain = std::mem::take(&mut *capture.chain.lock().expect("capture lock"));
    if chain.is_empty() {
        return Err(match outcome {
            Err(e) => format!("no TLS certificate served on {host}:{port}: {e}"),
            Ok(()) => format!("no TLS certificate served on {host}:{port}"),
        });
    }
    chain.iter().map(|der| parse_der(der).map_err(|e| format!("served certificate does not parse: {e}"))).collect()
}

/// One mTLS exchange along a trust edge: who the client is and what it trusts.
pub struct Handshake<'a> {
    /// The name (DNS or IP) the server's certificate must cover.
    pub server_name: &'a str,
    /// PEM of the CAs the client trusts; None: the client does not verify (as an apiserver
    /// without --kubelet-certificate-authority does).
    pub trust_pem: Option<&'a [u8]>,
    /// PEM of the client's certificate (chain) and of its private key.
    pub client_cert_pem: Option<&'a [u8]>,
    pub client_key_pem: Option<&'a [u8]>,
    /// The HTTP path to ask for; the answer's status code is returned.
    pub path: &'a str,
}

/// A client chain as TLS wants it sent (RFC 8446 4.4.2: each certificate certifying the one
/// before): the leaf, then the file's other certificates, the self-signed ones last. A leaf
/// file that carries a cross-signed CA bundle (k3s: intermediate, new root, the new root
/// cross-signed by the old, old root) would otherwise put the new self-signed root straight
/// after the intermediate, where a verifier that takes the first issuer it finds (OpenSSL)
/// stops short of the old root it trusts; Go's tries every path, and succeeds either way.
fn issuer_order(chain: Vec<CertificateDer<'static>>) -> Vec<CertificateDer<'static>> {
    let self_signed = |c: &CertificateDer<'_>| {
        x509_parser::parse_x509_certificate(c.as_ref()).is_ok_and(|(_, x)| x.subject().as_raw() == x.issuer().as_raw() && x.verify_signature(None).is_ok())
    };
    let mut it = chain.into_iter();
    let Some(leaf) = it.next() else { return Vec::new() };
    let (roots, rest): (Vec<_>, Vec<_>) = it.partition(|c| self_signed(c));
    std::iter::once(leaf).chain(rest).chain(roots).collect()
}

/// Makes a real TLS handshake to `host:port` from the node, then one HTTP GET, and
/// returns the status code (a rejected client certificate in TLS 1.3 only shows on a read).
pub async fn exchange(t: &dyn Transport, host: &str, port: u16, h: &Handshake<'_>, timeout: Duration) -> Result<u16, String> {
    request(t, host, port, h, None, timeout).await.map(|(status, _)| status)
}

/// Like `exchange`, with `post` a JSON body to POST instead of a GET; returns the status and,
/// for a POST, the answer's body (read until the server closes; JSON APIs answer briefly).
pub async fn request(t: &dyn Transport, host: &str, port: u16, h: &Handshake<'_>, post: Option<&str>, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    let builder = match h.trust_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                let c = c.map_err(|e| format!("trust bundle: {e:?}"))?;
                roots.add(c).map_err(|e| format!("trust bundle: {e}"))?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(Capture {
            chain: Mutex::new(Vec::new()),
            schemes: provider.signature_verification_algorithms.supported_schemes(),
        })),
    };
    let config = match (h.client_cert_pem, h.client_key_pem) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>().map_err(|e| format!("client certificate: {e:?}"))?;
            let chain = issuer_order(chain);
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| "client key: no private key in it".to_string())?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate and key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(h.server_name.to_string()).map_err(|e| format!("bad server name {:?}: {e}", h.server_name))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let work = async {
        let stream = t.dial(host, port).await.map_err(|e| e.message)?;
        let mut tls = connector.connect(name, stream).await.map_err(|e| format!("TLS handshake: {e}"))?;
        let req = match post {
            None => format!("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kcert\r\nConnection: close\r\n\r\n", h.path, h.server_name),
            Some(body) => format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kcert\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                h.path,
                h.server_name,
                body.len()
            ),
        };
        tls.write_all(req.as_bytes()).await.map_err(|e| format!("TLS write: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // For a GET the status line is enough: a server that keeps the connection open is not waited for.
        loop {
            if post.is_none() && buf.windows(2).any(|w| w == b"\r\n") {
                break;
            }
            let n = tls.read(&mut chunk).await.map_err(|e| format!("TLS read (client certificate rejected?): {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let status = line.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
        let status = status.ok_or_else(|| format!("no HTTP answer (got {:?})", line.lines().next().unwrap_or("")))?;
        let body = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| buf[i + 4..].to_vec()).unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")))
}
