//! Owns: splitting PEM text into certificates and reading the X.509 fields kcert reports.
//! Must not: decode private-key blocks (they are only counted by label) or do I/O.

use base64::Engine;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

/// The facts kcert reports of one certificate, owned so they outlive the parsed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub subject_cn: Option<String>,
    pub issuer_cn: Option<String>,
    /// Lowercase hex of the serial's magnitude, no separators, even length (as `openssl x509 -serial`).
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub self_issued: bool,
    pub ski: Option<Vec<u8>>,
    pub aki: Option<Vec<u8>>,
    pub sha256: String,
}

/// What a PEM file holds: its certificates, in order, and the labels of its other blocks.
#[derive(Debug, Clone, Default)]
pub struct PemContent {
    pub certs: Vec<CertInfo>,
    pub other_labels: Vec<String>,
}

impl PemContent {
    pub fn has_private_key(&self) -> bool {
        self.other_labels.iter().any(|l| l.ends_with("PRIVATE KEY"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("no PEM data")]
    NotPem,
    #[error("corrupt PEM: {0}")]
    CorruptPem(String),
    #[error("certificate #{index} does not parse as X.509: {message}")]
    BadCertificate { index: usize, message: String },
}

/// Splits PEM text into its certificates. Blocks with other labels (keys, CSRs, parameters)
/// are counted by label and never decoded, so key material is never held in a parsed form.
pub fn parse_pem(bytes: &[u8]) -> Result<PemContent, PkiError> {
    PARSED.get_or(bytes, || parse_uncached(bytes))
}

/// The same, shared with every other caller that parsed these bytes (nothing copied).
pub fn parsed_pem(bytes: &[u8]) -> std::sync::Arc<Result<PemContent, PkiError>> {
    PARSED.shared(bytes, || parse_uncached(bytes))
}

/// PEM texts parsed so far (up to 4 MiB of texts): the planner reads each many times.
static PARSED: super::memo::Memo<Result<PemContent, PkiError>> = super::memo::Memo::new(4 << 20);

fn parse_uncached(bytes: &[u8]) -> Result<PemContent, PkiError> {
    let text = String::from_utf8_lossy(bytes);
    let mut content = PemContent::default();
    let mut lines = text.lines();
    let mut saw_block = false;
    while let Some(line) = lines.next() {
        let Some(label) = begin_label(line) else { continue };
        saw_block = true;
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            let l = l.trim();
            if l == end {
                closed = true;
                break;
            }
            if begin_label(l).is_some() {
                return Err(PkiError::CorruptPem(format!("block {label:?} has no END line")));
            }
            body.push_str(l);
        }
        if !closed {
            return Err(PkiError::CorruptPem(format!("block {label:?} has no END line")));
        }
        if label == "CERTIFICATE" || label == "TRUSTED CERTIFICATE" || label == "X509 CERTIFICATE" {
            let index = content.certs.len() + 1;
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|e| PkiError::CorruptPem(format!("certificate #{index}: bad base64: {e}")))?;
            content.certs.push(parse_der(&der).map_err(|message| PkiError::BadCertificate { index, message })?);
        } else {
            content.other_labels.push(label.to_string());
        }
    }
    if !saw_block {
        return Err(PkiError::NotPem);
    }
    Ok(content)
}

fn begin_label(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.strip_suffix("-----"))
}

/// Reads the reported fields of one DER certificate.
pub fn parse_der(der: &[u8]) -> Result<CertInfo, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the certificate", rest.len()));
    }
    let mut ski = None;
    let mut aki = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => ski = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => {}
        }
    }
    let self_issued = cert.subject().as_raw() == cert.issuer().as_raw();
    Ok(CertInfo {
        subject: format_name(cert.subject()),
        issuer: format_name(cert.issuer()),
        subject_cn: first_cn(cert.subject()),
        issuer_cn: first_cn(cert.issuer()),
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        self_issued,
        ski,
        aki,
        sha256: hex(&Sha256::digest(der)),
        der: der.to_vec(),
    })
}

/// A name as `openssl x509 -nameopt sep_comma_plus_space,esc_2253,utf8,sname` prints it:
/// in certificate order, short attribute names, unknown attributes by dotted OID.
pub fn format_name(name: &X509Name) -> String {
    let registry = x509_parser::objects::oid_registry();
    name.iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type();
                    let key = match x509_parser::objects::oid2abbrev(oid, registry) {
                        Ok("Email") => "emailAddress".to_string(),
                        Ok(abbrev) => abbrev.to_string(),
                        Err(_) => oid.to_id_string(),
                    };
                    let value = match attr.as_str() {
                        Ok(v) => escape_2253(v),
                        Err(_) => match decode_string(attr.attr_value()) {
                            Some(v) => escape_2253(&v),
                            None => format!("#{}", hex(attr.attr_value().data)),
                        },
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// String types x509-parser leaves undecoded: BMP (UTF-16), Universal (UTF-32), and
/// Teletex/T61 holding plain ASCII/UTF-8, which is what real certificates put there.
fn decode_string(v: &x509_parser::asn1_rs::Any) -> Option<String> {
    let data = v.data;
    match v.tag().0 {
        0x1e => {
            let units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        0x1c => data.chunks_exact(4).map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        _ => std::str::from_utf8(data).ok().map(str::to_string),
    }
}

fn escape_2253(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || edge_space || (i == 0 && c == '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn first_cn(name: &X509Name) -> Option<String> {
    name.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string)
}

/// openssl prints the serial's magnitude in whole bytes; DER may add a 0x00 sign byte.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len().saturating_sub(1));
    let s = hex(&raw[start.min(raw.len())..]);
    if s.is_empty() { "00".to_string() } else { s }
}

/// Lowercase hex, two digits a byte (made without a `format!` a byte: the planner names
/// hundreds of thousands of contents by their sha256).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The sha256 of some bytes, as lowercase hex: how kcert names a file's content.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The first certificate of a PEM text (a leaf before its chain, a CA file's own CA).
pub fn first_cert(bytes: &[u8]) -> Result<CertInfo, String> {
    // Only the first certificate is copied out of what the memo holds.
    match &*parsed_pem(bytes) {
        Ok(content) => content.certs.first().cloned().ok_or_else(|| "no certificate in it".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The CA among `cas` whose key signed `cert`: matched by key identifier first, then by
/// signature, never by name alone (a front-proxy CA may share the cluster CA's subject).
/// As openssl's `X509_check_issued`, a CA whose subject is not the cert's issuer name, or
/// whose SKI differs from the cert's AKI, is passed over before any signature is checked;
/// each (cert, CA) verdict is remembered, so a planner asking again pays nothing.
pub fn find_issuer<'a>(cert: &CertInfo, cas: &'a [&'a CertInfo]) -> Option<&'a CertInfo> {
    let issuer = name_key(&cert.issuer);
    let mut candidates: Vec<&&CertInfo> = cas
        .iter()
        .filter(|ca| ca.der != cert.der || cert.self_issued)
        .filter(|ca| !matches!((&cert.aki, &ca.ski), (Some(aki), Some(ski)) if aki != ski))
        .filter(|ca| name_key(&ca.subject) == issuer)
        .collect();
    // Key-identifier matches first: cheap, and usually right.
    candidates.sort_by_key(|ca| !(cert.aki.is_some() && ca.ski == cert.aki));
    let mut parsed = None;
    candidates.into_iter().find(|ca| signed_by(cert, ca, &mut parsed)).copied()
}

/// A distinguished name as openssl compares them: case and runs of white space aside.
fn name_key(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Verdicts of "`ca`'s key signed `cert`", by the two certificates' sha256s (bounded).
static SIGNED_BY: super::memo::Memo<bool> = super::memo::Memo::new(4 << 20);

fn signed_by<'c>(cert: &'c CertInfo, ca: &CertInfo, parsed: &mut Option<Option<X509Certificate<'c>>>) -> bool {
    let key = [cert.sha256.as_bytes(), ca.sha256.as_bytes()].concat();
    SIGNED_BY.get_or(&key, || {
        let Some(x) = parsed.get_or_insert_with(|| X509Certificate::from_der(&cert.der).ok().map(|(_, x)| x)) else { return false };
        X509Certificate::from_der(&ca.der).is_ok_and(|(_, ca_parsed)| x.verify_signature(Some(ca_parsed.public_key())).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_strips_the_sign_byte_and_keeps_whole_bytes() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x05]), "05");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn text_without_pem_is_not_pem() {
        assert_eq!(parse_pem(b"a CA bundle lives here\n").unwrap_err(), PkiError::NotPem);
    }

    #[test]
    fn unterminated_certificate_is_corrupt() {
        let err = parse_pem(b"-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap_err();
        assert!(matches!(err, PkiError::CorruptPem(_)), "{err:?}");
    }

    #[test]
    fn bad_base64_is_corrupt_and_bad_der_is_named() {
        let err = parse_pem(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").unwrap_err();
        assert!(matches!(err, PkiError::CorruptPem(_)), "{err:?}");
        let err = parse_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_err();
        assert!(matches!(err, PkiError::BadCertificate { index: 1, .. }), "{err:?}");
    }

    #[test]
    fn key_blocks_are_counted_not_decoded() {
        // Not valid base64 on purpose: a key body is never decoded, so this must not fail.
        let pem = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n@@@\n-----END RSA PRIVATE KEY-----\n";
        let content = parse_pem(pem).unwrap();
        assert!(content.certs.is_empty());
        assert!(content.has_private_key());
    }
}
