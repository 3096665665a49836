//! Owns: signing: re-issuing a leaf for its existing public key with a CA, and checking that a
//! private key belongs to a certificate. Pure: bytes in, bytes out.
//! Must not: do I/O or log; key material stays inside `Signer` (which has no Debug).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::cert::CertInfo;

/// How long a renewed certificate is valid, as of `now` (unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub now: i64,
    pub days: u32,
}

/// Certificates are back-dated a little, so a node whose clock is behind accepts them.
pub const BACKDATE_SECONDS: i64 = 5 * 60;

/// A node's clock further off the operator's than this makes freshly signed certificates
/// look not yet valid there (or expire early): changing commands refuse such a node.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("no private key kcert can read in it ({0})")]
    BadKey(String),
    #[error("the CA key does not match the CA certificate {0}")]
    KeyMismatch(String),
    #[error("the CA {0} expired on {1}: renewing with it is pointless; rotate the CA (kcert rotate-ca)")]
    CaExpired(String, String),
    #[error("{0} is not a CA certificate (no basicConstraints CA:TRUE)")]
    NotCa(String),
    #[error("{0}")]
    Leaf(String),
}

/// A CA certificate with its private key, ready to sign.
pub struct Signer {
    pub ca: CertInfo,
    issuer: Issuer<'static, KeyPair>,
}

/// A re-issued certificate.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub pem: String,
    pub der: Vec<u8>,
    pub not_after: i64,
    /// The requested validity ran past the CA's own expiry and was cut there.
    pub capped: bool,
}

/// The first private key in a PEM text (PKCS#1, PKCS#8 or SEC1; other blocks are skipped).
pub fn load_key(pem: &[u8]) -> Result<KeyPair, SignError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(SignError::BadKey("the key is encrypted (it needs a passphrase); kcert signs only with a key it can read: decrypt it (openssl pkey -in KEY -out PLAIN), keep PLAIN 0600 where the playbook looks for the key, and remove it afterwards".into()));
    }
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        SignError::BadKey(match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key block in it".to_string(),
            other => format!("not a PEM private key ({other:?})"),
        })
    })?;
    KeyPair::try_from(&der).map_err(|e| SignError::BadKey(e.to_string()))
}

/// True when the private key in `key_pem` is the one of `cert`.
pub fn key_matches(cert: &CertInfo, key_pem: &[u8]) -> Result<bool, SignError> {
    let key = load_key(key_pem)?;
    Ok(cert_public_key(&cert.der).is_some_and(|pk| pk == key.public_key_raw()))
}

/// The raw public key a certificate carries (to tell certificates of one key apart from others).
pub fn cert_public_key(der: &[u8]) -> Option<Vec<u8>> {
    let (_, x) = X509Certificate::from_der(der).ok()?;
    Some(x.public_key().subject_public_key.data.to_vec())
}

/// Every public key a PEM text holds, raw (as `cert_public_key` gives them): of each
/// certificate, private key and public key block (`PUBLIC KEY`, `RSA PUBLIC KEY`), in order.
/// What a service-account key file gives the apiserver (it reads all three kinds).
/// Remembered by the text: a rotation plan checks the tokens' keys after every step of the
/// control plane, and loading a private key (aws-lc validates it) costs about a signature.
pub fn public_keys(pem: &[u8]) -> Vec<Vec<u8>> {
    PUBLIC_KEYS.get_or(pem, || public_keys_uncached(pem))
}

/// Public keys by the text they were taken from (bounded); the results hold no private key.
static PUBLIC_KEYS: super::memo::Memo<Vec<Vec<u8>>> = super::memo::Memo::new(1 << 20);

fn public_keys_uncached(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let Ok(blocks) = super::edit::blocks(&text) else { return Vec::new() };
    let mut out = Vec::new();
    for b in blocks {
        let block = &text[b.start..b.end];
        let body: String = block.lines().filter(|l| !l.starts_with("-----") && !l.contains(':')).collect::<Vec<_>>().concat();
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body.trim()) else { continue };
        let key = match b.label.as_str() {
            "CERTIFICATE" => cert_public_key(&der),
            "PUBLIC KEY" => x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).ok().map(|(_, spki)| spki.subject_public_key.data.to_vec()),
            // PKCS#1: the RSAPublicKey itself is what an SPKI's bit string holds.
            "RSA PUBLIC KEY" => Some(der),
            l if l.ends_with("PRIVATE KEY") => load_key(block.as_bytes()).ok().map(|k| k.public_key_raw().to_vec()),
            _ => None,
        };
        out.extend(key);
    }
    out
}

impl Signer {
    /// Checks that the key is the CA's, that the certificate is a CA and in date at `now`.
    pub fn new(ca: &CertInfo, key_pem: &[u8], now: i64) -> Result<Signer, SignError> {
        if !ca.is_ca {
            return Err(SignError::NotCa(ca.subject.clone()));
        }
        if ca.not_after <= now {
            return Err(SignError::CaExpired(ca.subject.clone(), crate::text::rfc3339(ca.not_after)));
        }
        let key = load_key(key_pem)?;
        if cert_public_key(&ca.der).as_deref() != Some(key.public_key_raw()) {
            return Err(SignError::KeyMismatch(ca.subject.clone()));
        }
        let issuer = Issuer::from_ca_cert_der(&ca.der.clone().into(), key).map_err(|e| SignError::Leaf(format!("cannot use {} as issuer: {e}", ca.subject)))?;
        Ok(Signer { ca: ca.clone(), issuer })
    }

    /// Re-issues `leaf` for its own public key: same subject, SANs (plus `extra_sans`), key
    /// usage, extended key usage, basic constraints and SKI; new serial and dates.
    pub fn resign(&self, leaf: &CertInfo, validity: Validity, extra_sans: &[String]) -> Result<Renewed, SignError> {
        let bad = |m: String| SignError::Leaf(format!("{}: {m}", leaf.subject));
        let (_, x) = X509Certificate::from_der(&leaf.der).map_err(|e| bad(format!("cannot parse: {e}")))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject_of(&x).map_err(bad)?;
        params.serial_number = Some(random_serial());
        let not_before = validity.now - BACKDATE_SECONDS;
        let wanted = validity.now + i64::from(validity.days) * 86_400;
        let capped = wanted > self.ca.not_after;
        let not_after = wanted.min(self.ca.not_after);
        params.not_before = OffsetDateTime::from_unix_timestamp(not_before).map_err(|e| bad(e.to_string()))?;
        params.not_after = OffsetDateTime::from_unix_timestamp(not_after).map_err(|e| bad(e.to_string()))?;
        // Key identifiers are always written: the leaf's own SKI when it had one, else one made
        // from its key; and the AKI of the signing CA, even where the original had none (two CAs
        // of one name, kubeadm 1.8's cluster and front-proxy CAs, are told apart by it).
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = match &leaf.ski {
            Some(ski) => KeyIdMethod::PreSpecified(ski.clone()),
            None => KeyIdMethod::Sha256,
        };
        params.is_ca = IsCa::NoCa;
        for ext in x.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) if bc.ca => {
                    params.is_ca = IsCa::Ca(bc.path_len_constraint.map_or(BasicConstraints::Unconstrained, |n| BasicConstraints::Constrained(n as u8)))
                }
                ParsedExtension::BasicConstraints(_) => params.is_ca = IsCa::ExplicitNoCa,
                ParsedExtension::KeyUsage(ku) => params.key_usages = key_usages(ku),
                ParsedExtension::ExtendedKeyUsage(eku) => params.extended_key_usages = ext_key_usages(eku),
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        params.subject_alt_names.push(san_of(name).map_err(bad)?);
                    }
                }
                _ => {}
            }
        }
        for extra in extra_sans {
            let san = match extra.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(extra.clone().try_into().map_err(|_| bad(format!("{extra:?} is not a DNS name")))?),
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        let spki = SubjectPublicKeyInfo::from_der(x.public_key().raw).map_err(|e| bad(format!("unsupported public key: {e}")))?;
        let cert = params.signed_by(&spki, &self.issuer).map_err(|e| bad(format!("signing failed: {e}")))?;
        Ok(Renewed { pem: cert.pem(), der: cert.der().to_vec(), not_after, capped })
    }
}

/// The key of a new CA: the old CA's type and size, or one chosen with `--key-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

impl KeyType {
    pub const NAMES: &'static [&'static str] = &["rsa2048", "rsa3072", "rsa4096", "ecdsa-p256", "ecdsa-p384", "ed25519"];

    pub fn parse(s: &str) -> Option<KeyType> {
        Some(match s {
            "rsa2048" => KeyType::Rsa2048,
            "rsa3072" => KeyType::Rsa3072,
            "rsa4096" => KeyType::Rsa4096,
            "ecdsa-p256" => KeyType::EcdsaP256,
            "ecdsa-p384" => KeyType::EcdsaP384,
            "ed25519" => KeyType::Ed25519,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "RSA 2048",
            KeyType::Rsa3072 => "RSA 3072",
            KeyType::Rsa4096 => "RSA 4096",
            KeyType::EcdsaP256 => "ECDSA P-256",
            KeyType::EcdsaP384 => "ECDSA P-384",
            KeyType::Ed25519 => "Ed25519",
        }
    }

    /// The type and size of a certificate's public key.
    pub fn of(cert: &CertInfo) -> Result<KeyType, SignError> {
        use x509_parser::public_key::PublicKey;
        let bad = |m: String| SignError::Leaf(format!("{}: {m}", cert.subject));
        let (_, x) = X509Certificate::from_der(&cert.der).map_err(|e| bad(format!("cannot parse: {e}")))?;
        if x.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" {
            return Ok(KeyType::Ed25519);
        }
        Ok(match x.public_key().parsed().map_err(|e| bad(format!("unreadable public key: {e}")))? {
            PublicKey::RSA(rsa) => match rsa.key_size() {
                0..=2048 => KeyType::Rsa2048,
                2049..=3072 => KeyType::Rsa3072,
                _ => KeyType::Rsa4096,
            },
            PublicKey::EC(_) => {
                let curve = x.public_key().algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string()).unwrap_or_default();
                match curve.as_str() {
                    "1.2.840.10045.3.1.7" => KeyType::EcdsaP256,
                    "1.3.132.0.34" => KeyType::EcdsaP384,
                    other => return Err(bad(format!("unsupported EC curve {other}"))),
                }
            }
            _ => return Err(bad(format!("its key type (algorithm {}) is not one kcert can make a successor of: pass --key-type ({})", x.public_key().algorithm.algorithm.to_id_string(), KeyType::NAMES.join(", ")))),
        })
    }

    pub(super) fn generate(self) -> Result<KeyPair, rcgen::Error> {
        match self {
            KeyType::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048),
            KeyType::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072),
            KeyType::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096),
            KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        }
    }
}

/// The CN a successor of `cn` gets: marked with the date, an earlier mark replaced (a CA
/// rotated twice is not "X (successor) (successor)").
pub fn successor_cn(cn: &str, date: &str) -> String {
    let base = match cn.rfind(" (successor ") {
        Some(i) if cn.ends_with(')') => &cn[..i],
        _ => cn,
    };
    format!("{base} (successor {date})")
}

/// A new CA to succeed `old` (CA rotation's S1): a fresh key of the same type and size (or
/// `key_type`), the old subject with the CN marked as its successor (a same-named CA would be
/// confused with the old one by verifiers), the old SANs, CA:TRUE, valid `days` from a few
/// minutes ago. Returns the certificate PEM and the key PEM (PKCS#8); the key is for a 0600
/// file only.
pub fn successor_ca(old: &CertInfo, days: u32, now: i64, key_type: Option<KeyType>) -> Result<(String, String), SignError> {
    let bad = |m: String| SignError::Leaf(format!("{}: {m}", old.subject));
    let (_, x) = X509Certificate::from_der(&old.der).map_err(|e| bad(format!("cannot parse: {e}")))?;
    let kt = match key_type {
        Some(k) => k,
        None => KeyType::of(old)?,
    };
    let key = kt.generate().map_err(|e| bad(format!("cannot generate a key: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = subject_of(&x).map_err(bad)?;
    let date = time::OffsetDateTime::from_unix_timestamp(now).map(|t| t.date().to_string()).unwrap_or_default();
    let cn = old.subject_cn.clone().unwrap_or_else(|| "kcert CA".into());
    dn.push(DnType::CommonName, DnValue::Utf8String(successor_cn(&cn, &date)));
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial());
    params.not_before = OffsetDateTime::from_unix_timestamp(now - BACKDATE_SECONDS).map_err(|e| bad(e.to_string()))?;
    params.not_after = OffsetDateTime::from_unix_timestamp(now + i64::from(days) * 86_400).map_err(|e| bad(e.to_string()))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment, KeyUsagePurpose::KeyCertSign];
    for ext in x.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                params.subject_alt_names.push(san_of(name).map_err(bad)?);
            }
        }
    }
    let cert = params.self_signed(&key).map_err(|e| bad(format!("signing failed: {e}")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub(super) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider().secure_random.fill(&mut bytes).expect("the system RNG works");
    // Positive and without a leading zero byte, as RFC 5280 asks.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// The subject as rcgen can write it. rcgen keeps one value per attribute type, so a subject
/// that repeats one (two `O=`) is refused rather than silently changed.
fn subject_of(x: &X509Certificate<'_>) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for rdn in x.subject().iter() {
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            if seen.contains(oid) {
                return Err(format!("the subject repeats {} (kcert cannot keep such a subject exactly; renew it by hand)", oid_name(oid)));
            }
            seen.push(oid.clone());
            let ty = dn_type(oid);
            let v = attr.attr_value();
            let text = || std::str::from_utf8(v.data).map(str::to_string).map_err(|_| format!("subject attribute {} is not text", oid_name(oid)));
            use x509_parser::asn1_rs::Tag;
            let value = match v.tag() {
                Tag::PrintableString => DnValue::PrintableString(text()?.try_into().map_err(|_| "bad PrintableString".to_string())?),
                Tag::Ia5String => DnValue::Ia5String(text()?.try_into().map_err(|_| "bad IA5String".to_string())?),
                Tag::Utf8String => DnValue::Utf8String(text()?),
                Tag::T61String => DnValue::TeletexString(text()?.try_into().map_err(|_| "bad TeletexString".to_string())?),
                other => return Err(format!("subject attribute {} has an unsupported string type {other:?}", oid_name(oid))),
            };
            dn.push(ty, value);
        }
    }
    Ok(dn)
}

fn oid_name(oid: &Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry()).map(str::to_string).unwrap_or_else(|_| oid.to_id_string())
}

fn dn_type(oid: &Oid<'_>) -> DnType {
    let arcs: Vec<u64> = oid.iter().map(|i| i.collect()).unwrap_or_default();
    match arcs.as_slice() {
        [2, 5, 4, 3] => DnType::CommonName,
        [2, 5, 4, 6] => DnType::CountryName,
        [2, 5, 4, 7] => DnType::LocalityName,
        [2, 5, 4, 8] => DnType::StateOrProvinceName,
        [2, 5, 4, 10] => DnType::OrganizationName,
        [2, 5, 4, 11] => DnType::OrganizationalUnitName,
        _ => DnType::CustomDnType(arcs),
    }
}

fn key_usages(ku: &x509_parser::extensions::KeyUsage) -> Vec<KeyUsagePurpose> {
    let mut v = Vec::new();
    let pairs = [
        (ku.digital_signature(), KeyUsagePurpose::DigitalSignature),
        (ku.non_repudiation(), KeyUsagePurpose::ContentCommitment),
        (ku.key_encipherment(), KeyUsagePurpose::KeyEncipherment),
        (ku.data_encipherment(), KeyUsagePurpose::DataEncipherment),
        (ku.key_agreement(), KeyUsagePurpose::KeyAgreement),
        (ku.key_cert_sign(), KeyUsagePurpose::KeyCertSign),
        (ku.crl_sign(), KeyUsagePurpose::CrlSign),
        (ku.encipher_only(), KeyUsagePurpose::EncipherOnly),
        (ku.decipher_only(), KeyUsagePurpose::DecipherOnly),
    ];
    for (on, p) in pairs {
        if on {
            v.push(p);
        }
    }
    v
}

fn ext_key_usages(eku: &x509_parser::extensions::ExtendedKeyUsage) -> Vec<ExtendedKeyUsagePurpose> {
    let mut v = Vec::new();
    if eku.any {
        v.push(ExtendedKeyUsagePurpose::Any);
    }
    if eku.server_auth {
        v.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if eku.client_auth {
        v.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    if eku.code_signing {
        v.push(ExtendedKeyUsagePurpose::CodeSigning);
    }
    if eku.email_protection {
        v.push(ExtendedKeyUsagePurpose::EmailProtection);
    }
    if eku.time_stamping {
        v.push(ExtendedKeyUsagePurpose::TimeStamping);
    }
    if eku.ocsp_signing {
        v.push(ExtendedKeyUsagePurpose::OcspSigning);
    }
    for o in &eku.other {
        v.push(ExtendedKeyUsagePurpose::Other(o.iter().map(|i| i.collect()).unwrap_or_default()));
    }
    v
}

fn san_of(name: &GeneralName<'_>) -> Result<SanType, String> {
    Ok(match name {
        GeneralName::DNSName(d) => SanType::DnsName((*d).try_into().map_err(|_| format!("bad DNS SAN {d:?}"))?),
        GeneralName::RFC822Name(e) => SanType::Rfc822Name((*e).try_into().map_err(|_| format!("bad email SAN {e:?}"))?),
        GeneralName::URI(u) => SanType::URI((*u).try_into().map_err(|_| format!("bad URI SAN {u:?}"))?),
        GeneralName::IPAddress(b) => match b.len() {
            4 => SanType::IpAddress(IpAddr::from(<[u8; 4]>::try_from(*b).expect("length checked"))),
            16 => SanType::IpAddress(IpAddr::from(<[u8; 16]>::try_from(*b).expect("length checked"))),
            n => return Err(format!("an IP SAN of {n} bytes")),
        },
        other => return Err(format!("unsupported SAN {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::cert::parse_pem;
    use std::process::Command;

    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A CA and a leaf made by openssl, with the CA key in the given form.
    fn fixture(dir: &std::path::Path, key_alg: &[&str], traditional: bool) -> (CertInfo, Vec<u8>, CertInfo) {
        let mut args = vec!["req", "-x509", "-nodes", "-newkey"];
        args.extend_from_slice(key_alg);
        args.extend_from_slice(&["-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=test-ca"]);
        openssl(dir, &args);
        if traditional {
            openssl(dir, &["pkey", "-in", "ca.key", "-traditional", "-out", "ca1.key"]);
            std::fs::rename(dir.join("ca1.key"), dir.join("ca.key")).unwrap();
        }
        let mut args = vec!["req", "-nodes", "-newkey"];
        args.extend_from_slice(key_alg);
        args.extend_from_slice(&["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/O=system:masters/CN=kube-apiserver"]);
        openssl(dir, &args);
        std::fs::write(dir.join("ext"), "subjectAltName=DNS:kubernetes,IP:10.96.0.1\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=hash\n").unwrap();
        openssl(dir, &["x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "5", "-extfile", "ext", "-out", "leaf.crt"]);
        let ca = parse_pem(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap().certs.remove(0);
        let leaf = parse_pem(&std::fs::read(dir.join("leaf.crt")).unwrap()).unwrap().certs.remove(0);
        (ca, std::fs::read(dir.join("ca.key")).unwrap(), leaf)
    }

    /// openssl's view of what a renewal must keep, one extension at a time (order may differ).
    fn text(dir: &std::path::Path, file: &str) -> String {
        let mut all = String::new();
        for ext in ["subjectAltName", "keyUsage", "extendedKeyUsage", "basicConstraints", "subjectKeyIdentifier"] {
            let out = Command::new("openssl").args(["x509", "-noout", "-subject", "-ext", ext, "-pubkey", "-in", file]).current_dir(dir).output().unwrap();
            all.push_str(&String::from_utf8(out.stdout).unwrap());
        }
        all
    }

    #[test]
    fn public_keys_come_from_certificates_private_keys_and_public_keys_alike() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ca, key, leaf) = fixture(d, &["rsa:2048"], true);
        openssl(d, &["pkey", "-in", "ca.key", "-pubout", "-out", "ca.pub"]);
        openssl(d, &["rsa", "-in", "ca.key", "-RSAPublicKey_out", "-out", "ca.rsapub"]);
        let ca_raw = cert_public_key(&ca.der).unwrap();
        let leaf_raw = cert_public_key(&leaf.der).unwrap();
        for f in ["ca.crt", "ca.key", "ca.pub", "ca.rsapub"] {
            assert_eq!(public_keys(&std::fs::read(d.join(f)).unwrap()), vec![ca_raw.clone()], "{f}");
        }
        // Several keys in one file (a verifying key file keeps old and new), in order.
        let both = [std::fs::read(d.join("leaf.crt")).unwrap(), key].concat();
        assert_eq!(public_keys(&both), vec![leaf_raw, ca_raw]);
        assert!(public_keys(b"not a key").is_empty());
    }

    fn check_resign(key_alg: &[&str], traditional: bool) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ca, key, leaf) = fixture(d, key_alg, traditional);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signer = Signer::new(&ca, &key, now).unwrap();
        let r = signer.resign(&leaf, Validity { now, days: 3 }, &[]).unwrap();
        assert!(!r.capped);
        std::fs::write(d.join("new.crt"), &r.pem).unwrap();
        openssl(d, &["verify", "-CAfile", "ca.crt", "new.crt"]);
        assert_eq!(text(d, "leaf.crt"), text(d, "new.crt"));
        let new = parse_pem(r.pem.as_bytes()).unwrap().certs.remove(0);
        assert_eq!(new.not_after, now + 3 * 86_400);
        assert_eq!(new.not_before, now - BACKDATE_SECONDS);
        assert_ne!(new.serial, leaf.serial);
        assert_eq!(new.aki, ca.ski);
        assert!(key_matches(&new, &std::fs::read(d.join("leaf.key")).unwrap()).unwrap());
        // Past the CA's expiry: cut at the CA's notAfter, and said so.
        let r = signer.resign(&leaf, Validity { now, days: 400 }, &[]).unwrap();
        assert!(r.capped);
        assert_eq!(r.not_after, ca.not_after);
    }

    #[test]
    fn rsa_pkcs1_ca_resigns_keeping_everything() {
        check_resign(&["rsa:2048"], true);
    }

    #[test]
    fn rsa_pkcs8_ca_resigns() {
        check_resign(&["rsa:2048"], false);
    }

    #[test]
    fn ec_sec1_ca_resigns() {
        check_resign(&["ec", "-pkeyopt", "ec_paramgen_curve:P-256"], true);
    }

    #[test]
    fn extra_sans_are_added_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, key, leaf) = fixture(dir.path(), &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"], false);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let r = Signer::new(&ca, &key, now).unwrap().resign(&leaf, Validity { now, days: 1 }, &["10.96.0.1".into(), "node-a".into()]).unwrap();
        std::fs::write(dir.path().join("new.crt"), &r.pem).unwrap();
        let t = text(dir.path(), "new.crt");
        assert!(t.contains("DNS:kubernetes, IP Address:10.96.0.1, DNS:node-a"), "{t}");
    }

    #[test]
    fn a_successor_ca_matches_the_old_key_type_and_signs() {
        for (alg, want) in [(&["rsa:2048"][..], "Public-Key: (2048 bit)"), (&["ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..], "NIST CURVE: P-256")] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let (old, _, leaf) = fixture(d, alg, true);
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let (cert, key) = successor_ca(&old, 3650, now, None).unwrap();
            std::fs::write(d.join("new-ca.crt"), &cert).unwrap();
            openssl(d, &["verify", "-CAfile", "new-ca.crt", "new-ca.crt"]);
            let text = String::from_utf8(Command::new("openssl").args(["x509", "-noout", "-text", "-in", "new-ca.crt"]).current_dir(d).output().unwrap().stdout).unwrap();
            assert!(text.contains(want) && text.contains("CA:TRUE") && text.contains("Certificate Sign"), "{text}");
            assert!(text.contains("CN=test-ca (successor") || text.contains("CN = test-ca (successor"), "{text}");
            let new = parse_pem(cert.as_bytes()).unwrap().certs.remove(0);
            assert_eq!(new.not_after, now + 3650 * 86_400);
            assert!(key_matches(&new, key.as_bytes()).unwrap());
            // It signs: the leaf re-issued by it verifies against it and not the old CA.
            let r = Signer::new(&new, key.as_bytes(), now).unwrap().resign(&leaf, Validity { now, days: 1 }, &[]).unwrap();
            std::fs::write(d.join("moved.crt"), &r.pem).unwrap();
            openssl(d, &["verify", "-CAfile", "new-ca.crt", "moved.crt"]);
            assert!(!Command::new("openssl").args(["verify", "-CAfile", "ca.crt", "moved.crt"]).current_dir(d).output().unwrap().status.success());
        }
    }

    #[test]
    fn a_successor_of_a_successor_is_not_marked_twice() {
        assert_eq!(successor_cn("kubernetes", "2026-12-01"), "kubernetes (successor 2026-12-01)");
        assert_eq!(successor_cn("kubernetes (successor 2026-12-01)", "2027-01-02"), "kubernetes (successor 2027-01-02)");
        assert_eq!(successor_cn("odd (successor", "2027-01-02"), "odd (successor (successor 2027-01-02)");
    }

    #[test]
    fn a_chosen_key_type_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (old, _, _) = fixture(d, &["rsa:2048"], true);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (cert, _) = successor_ca(&old, 10, now, Some(KeyType::EcdsaP384)).unwrap();
        std::fs::write(d.join("p384.crt"), &cert).unwrap();
        let text = String::from_utf8(Command::new("openssl").args(["x509", "-noout", "-text", "-in", "p384.crt"]).current_dir(d).output().unwrap().stdout).unwrap();
        assert!(text.contains("NIST CURVE: P-384"), "{text}");
        assert_eq!(KeyType::of(&parse_pem(cert.as_bytes()).unwrap().certs[0]).unwrap(), KeyType::EcdsaP384);
        assert_eq!(KeyType::of(&old).unwrap(), KeyType::Rsa2048);
        assert!(KeyType::NAMES.iter().all(|n| KeyType::parse(n).is_some()) && KeyType::parse("dsa").is_none());
    }

    #[test]
    fn wrong_key_expired_ca_and_leaf_as_ca_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _, leaf) = fixture(dir.path(), &["rsa:2048"], true);
        let other = std::fs::read(dir.path().join("leaf.key")).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(matches!(Signer::new(&ca, &other, now), Err(SignError::KeyMismatch(_))));
        assert!(matches!(Signer::new(&ca, &other, ca.not_after + 1), Err(SignError::CaExpired(..))));
        assert!(matches!(Signer::new(&leaf, &other, now), Err(SignError::NotCa(_))));
        assert!(matches!(Signer::new(&ca, b"not a key", now), Err(SignError::BadKey(_))));
    }
}
