//! Owns: the byte-level edits renew and rotate-ca make: a CA added to or pruned from a bundle,
//! a file's certificate blocks replaced (key blocks kept byte for byte), a kubeconfig's
//! `*-data` value rewritten in place, a static pod manifest's flag set.
//! Must not: do I/O, or decode private-key blocks (they are located, never read).

use base64::Engine;
use memchr::memmem;
use sha2::{Digest, Sha256};

use super::cert::hex;
use super::kubeconfig;

/// A PEM block located in a text: `start..end` covers the BEGIN line through the END line
/// and the line break after it.
#[derive(Debug, Clone)]
pub struct Block {
    pub label: String,
    pub start: usize,
    pub end: usize,
    /// sha256 of the DER, for certificate blocks only (`blocks`; `locate` leaves it out).
    pub sha256: Option<String>,
}

const CERT: &str = "CERTIFICATE";

/// Every PEM block of a text, in order, each certificate's DER decoded for its sha256.
pub fn blocks(text: &str) -> Result<Vec<Block>, String> {
    scan(text, true)
}

/// Every PEM block of a text, in order, located only (no `sha256`: nothing decoded), for the
/// edits that move blocks and never compare them.
fn locate(text: &str) -> Result<Vec<Block>, String> {
    scan(text, false)
}

fn scan(text: &str, shas: bool) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    // Byte searches (memchr's), not `str::find`: this runs on every file a plan edits.
    while let Some(i) = memmem::find(&text.as_bytes()[pos..], b"-----BEGIN ") {
        let start = pos + i;
        let line_end = memchr::memchr(b'\n', &text.as_bytes()[start..]).map(|j| start + j).unwrap_or(text.len());
        let label = text[start + 11..line_end].trim_end().strip_suffix("-----").ok_or_else(|| "a BEGIN line is malformed".to_string())?.to_string();
        let end_at = end_line(text, line_end, &label).ok_or_else(|| format!("a {label} block has no END line"))?;
        let mut end = end_at + "-----END -----".len() + label.len();
        if text[end..].starts_with("\r\n") {
            end += 2;
        } else if text[end..].starts_with('\n') {
            end += 1;
        }
        let sha256 = if shas && label == CERT {
            let body: String = text[line_end..end_at].split_whitespace().collect();
            let der = base64::engine::general_purpose::STANDARD.decode(body.as_bytes()).map_err(|e| format!("a certificate block has bad base64: {e}"))?;
            Some(hex(&Sha256::digest(&der)))
        } else {
            None
        };
        out.push(Block { label, start, end, sha256 });
        pos = end;
    }
    Ok(out)
}

/// Where the first `-----END {label}-----` at or after `from` starts.
fn end_line(text: &str, from: usize, label: &str) -> Option<usize> {
    let t = text.as_bytes();
    memmem::find_iter(&t[from..], b"-----END ").map(|j| from + j).find(|&at| t[at + 9..].starts_with(label.as_bytes()) && t[at + 9 + label.len()..].starts_with(b"-----"))
}

fn text_of(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "not PEM text".to_string())
}

fn with_newline(s: &str) -> String {
    if s.ends_with('\n') { s.to_string() } else { format!("{s}\n") }
}

/// The certificate blocks of a text, each as its own PEM text.
pub fn cert_pems(bytes: &[u8]) -> Result<Vec<String>, String> {
    let text = text_of(bytes)?;
    Ok(locate(text)?.into_iter().filter(|b| b.label == CERT).map(|b| with_newline(text[b.start..b.end].trim_end())).collect())
}

/// sha256 of the DER of every certificate in the text.
pub fn cert_shas(bytes: &[u8]) -> Result<Vec<String>, String> {
    Ok(blocks(text_of(bytes)?)?.into_iter().filter_map(|b| b.sha256).collect())
}

/// The bundle with `pem`'s certificate appended, unless it already holds it. In a file that
/// holds a key too, it goes right after the last certificate (the key block stays last, as
/// `set_certs` would place them).
pub fn add_cert(bytes: &[u8], pem: &str) -> Result<Vec<u8>, String> {
    let text = text_of(bytes)?;
    let new = cert_shas(pem.as_bytes())?;
    let have = cert_shas(bytes)?;
    if new.iter().all(|s| have.contains(s)) {
        return Ok(bytes.to_vec());
    }
    let all = locate(text)?;
    if all.iter().any(|b| b.label != CERT)
        && let Some(last) = all.iter().rfind(|b| b.label == CERT)
    {
        return Ok(format!("{}{}{}", &text[..last.end], with_newline(pem.trim_end()), &text[last.end..]).into_bytes());
    }
    let mut out = String::from(text);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&with_newline(pem.trim_end()));
    Ok(out.into_bytes())
}

/// The text without the certificate whose DER has `sha256`; every other byte kept.
pub fn remove_cert(bytes: &[u8], sha256: &str) -> Result<Vec<u8>, String> {
    let text = text_of(bytes)?;
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for b in blocks(text)? {
        if b.sha256.as_deref() == Some(sha256) {
            out.push_str(&text[pos..b.start]);
            pos = b.end;
        }
    }
    out.push_str(&text[pos..]);
    Ok(out.into_bytes())
}

/// The text with its certificate blocks replaced by `pems` (all at the first one's place);
/// every other block (a private key sharing the file) and byte kept as it was.
pub fn set_certs(bytes: &[u8], pems: &[impl AsRef<str>]) -> Result<Vec<u8>, String> {
    let text = text_of(bytes)?;
    let certs: Vec<Block> = locate(text)?.into_iter().filter(|b| b.label == CERT).collect();
    let Some(first) = certs.first() else {
        return Err("no certificate block to replace".into());
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first.start]);
    for p in pems {
        out.push_str(&with_newline(p.as_ref().trim_end()));
    }
    let mut pos = first.end;
    for b in &certs[1..] {
        out.push_str(&text[pos..b.start]);
        pos = b.end;
    }
    out.push_str(&text[pos..]);
    Ok(out.into_bytes())
}

/// A key file's text as a copy of the key: the whole file, or, where the key shares the file
/// with certificates, its first private key block alone.
pub fn key_pem(bytes: &[u8]) -> Option<String> {
    let text = text_of(bytes).ok()?;
    let all = locate(text).ok()?;
    if !all.iter().any(|b| b.label == CERT) {
        return Some(text.to_string());
    }
    all.into_iter().find(|b| b.label.ends_with("PRIVATE KEY")).map(|b| with_newline(text[b.start..b.end].trim_end()))
}

/// The text with its first private key block replaced by `key` (a CA whose certificate and
/// key share one file); every other byte kept.
pub fn set_key(bytes: &[u8], key: &str) -> Result<Vec<u8>, String> {
    let text = text_of(bytes)?;
    let b = locate(text)?.into_iter().find(|b| b.label.ends_with("PRIVATE KEY")).ok_or("no private key block to replace")?;
    Ok(format!("{}{}{}", &text[..b.start], with_newline(key.trim_end()), &text[b.end..]).into_bytes())
}

/// True when the text holds a private key block (such a file is never put in a plan whole).
pub fn has_private_key(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"PRIVATE KEY-----").is_some() || memchr::memmem::find(bytes, b"client-key-data:").is_some()
}

/// The kubeconfig with the `*-data` value of `field` (as `clusters[k].certificate-authority-data`
/// reads) replaced by `edit` of its decoded bytes; every other byte kept.
pub fn edit_kubeconfig(bytes: &[u8], field: &str, edit: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>) -> Result<Vec<u8>, String> {
    let kc = kubeconfig::parse_kubeconfig(bytes)?;
    let e = kc.embedded.iter().find(|e| e.field.display() == field).ok_or_else(|| format!("no {field} in it"))?;
    let compact: String = e.raw.split_whitespace().collect();
    let old = base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()).map_err(|err| format!("{field}: bad base64: {err}"))?;
    let new = edit(&old)?;
    if new == old {
        return Ok(bytes.to_vec());
    }
    kubeconfig::replace_data(bytes, &e.raw, &new)
}

/// The decoded bytes of a kubeconfig's `*-data` field.
pub fn kubeconfig_data(bytes: &[u8], field: &str) -> Result<Vec<u8>, String> {
    let kc = kubeconfig::parse_kubeconfig(bytes)?;
    let e = kc.embedded.iter().find(|e| e.field.display() == field).ok_or_else(|| format!("no {field} in it"))?;
    let compact: String = e.raw.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()).map_err(|err| format!("{field}: bad base64: {err}"))
}

/// The manifest with `--flag=value` set to `value` in its command list (`- --flag=value`,
/// optionally quoted); the flag must appear exactly once.
pub fn set_flag(manifest: &[u8], flag: &str, value: &str) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(manifest).map_err(|_| "the manifest is not UTF-8 text".to_string())?;
    let want = format!("{flag}=");
    let mut hits = 0;
    let mut out = String::with_capacity(text.len() + value.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let trimmed = body.trim_start();
        let indent = &body[..body.len() - trimmed.len()];
        if let Some(item) = trimmed.strip_prefix("- ") {
            let item_t = item.trim();
            let (quote, inner) = match item_t.chars().next() {
                Some(q @ ('"' | '\'')) if item_t.len() >= 2 && item_t.ends_with(q) => (Some(q), &item_t[1..item_t.len() - 1]),
                _ => (None, item_t),
            };
            if inner.starts_with(&want) {
                hits += 1;
                if value.contains(['"', '\'', '\n', ' ', '#']) {
                    return Err(format!("{value:?} cannot be written as a flag value"));
                }
                let q = quote.map(String::from).unwrap_or_default();
                out.push_str(&format!("{indent}- {q}{flag}={value}{q}{ending}"));
                continue;
            }
        }
        out.push_str(line);
    }
    match hits {
        1 => Ok(out.into_bytes()),
        0 => Err(format!("{flag} is not set as `- {flag}=VALUE` in the manifest; kcert will not guess how to change it")),
        n => Err(format!("{flag} appears {n} times in the manifest")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two real (tiny) certificates are not needed: block handling only decodes base64.
    const A: &str = "-----BEGIN CERTIFICATE-----\nQUFBQQ==\n-----END CERTIFICATE-----\n";
    const B: &str = "-----BEGIN CERTIFICATE-----\nQkJCQg==\n-----END CERTIFICATE-----\n";
    const K: &str = "-----BEGIN RSA PRIVATE KEY-----\nS0VZ\n-----END RSA PRIVATE KEY-----\n";

    fn sha(s: &str) -> String {
        cert_shas(s.as_bytes()).unwrap().remove(0)
    }

    #[test]
    fn adding_a_ca_appends_it_once() {
        let ab = add_cert(A.as_bytes(), B).unwrap();
        assert_eq!(String::from_utf8(ab.clone()).unwrap(), format!("{A}{B}"));
        assert_eq!(add_cert(&ab, B).unwrap(), ab, "adding again changes nothing");
        // A file without a final newline still gets a well-formed bundle.
        let out = add_cert(A.trim_end().as_bytes(), B).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{A}{B}"));
    }

    #[test]
    fn a_block_ends_at_the_end_line_of_its_own_label() {
        // Another label's END inside a block is not its end; a truncated END is none.
        let odd = "-----BEGIN CERTIFICATE-----\nQUFBQQ==\n-----END RSA PRIVATE KEY-----\n-----END CERTIFICATE-----\n";
        let found = locate(&format!("{odd}{K}")).unwrap();
        assert_eq!(found.iter().map(|b| (b.label.as_str(), b.start, b.end)).collect::<Vec<_>>(), [("CERTIFICATE", 0, odd.len()), ("RSA PRIVATE KEY", odd.len(), odd.len() + K.len())]);
        assert_eq!(locate("-----BEGIN CERTIFICATE-----\nQUFBQQ==\n-----END CERTIFICATE").unwrap_err(), "a CERTIFICATE block has no END line");
        assert_eq!(locate("-----BEGIN CERTIFICATE-----\nQUFBQQ==\n-----END CERTIFICATES-----\n").unwrap_err(), "a CERTIFICATE block has no END line");
        assert_eq!(locate("-----BEGIN CERTIFICATE\nQUFBQQ==\n").unwrap_err(), "a BEGIN line is malformed");
        // CRLF line ends: the block takes its own line end, and the sha is of the DER.
        let crlf = A.replace('\n', "\r\n");
        let b = &blocks(&format!("{crlf}{B}")).unwrap();
        assert_eq!((b[0].end, b[1].end), (crlf.len(), crlf.len() + B.len()));
        assert_eq!(b[0].sha256, Some(sha(A)));
    }

    #[test]
    fn pruning_removes_exactly_that_ca() {
        let ab = format!("# bundle\n{A}{B}");
        assert_eq!(String::from_utf8(remove_cert(ab.as_bytes(), &sha(A)).unwrap()).unwrap(), format!("# bundle\n{B}"));
        assert_eq!(remove_cert(B.as_bytes(), &sha(A)).unwrap(), B.as_bytes(), "absent: unchanged");
    }

    #[test]
    fn a_ca_added_to_a_file_holding_a_key_goes_after_the_certificates() {
        let file = format!("{A}{K}");
        let out = add_cert(file.as_bytes(), B).unwrap();
        assert_eq!(String::from_utf8(out.clone()).unwrap(), format!("{A}{B}{K}"));
        assert_eq!(set_certs(file.as_bytes(), &[A.to_string(), B.to_string()]).unwrap(), out, "where set_certs puts them");
    }

    #[test]
    fn a_key_sharing_a_file_with_its_certificate_is_located_and_replaced_alone() {
        const N: &str = "-----BEGIN PRIVATE KEY-----\nTkVX\n-----END PRIVATE KEY-----\n";
        let file = format!("# the CA\n{A}{K}");
        assert_eq!(key_pem(file.as_bytes()).as_deref(), Some(K), "with a certificate: the key block alone");
        assert_eq!(key_pem(format!("# a key\n{K}").as_bytes()).as_deref(), Some(format!("# a key\n{K}").as_str()), "a key file alone: the whole file");
        assert_eq!(key_pem(A.as_bytes()), None);
        assert_eq!(String::from_utf8(set_key(file.as_bytes(), N).unwrap()).unwrap(), format!("# the CA\n{A}{N}"));
        assert!(set_key(A.as_bytes(), N).is_err(), "no key block: said, not appended");
    }

    #[test]
    fn replacing_certificates_keeps_the_key_block_byte_for_byte() {
        let file = format!("{A}{K}");
        assert_eq!(String::from_utf8(set_certs(file.as_bytes(), &[B.to_string()]).unwrap()).unwrap(), format!("{B}{K}"));
        let chain = format!("{A}{B}");
        assert_eq!(String::from_utf8(set_certs(chain.as_bytes(), &[B.to_string()]).unwrap()).unwrap(), B);
        assert!(has_private_key(file.as_bytes()) && !has_private_key(chain.as_bytes()));
    }

    #[test]
    fn kubeconfig_data_is_rewritten_in_place() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let kc = format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://x:6443\n  name: k\nusers:\n- name: u\n  user:\n    client-key-data: c2VjcmV0\n",
            b64(A)
        );
        let out = edit_kubeconfig(kc.as_bytes(), "clusters[k].certificate-authority-data", |old| add_cert(old, B)).unwrap();
        assert_eq!(String::from_utf8(out.clone()).unwrap(), kc.replace(&b64(A), &b64(&format!("{A}{B}"))));
        assert_eq!(kubeconfig_data(&out, "clusters[k].certificate-authority-data").unwrap(), format!("{A}{B}").as_bytes());
        assert!(edit_kubeconfig(kc.as_bytes(), "clusters[nope].certificate-authority-data", |b| Ok(b.to_vec())).is_err());
    }

    #[test]
    fn a_manifest_flag_is_set_keeping_every_other_line() {
        let m =
            "spec:\n  containers:\n  - command:\n    - kube-controller-manager\n    - --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt\n    - \"--root-ca-file=/etc/kubernetes/pki/ca.crt\"\n";
        let out = String::from_utf8(set_flag(m.as_bytes(), "--cluster-signing-cert-file", "/x/old/ca.crt").unwrap()).unwrap();
        assert_eq!(out, m.replace("--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt", "--cluster-signing-cert-file=/x/old/ca.crt"));
        let out = String::from_utf8(set_flag(m.as_bytes(), "--root-ca-file", "/y").unwrap()).unwrap();
        assert!(out.contains("    - \"--root-ca-file=/y\"\n"), "{out}");
        assert!(set_flag(m.as_bytes(), "--cluster-signing-key-file", "/k").unwrap_err().contains("not set"));
        assert!(set_flag(m.as_bytes(), "--root-ca-file", "a b").is_err());
    }
}
