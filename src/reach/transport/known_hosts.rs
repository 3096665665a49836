//! Owns: known_hosts files, each read once per run and kept in memory: the keys one records
//! for a host, matched as OpenSSH and russh match them (plain names and hashed `|1|` names).
//! Must not: write a file (a new key is recorded by russh's `learn_known_hosts_path`, after
//! which `forget` makes the next look read the file again) or decide whether a key is trusted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use hmac::{KeyInit, Mac};
use russh::keys::{PublicKey, parse_public_key_base64};

/// One known_hosts file as read: (line number, host patterns, key in base64) per entry.
#[derive(Debug, Default)]
pub struct KnownHosts {
    entries: Vec<(usize, String, String)>,
    /// Lines with markers or patterns kcert does not read (`@cert-authority`, `*`, `?`, `!`).
    pub unsupported: bool,
}

static READ: Mutex<BTreeMap<PathBuf, Arc<KnownHosts>>> = Mutex::new(BTreeMap::new());

/// The file at `path`, read the first time it is asked for in this process. A file that cannot
/// be opened records nothing (as russh reads it).
pub fn load(path: &Path) -> Arc<KnownHosts> {
    let mut read = READ.lock().expect("known_hosts lock");
    read.entry(path.to_path_buf()).or_insert_with(|| Arc::new(KnownHosts::parse(&std::fs::read_to_string(path).unwrap_or_default()))).clone()
}

/// Drops what was read of `path` (kcert has just added a line to it).
pub fn forget(path: &Path) {
    READ.lock().expect("known_hosts lock").remove(path);
}

impl KnownHosts {
    pub fn parse(text: &str) -> KnownHosts {
        let mut kh = KnownHosts::default();
        for (i, line) in text.lines().enumerate() {
            let mut words = line.split_whitespace();
            let Some(hosts) = words.next().filter(|h| !h.starts_with('#')) else { continue };
            if hosts.starts_with('@') || hosts.contains(['*', '?', '!']) {
                kh.unsupported = true;
                continue;
            }
            if let (Some(_alg), Some(key)) = (words.next(), words.next()) {
                kh.entries.push((i + 1, hosts.to_string(), key.to_string()));
            }
        }
        kh
    }

    /// The keys recorded for `host` on `port`, with their line numbers (russh's
    /// `known_host_keys_path` over the text in memory).
    pub fn keys_for(&self, host: &str, port: u16) -> Result<Vec<(usize, PublicKey)>, russh::keys::Error> {
        let name = if port == 22 { host.to_string() } else { format!("[{host}]:{port}") };
        let mut out = Vec::new();
        for (line, hosts, key) in &self.entries {
            if hosts.split(',').any(|pattern| matches(&name, pattern)) {
                out.push((*line, parse_public_key_base64(key)?));
            }
        }
        Ok(out)
    }

    /// Whether `key` is recorded for the host: `KeyChanged` when another key of its algorithm
    /// is (russh's `check_known_hosts_path`).
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Result<bool, russh::keys::Error> {
        let mut known = false;
        for (line, recorded) in self.keys_for(host, port)? {
            if recorded.algorithm() == key.algorithm() {
                if &recorded != key {
                    return Err(russh::keys::Error::KeyChanged { line });
                }
                known = true;
            }
        }
        Ok(known)
    }
}

/// A plain name, or OpenSSH's hashed form `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
fn matches(name: &str, pattern: &str) -> bool {
    let Some(hashed) = pattern.strip_prefix("|1|") else { return name == pattern };
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = hashed.split_once('|') else { return false };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else { return false };
    let Ok(mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else { return false };
    mac.chain_update(name.as_bytes()).verify_slice(&hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_names_match_as_openssh_writes_them_and_each_file_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = |name: &str| {
            let p = dir.path().join(name);
            assert!(std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&p).status().unwrap().success());
            let line = std::fs::read_to_string(p.with_extension("pub")).unwrap();
            line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        };
        let (a, b) = (key("a"), key("b"));
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("# a comment\n[10.0.0.1]:2222 {a}\n10.0.0.2,node2 {b}\n*.example.com {a}\n")).unwrap();
        // ssh-keygen -H hashes every name as OpenSSH does with HashKnownHosts.
        assert!(std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(&path).output().unwrap().status.success());
        std::fs::write(&path, format!("{}10.0.0.3 {a}\n", std::fs::read_to_string(&path).unwrap())).unwrap();
        let kh = load(&path);
        assert!(kh.unsupported, "the wildcard line is noticed");
        let pk = |s: &str| parse_public_key_base64(s.split_whitespace().nth(1).unwrap()).unwrap();
        assert_eq!(kh.keys_for("10.0.0.1", 2222).unwrap().len(), 1, "a hashed [host]:port");
        assert!(kh.keys_for("10.0.0.1", 22).unwrap().is_empty());
        assert!(kh.check("node2", 22, &pk(&b)).unwrap(), "a hashed second name of a line");
        assert!(kh.check("10.0.0.3", 22, &pk(&a)).unwrap(), "a plain name");
        assert!(!kh.check("10.0.0.9", 22, &pk(&a)).unwrap(), "unknown");
        assert!(matches!(kh.check("10.0.0.2", 22, &pk(&a)), Err(russh::keys::Error::KeyChanged { .. })), "another key of the same algorithm");
        // Read once: the same answer until kcert forgets it (after recording a key).
        std::fs::write(&path, "").unwrap();
        assert!(Arc::ptr_eq(&kh, &load(&path)));
        forget(&path);
        assert!(load(&path).keys_for("10.0.0.3", 22).unwrap().is_empty());
    }
}
