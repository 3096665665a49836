//! Owns: the PKI shapes of k3s and RKE2 that kubeadm's lack: a join token and the CA hash it
//! pins, the cross-signed CA set `k3s certificate rotate-ca --path` accepts without `--force`,
//! and the TLS Secret as JSON in which the supervisor keeps its serving cert.
//! Must not: do I/O; staging the set, running k3s and rewriting tokens on nodes are the plan's.

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose};
use time::OffsetDateTime;

use super::cert::{CertInfo, find_issuer, parse_pem, sha256};
use super::edit::blocks;
use super::sign::{BACKDATE_SECONDS, KeyType, SignError, load_key, random_serial};

/// The CA types under `server/tls`, each a `<type>-ca.crt` with its `<type>-ca.key`, as
/// k3s's `contrib/util/rotate-default-ca-certs.sh` walks them.
pub const CA_TYPES: [&str; 5] = ["client", "server", "request-header", "etcd/peer", "etcd/server"];

/// The prefix of a full ("secure") join token (k3s `pkg/clientaccess/token.go`, `tokenPrefix`).
const TOKEN_PREFIX: &str = "K10";

/// A join token: `K10<ca hash>::<credentials>`, or bare credentials (no CA hash pinned).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// 64 lowercase hex digits: the sha256 `ca_hash` gives for the cluster's server CA bundle.
    pub ca_hash: Option<String>,
    /// `user:password` or a bootstrap token `id.secret`: a secret, never shown.
    pub credentials: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoinToken(ca_hash: {:?}, credentials: <hidden>)", self.ca_hash)
    }
}

impl JoinToken {
    /// Parses a token as k3s's `parseToken` does: `K10` then the CA hash (empty, or 64 hex
    /// digits) and `::`, then the credentials; anything without the prefix is bare credentials.
    pub fn parse(token: &str) -> Result<JoinToken, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err("the token is empty".into());
        }
        let Some(rest) = token.strip_prefix(TOKEN_PREFIX) else {
            return Ok(JoinToken { ca_hash: None, credentials: token.to_string() });
        };
        let Some((hash, credentials)) = rest.split_once("::") else {
            return Err("a K10 token has no \"::\" between its CA hash and its credentials".into());
        };
        if credentials.is_empty() {
            return Err("a K10 token has no credentials after \"::\"".into());
        }
        let ca_hash = match hash.len() {
            0 => None,
            64 if hash.bytes().all(|b| b.is_ascii_hexdigit()) => Some(hash.to_ascii_lowercase()),
            n => return Err(format!("a K10 token's CA hash is {n} characters; k3s expects 64 hex digits (a sha256)")),
        };
        Ok(JoinToken { ca_hash, credentials: credentials.to_string() })
    }

    /// The token in k3s's full form, pinning `ca_hash`.
    pub fn with_hash(&self, ca_hash: &str) -> String {
        format!("{TOKEN_PREFIX}{ca_hash}::{}", self.credentials)
    }
}

/// `text` with every join token pinning `from` (`K10<from>::`) pinning `to` instead: the
/// unit's environment (`K3S_TOKEN='K10...'`), config.yaml's `token:`, a token file. An error
/// when none does (the caller asked because one did).
pub fn rehash_tokens(text: &[u8], from: &str, to: &str) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not text".to_string())?;
    let old = format!("{TOKEN_PREFIX}{from}::");
    if !text.contains(&old) {
        return Err(format!("no join token in it pins the CA hash {}...", &from[..from.len().min(12)]));
    }
    Ok(text.replace(&old, &format!("{TOKEN_PREFIX}{to}::")).into_bytes())
}

/// The CA hash a join token pins for a server CA bundle, as k3s's `hashCA` computes it: with
/// one certificate, the sha256 of the file's bytes as they are; with more, the sha256 of the
/// DER of the root that the first certificate chains to (a later certificate with no AKI, or
/// an AKI equal to its SKI, is a root; the others are intermediates; roots are tried first,
/// as Go's `x509.Verify` does), so a cross-signed rotation keeps the hash while its root
/// stays. Where no chain verifies at `now`, k3s falls back to the file's bytes, and so does this.
pub fn ca_hash(bundle: &[u8], now: i64) -> Result<String, String> {
    let certs = parse_pem(bundle).map_err(|e| e.to_string())?.certs;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    if certs.len() == 1 {
        return Ok(sha256(bundle));
    }
    let is_root = |c: &CertInfo| c.aki.is_none() || c.aki == c.ski;
    let (roots, inters): (Vec<&CertInfo>, Vec<&CertInfo>) = certs[1..].iter().partition(|c| is_root(c));
    let in_date = |c: &CertInfo| c.not_before <= now && now <= c.not_after;
    if !in_date(&certs[0]) {
        return Ok(sha256(bundle));
    }
    // Depth-first from the first certificate, roots before intermediates, each used once.
    fn chain<'a>(c: &CertInfo, roots: &[&'a CertInfo], inters: &[&'a CertInfo], used: &mut Vec<String>, in_date: &dyn Fn(&CertInfo) -> bool) -> Option<&'a CertInfo> {
        for root in roots.iter().filter(|r| in_date(r)) {
            if find_issuer(c, std::slice::from_ref(root)).is_some() {
                return Some(root);
            }
        }
        for i in inters {
            if !in_date(i) || used.contains(&i.sha256) {
                continue;
            }
            if find_issuer(c, std::slice::from_ref(i)).is_some() {
                used.push(i.sha256.clone());
                if let Some(r) = chain(i, roots, inters, used, in_date) {
                    return Some(r);
                }
            }
        }
        None
    }
    Ok(match chain(&certs[0], &roots, &inters, &mut Vec::new(), &in_date) {
        Some(root) => sha256(&root.der),
        None => sha256(bundle),
    })
}

/// The certificates of a `kubernetes.io/tls` Secret kept as JSON (k3s's
/// `server/tls/dynamic-cert.json`, written by dynamiclistener's file storage: the Secret, its
/// `data` base64): `None` when the text is not such a Secret, else the PEM text of
/// `data["tls.crt"]`. `tls.key` is never decoded.
pub fn tls_secret(bytes: &[u8]) -> Option<Result<Vec<u8>, String>> {
    use base64::Engine;
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v.get("kind").and_then(|k| k.as_str()) != Some("Secret") || v.get("type").and_then(|t| t.as_str()) != Some("kubernetes.io/tls") {
        return None;
    }
    let Some(crt) = v.pointer("/data/tls.crt").and_then(|c| c.as_str()) else {
        return Some(Err("a TLS Secret without data[\"tls.crt\"]".into()));
    };
    Some(base64::engine::general_purpose::STANDARD.decode(crt.trim()).map_err(|e| format!("data[\"tls.crt\"] is not base64: {e}")))
}

/// One CA type's new files for `k3s certificate rotate-ca --path`: a new root, that root
/// cross-signed by the old one, and a new intermediate CA signed by the new root. No Debug:
/// it holds keys.
pub struct CrossSigned {
    /// `tls/<type>-ca.crt`: the intermediate, the new root, the cross-signed root, the old root.
    pub cert: String,
    /// `tls/<type>-ca.key`: the intermediate's key, then the new root's.
    pub key: String,
    pub intermediate: String,
    pub root: String,
    pub cross: String,
    pub old_root: String,
}

/// The names k3s's script gives the new CAs: `<product>-<type>-root@<unix time>` and
/// `<product>-<type>-ca@<unix time>` (`etcd/peer` written `etcd-peer`).
fn names(product: &str, ty: &str, now: i64) -> (String, String) {
    let t = ty.replace('/', "-");
    (format!("{product}-{t}-root@{now}"), format!("{product}-{t}-ca@{now}"))
}

fn ca_params(cn: &str, not_before: i64, not_after: i64) -> Result<CertificateParams, String> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.serial_number = Some(random_serial());
    p.not_before = OffsetDateTime::from_unix_timestamp(not_before).map_err(|e| e.to_string())?;
    p.not_after = OffsetDateTime::from_unix_timestamp(not_after).map_err(|e| e.to_string())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // As the script's v3_ca: critical CA:true; digitalSignature, keyEncipherment, keyCertSign;
    // SKI from the key, AKI naming the signer's key.
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment, KeyUsagePurpose::KeyCertSign];
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// The old root of a `<type>-ca.crt` / `<type>-ca.key` pair and its key: the first
/// self-issued CA certificate of the file whose key is one of the key file's keys (a first
/// rotation's file holds one; after a cross-signed rotation the file is intermediate, root,
/// cross-signed root, old root, and the key file intermediate key, root key).
fn old_root(cert_pem: &[u8], key_pem: &[u8]) -> Result<(CertInfo, String, KeyPair), String> {
    let text = std::str::from_utf8(cert_pem).map_err(|_| "not PEM text".to_string())?;
    let key_text = std::str::from_utf8(key_pem).map_err(|_| "the key file is not PEM text".to_string())?;
    let certs = parse_pem(cert_pem).map_err(|e| e.to_string())?.certs;
    let cert_blocks: Vec<_> = blocks(text)?.into_iter().filter(|b| b.label == "CERTIFICATE").collect();
    let keys: Vec<KeyPair> = blocks(key_text)?.iter().filter(|b| b.label.ends_with("PRIVATE KEY")).filter_map(|b| load_key(&key_text.as_bytes()[b.start..b.end]).ok()).collect();
    if keys.is_empty() {
        return Err("the key file holds no private key kcert can read".into());
    }
    for (c, b) in certs.iter().zip(&cert_blocks) {
        if !(c.is_ca && c.self_issued) {
            continue;
        }
        let Some(public) = super::sign::cert_public_key(&c.der) else { continue };
        if let Some(i) = keys.iter().position(|k| k.public_key_raw() == public.as_slice()) {
            let key = keys.into_iter().nth(i).expect("found above");
            return Ok((c.clone(), text[b.start..b.end].to_string(), key));
        }
    }
    Err("no self-signed CA in it has its key in the key file: kcert makes k3s's cross-signed set from the old root; a custom CA rooted elsewhere is rotated with that root (k3s docs, \"Rotating Custom CA Certificates\")".into())
}

/// A CA type's cross-signed set (k3s's `contrib/util/rotate-default-ca-certs.sh`, made
/// here): new keys of the old root's type (or `key_type`), the new root valid `days` from
/// `now`, its cross-signed copy no longer than the old root, and the intermediate as long as
/// the new root. `cert_pem` and `key_pem` are the type's current `-ca.crt` and `-ca.key`.
pub fn cross_signed(product: &str, ty: &str, cert_pem: &[u8], key_pem: &[u8], days: u32, now: i64, key_type: Option<KeyType>) -> Result<CrossSigned, SignError> {
    let bad = |m: String| SignError::Leaf(format!("{ty}-ca: {m}"));
    let (old, old_pem, old_key) = old_root(cert_pem, key_pem).map_err(bad)?;
    if old.not_after <= now {
        return Err(SignError::CaExpired(old.subject.clone(), crate::text::rfc3339(old.not_after)));
    }
    let kt = match key_type {
        Some(k) => k,
        None => KeyType::of(&old)?,
    };
    let old_issuer = Issuer::from_ca_cert_der(&old.der.clone().into(), old_key).map_err(|e| bad(format!("cannot sign with the old root: {e}")))?;
    let (root_cn, ca_cn) = names(product, ty, now);
    let not_before = now - BACKDATE_SECONDS;
    let not_after = now + i64::from(days) * 86_400;
    let root_key = kt.generate().map_err(|e| bad(format!("cannot generate a key: {e}")))?;
    let root_params = ca_params(&root_cn, not_before, not_after).map_err(bad)?;
    let root = root_params.self_signed(&root_key).map_err(|e| bad(format!("signing failed: {e}")))?;
    // The same subject and key, issued by the old root: old trust reaches the new root.
    let cross_params = ca_params(&root_cn, not_before, not_after.min(old.not_after)).map_err(bad)?;
    let cross = cross_params.signed_by(&root_key, &old_issuer).map_err(|e| bad(format!("cross-signing failed: {e}")))?;
    let ca_key = kt.generate().map_err(|e| bad(format!("cannot generate a key: {e}")))?;
    let ca = ca_params(&ca_cn, not_before, not_after)
        .map_err(bad)?
        .signed_by(&ca_key, &Issuer::from_params(&root_params, &root_key))
        .map_err(|e| bad(format!("signing failed: {e}")))?;
    let (intermediate, root, cross) = (ca.pem(), root.pem(), cross.pem());
    Ok(CrossSigned {
        cert: [intermediate.as_str(), root.as_str(), cross.as_str(), old_pem.as_str()].concat(),
        key: [ca_key.serialize_pem(), root_key.serialize_pem()].concat(),
        intermediate,
        root,
        cross,
        old_root: old_pem,
    })
}

/// k3s's `service.key` for a CA rotation: a new RSA-2048 key first (what signs from then on),
/// then every key of the old file, so tokens already out keep verifying (the server refuses
/// a set without the old first key: validateServiceKey).
pub fn service_keys(old: &[u8]) -> Result<String, SignError> {
    let text = std::str::from_utf8(old).map_err(|_| SignError::Leaf("service.key: not PEM text".into()))?;
    let keys: Vec<_> = blocks(text).map_err(|e| SignError::Leaf(format!("service.key: {e}")))?.into_iter().filter(|b| b.label.ends_with("PRIVATE KEY")).collect();
    if keys.is_empty() {
        return Err(SignError::Leaf("service.key: no private key in it".into()));
    }
    // Every key is read at the apiserver's start (--service-account-key-file): one that does
    // not load would stop it on every server the set reaches.
    for (i, b) in keys.iter().enumerate() {
        load_key(&text.as_bytes()[b.start..b.end]).map_err(|e| SignError::Leaf(format!("service.key: key {} of {}: {e}", i + 1, keys.len())))?;
    }
    let new = KeyType::Rsa2048.generate().map_err(|e| SignError::Leaf(format!("service.key: cannot generate a key: {e}")))?;
    let mut out = new.serialize_pem();
    out.push_str(text);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// A cross-signed `-ca.crt` once the old root is let go (k3s's second `rotate-ca`): the
/// intermediate and the self-signed root it chains to; the cross-signed root and the old
/// root are dropped.
pub fn without_old_root(cert_pem: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(cert_pem).map_err(|_| "not PEM text".to_string())?;
    let certs = parse_pem(cert_pem).map_err(|e| e.to_string())?.certs;
    let cert_blocks: Vec<_> = blocks(text)?.into_iter().filter(|b| b.label == "CERTIFICATE").collect();
    let first = certs.first().ok_or("no certificate in it")?;
    let root = certs.iter().zip(&cert_blocks).skip(1).find(|(c, _)| c.self_issued && find_issuer(first, &[*c]).is_some());
    let Some((_, root_block)) = root else {
        return Err(format!("{} does not chain to a self-signed root in the file: not a cross-signed set", first.subject));
    };
    Ok([&text[cert_blocks[0].start..cert_blocks[0].end], &text[root_block.start..root_block.end]].concat())
}

#[cfg(test)]
mod tests {
    use super::{rehash_tokens, tls_secret};

    #[test]
    fn only_the_pinned_hash_of_a_token_changes() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let env = format!("K3S_TOKEN='K10{a}::server:s3cret'\nK3S_URL='https://10.0.0.1:6443'\n");
        let got = String::from_utf8(rehash_tokens(env.as_bytes(), &a, &b).unwrap()).unwrap();
        assert_eq!(got, format!("K3S_TOKEN='K10{b}::server:s3cret'\nK3S_URL='https://10.0.0.1:6443'\n"));
        let yaml = format!("server: https://10.0.0.1:6443\ntoken: K10{a}::node:pw\n");
        assert!(String::from_utf8(rehash_tokens(yaml.as_bytes(), &a, &b).unwrap()).unwrap().contains(&format!("token: K10{b}::node:pw")));
        let err = rehash_tokens(b"K3S_TOKEN='bare-secret'\n", &a, &b).unwrap_err();
        assert!(err.contains("no join token") && !err.contains("bare-secret"), "{err}");
    }

    #[test]
    fn a_tls_secret_gives_its_certificate_and_nothing_else_is_one() {
        let secret = |data: &str| format!(r#"{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"k3s-serving"}},"data":{data},"type":"kubernetes.io/tls"}}"#);
        // "-----BEGIN" in base64.
        let got = tls_secret(secret(r#"{"tls.crt":"LS0tLS1CRUdJTg==","tls.key":"c2VjcmV0"}"#).as_bytes()).unwrap().unwrap();
        assert_eq!(got, b"-----BEGIN");
        assert!(tls_secret(secret(r#"{"tls.key":"c2VjcmV0"}"#).as_bytes()).unwrap().unwrap_err().contains("without data"));
        assert!(tls_secret(secret(r#"{"tls.crt":"not base64!"}"#).as_bytes()).unwrap().unwrap_err().contains("not base64"));
        assert!(tls_secret(br#"{"kind":"ConfigMap"}"#).is_none());
        assert!(tls_secret(b"-----BEGIN CERTIFICATE-----").is_none());
        assert!(tls_secret(b"{not json").is_none());
    }
}
