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
use crate::transport::Transport;

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
