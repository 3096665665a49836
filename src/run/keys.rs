//! Owns: writing kcert's own files on the operator's machine atomically with the right mode
//! (plans 0644, a run's plan and log 0600), and the new CAs' private keys of a plan or a run
//! (a 0700 folder of 0600 files).
//! Must not: log, print or journal key material; keys go to 0600 files and nowhere else.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use atomic_write_file::unix::OpenOptionsExt as _;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::plan::Plan;

/// Writes `path` as `fill` writes it, atomically (a temp file beside it, renamed over it once
/// complete: a write that fails, a full disk say, leaves what was there); `fill`'s result back.
fn write<T>(path: &Path, mode: u32, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<T>) -> Result<T> {
    let fail = |e: std::io::Error| Error::Runtime(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
    }
    let mut opts = atomic_write_file::OpenOptions::new();
    opts.mode(mode).preserve_mode(false);
    let mut f = opts.open(path).map_err(fail)?;
    let filled = fill(&mut f).map_err(fail)?;
    f.commit().map_err(fail)?;
    // The umask may have narrowed it; never widened: say exactly what it is.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    Ok(filled)
}

/// Writes a file readable by its owner only (the temp file is 0600 from the start).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write(path, 0o600, |f| f.write_all(bytes))
}

/// Saves `plan` in its saved form (`stored::write_to`), compressed into the file as it is made
/// (a 5,000-node plan is never whole in memory): 0644 for `--plan-out`, 0600 for a run's own
/// copy. Returns the sha256 of the bytes written, for the journal.
pub fn save_plan(path: &Path, plan: &Plan, private: bool) -> Result<String> {
    /// What goes through it to the file, hashed on the way.
    struct Hashing<W> {
        out: W,
        sha: Sha256,
    }
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let n = self.out.write(bytes)?;
            self.sha.update(&bytes[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }
    write(path, if private { 0o600 } else { 0o644 }, |f| {
        let written = crate::plan::stored::write_to(plan, Hashing { out: f, sha: Sha256::new() })?;
        Ok(crate::pki::cert::hex(&written.sha.finalize()))
    })
}

/// Where the new CA keys of a plan saved with `--plan-out` wait for `kcert apply`.
pub fn plan_keys_dir(state_dir: &Path, plan_id: &str) -> PathBuf {
    state_dir.join("plans").join(plan_id)
}

/// Saves each CA's key as `DIR/<ca>.key` (0600, in a 0700 folder).
pub fn save_keys(dir: &Path, keys: &BTreeMap<String, String>) -> Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Error::Runtime(format!("cannot create {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::Runtime(format!("{}: {e}", dir.display())))?;
    for (ca, pem) in keys {
        write_private(&dir.join(format!("{ca}.key")), pem.as_bytes())?;
    }
    Ok(())
}

/// Loads the keys `save_keys` wrote; `wanted` names the CAs that must be there.
pub fn load_keys(dir: &Path, wanted: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for ca in wanted {
        let path = dir.join(format!("{ca}.key"));
        let meta = std::fs::metadata(&path).map_err(|e| Error::input(path.display().to_string(), format!("the new {ca} CA key is not there ({e}); it is made with the plan and kept on the machine that made it")))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::input(path.display().to_string(), format!("mode {:o}: a CA key readable by others is refused; chmod 600 it if that was you", meta.permissions().mode() & 0o777)));
        }
        let pem = std::fs::read_to_string(&path).map_err(|e| Error::input(path.display().to_string(), e.to_string()))?;
        out.insert(ca.clone(), pem);
    }
    Ok(out)
}

/// Opens a file for appending that only its owner can read (the run log).
pub fn open_private_log(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(|e| Error::Runtime(format!("cannot open {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("plans/p1");
        let keys = BTreeMap::from([("ca".to_string(), "KEY".to_string())]);
        save_keys(&d, &keys).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(d.join("ca.key")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_keys(&d, &["ca".into()]).unwrap(), keys);
        assert!(load_keys(&d, &["etcd-ca".into()]).unwrap_err().to_string().contains("etcd-ca"));
        std::fs::set_permissions(d.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_keys(&d, &["ca".into()]).unwrap_err().to_string().contains("readable by others"));
    }
}
