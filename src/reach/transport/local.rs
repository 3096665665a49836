//! Owns: the local transport: this machine, or a directory laid out like a node's
//! filesystem (`--root`), where absolute symlinks resolve inside the root, not on the host.
//! Must not: run commands or dial ports when it reads a root (that is offline mode).

use std::collections::HashSet;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{CmdOutput, FileData, MAX_FILE_BYTES, NodeFailure, NodeResult, Stream, Transport, WriteFile, script};

pub struct LocalTransport {
    name: String,
    root: Option<PathBuf>,
}

impl LocalTransport {
    pub fn new(name: impl Into<String>, root: Option<PathBuf>) -> Self {
        LocalTransport { name: name.into(), root }
    }

    /// The host path behind a node path, following symlinks inside the root.
    fn host_path(&self, node_path: &str) -> Result<PathBuf, String> {
        match &self.root {
            None => Ok(PathBuf::from(node_path)),
            Some(root) => resolve_in_root(root, node_path),
        }
    }

    fn node_path(&self, host: &Path) -> String {
        match &self.root {
            None => host.to_string_lossy().into_owned(),
            Some(root) => {
                let rel = host.strip_prefix(root).unwrap_or(host);
                format!("/{}", rel.to_string_lossy())
            }
        }
    }

    fn walk(&self, host: &Path, node: &str, seen: &mut HashSet<(u64, u64)>, out: &mut Vec<String>) {
        let Ok(meta) = std::fs::metadata(host) else { return };
        if meta.is_file() {
            out.push(node.to_string());
            return;
        }
        if !meta.is_dir() || !seen.insert((meta.dev(), meta.ino())) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(host) else { return };
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names {
            let child_node = format!("{}/{}", node.trim_end_matches('/'), name);
            if let Ok(child_host) = self.host_path(&child_node) {
                self.walk(&child_host, &child_node, seen, out);
            }
        }
    }
}

impl LocalTransport {
    /// Writes one file's temp copy next to its target: (temp, target).
    fn stage(&self, f: &WriteFile, i: usize) -> Result<(PathBuf, PathBuf), String> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let mut target = self.host_path(&f.path)?;
        if self.root.is_none()
            && let Ok(real) = std::fs::canonicalize(&target)
        {
            target = real;
        }
        let dir = target.parent().ok_or_else(|| format!("{}: no parent directory", f.path))?.to_path_buf();
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| format!("cannot create directory for {}: {e}", f.path))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let tmp = dir.join(format!(".kcert.{}.{i}.{nanos}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            file.write_all(&f.bytes)?;
            file.sync_all()?;
            let mode = match std::fs::metadata(&target) {
                Ok(meta) => {
                    if meta.uid() != nix_uid(&tmp)? || meta.gid() != nix_gid(&tmp)? {
                        std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()))?;
                    }
                    meta.permissions().mode() & 0o7777
                }
                Err(_) => f.mode,
            };
            let mode = if f.private { 0o600 } else { mode };
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            let free = script::parse_df(&std::process::Command::new("df").arg("-Pk").arg(&dir).output().map(|o| o.stdout).unwrap_or_default())
                .map(|b| format!(" ({} KiB free in {})", b / 1024, dir.display()))
                .unwrap_or_default();
            return Err(format!("cannot write {}: {e}{free}", f.path));
        }
        Ok((tmp, target))
    }
}

fn nix_uid(p: &Path) -> std::io::Result<u32> {
    std::fs::metadata(p).map(|m| m.uid())
}

fn nix_gid(p: &Path) -> std::io::Result<u32> {
    std::fs::metadata(p).map(|m| m.gid())
}

/// Linux's limit on a path's length.
const PATH_MAX: usize = 4096;

/// Resolves `node_path` under `root` like the kernel would if `root` were `/`.
pub fn resolve_in_root(root: &Path, node_path: &str) -> Result<PathBuf, String> {
    // As the kernel: a path longer than PATH_MAX is refused, not walked component by component.
    if node_path.len() > PATH_MAX {
        return Err(format!("a path of {} bytes: longer than PATH_MAX ({PATH_MAX})", node_path.len()));
    }
    let mut pending: Vec<String> = node_path.split('/').filter(|s| !s.is_empty()).map(str::to_string).rev().collect();
    let mut current: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        let candidate = current.iter().fold(root.to_path_buf(), |p, c| p.join(c)).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(format!("too many levels of symbolic links in {node_path}"));
                }
                let target = std::fs::read_link(&candidate).map_err(|e| e.to_string())?;
                if target.is_absolute() {
                    current.clear();
                }
                let parts: Vec<String> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                pending.extend(parts.into_iter().rev());
            }
            _ => current.push(part),
        }
    }
    Ok(current.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

impl LocalTransport {
    fn read_up_to(&self, p: &str, max: u64) -> FileData {
        let host = match self.host_path(p) {
            Ok(h) => h,
            Err(e) => return FileData::Unreadable(e),
        };
        match std::fs::metadata(&host) {
            Err(e) if e.kind() == ErrorKind::NotFound => FileData::Missing,
            Err(e) => FileData::Unreadable(e.to_string()),
            Ok(m) if !m.is_file() => FileData::NotAFile,
            Ok(m) if m.len() > max => FileData::TooLarge(m.len()),
            Ok(_) => match std::fs::read(&host) {
                Ok(b) => FileData::Found(b),
                Err(e) => FileData::Unreadable(e.to_string()),
            },
        }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn node(&self) -> &str {
        &self.name
    }

    fn offline(&self) -> bool {
        self.root.is_some()
    }

    fn user(&self) -> String {
        std::env::var("USER").unwrap_or_else(|_| "local".into())
    }

    async fn run(&self, script: &str) -> NodeResult<CmdOutput> {
        if self.offline() {
            return Err(NodeFailure::command("commands are not run when reading a --root directory"));
        }
        let mut child = tokio::process::Command::new("sh")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| NodeFailure::command(format!("cannot start sh: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(script.as_bytes()).await.map_err(|e| NodeFailure::command(e.to_string()))?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(|e| NodeFailure::command(e.to_string()))?;
        Ok(CmdOutput { status: out.status.code().map(|c| c as u32), stdout: out.stdout, stderr: out.stderr })
    }

    async fn read_files(&self, paths: &[String]) -> NodeResult<Vec<FileData>> {
        Ok(paths.iter().map(|p| self.read_up_to(p, MAX_FILE_BYTES)).collect())
    }

    async fn read_large(&self, path: &str, max: u64) -> NodeResult<FileData> {
        Ok(self.read_up_to(path, max))
    }

    async fn list_files(&self, paths: &[String]) -> NodeResult<Vec<String>> {
        let mut out = Vec::new();
        for p in paths {
            let mut seen = HashSet::new();
            if let Ok(host) = self.host_path(p) {
                let node = self.node_path(&host);
                let node = if self.root.is_some() { node } else { p.clone() };
                self.walk(&host, &node, &mut seen, &mut out);
            }
        }
        Ok(out)
    }

    async fn exists(&self, paths: &[String]) -> NodeResult<Vec<bool>> {
        Ok(paths.iter().map(|p| self.host_path(p).map(|h| h.exists()).unwrap_or(false)).collect())
    }

    async fn free_bytes(&self, path: &str) -> NodeResult<u64> {
        let host = self.host_path(path).map_err(NodeFailure::command)?;
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script::free_space_all(&[host.to_string_lossy().into_owned()]))
            .output()
            .await
            .map_err(|e| NodeFailure::command(format!("df: {e}")))?;
        script::parse_df(&out.stdout).map_err(NodeFailure::command)
    }

    async fn write_files(&self, files: &[WriteFile]) -> NodeResult<Vec<String>> {
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
        let cleanup = |staged: &[(PathBuf, PathBuf)]| {
            for (tmp, _) in staged {
                let _ = std::fs::remove_file(tmp);
            }
        };
        for (i, f) in files.iter().enumerate() {
            match self.stage(f, i) {
                Ok(pair) => staged.push(pair),
                Err(e) => {
                    cleanup(&staged);
                    return Err(NodeFailure::command(e));
                }
            }
        }
        crate::fault::reached(crate::fault::Point::Rename, None);
        for (i, (tmp, target)) in staged.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, target) {
                cleanup(&staged[i..]);
                return Err(NodeFailure::command(format!("cannot rename the new {} into place: {e}", files[i].path)));
            }
        }
        let mut sums = Vec::new();
        for (_, target) in &staged {
            if let Some(dir) = target.parent()
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
            let bytes = std::fs::read(target).map_err(|e| NodeFailure::command(format!("cannot read back {}: {e}", target.display())))?;
            sums.push(crate::pki::sha256(&bytes));
        }
        Ok(sums)
    }

    async fn append_file(&self, path: &str, had: u64, bytes: &[u8]) -> NodeResult<Option<u64>> {
        use std::io::Write;
        let p = self.host_path(path).map_err(NodeFailure::command)?;
        let failed = |e: std::io::Error| NodeFailure::command(format!("cannot append to {path}: {e}"));
        let mut f = match std::fs::OpenOptions::new().append(true).open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        if f.metadata().map_err(failed)?.len() != had {
            return Ok(None);
        }
        f.write_all(bytes).map_err(failed)?;
        f.sync_all().map_err(failed)?;
        Ok(Some(f.metadata().map_err(failed)?.len()))
    }

    async fn remove_files(&self, paths: &[String]) -> NodeResult<()> {
        let mut dirs = Vec::new();
        for p in paths {
            // The link itself, not its target: resolve the parent inside the root, keep the name.
            let (parent, name) = p.rsplit_once('/').unwrap_or(("", p));
            let dir = self.host_path(if parent.is_empty() { "/" } else { parent }).map_err(NodeFailure::command)?;
            let host = dir.join(name);
            match std::fs::remove_file(&host) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(NodeFailure::command(format!("cannot remove {p}: {e}"))),
            }
            dirs.push(dir);
        }
        dirs.dedup();
        for d in dirs {
            if let Ok(f) = std::fs::File::open(&d) {
                let _ = f.sync_all();
            }
        }
        Ok(())
    }

    async fn remove_empty_dirs(&self, dirs: &[String]) -> NodeResult<()> {
        for d in dirs {
            if let Ok(h) = self.host_path(d) {
                let _ = std::fs::remove_dir(h);
            }
        }
        Ok(())
    }

    async fn remove_temps(&self, dirs: &[String]) -> NodeResult<usize> {
        let mut n = 0;
        for d in dirs {
            let Ok(h) = self.host_path(d) else { continue };
            let Ok(entries) = std::fs::read_dir(&h) else { continue };
            for e in entries.flatten() {
                let temp = e.file_name().to_string_lossy().starts_with(".kcert.");
                let Ok(kind) = e.file_type() else { continue };
                // A file, or the directory an SSH write makes for its temporary files.
                let gone = match (temp, kind.is_dir()) {
                    (false, _) => false,
                    (true, false) => std::fs::remove_file(e.path()).is_ok(),
                    (true, true) => std::fs::remove_dir_all(e.path()).is_ok(),
                };
                n += usize::from(gone);
            }
        }
        Ok(n)
    }

    async fn unwritable(&self, paths: &[String]) -> NodeResult<Vec<Option<String>>> {
        let mut out = Vec::new();
        for p in paths {
            let h = self.host_path(p).map_err(NodeFailure::command)?;
            if h.is_file() {
                // Opened for appending, nothing written: fails on a read-only mount or an immutable file.
                out.push(std::fs::OpenOptions::new().append(true).open(&h).err().map(|e| format!("the file cannot be written: {e}")));
                continue;
            }
            let mut d = h.clone();
            while std::fs::symlink_metadata(&d).is_err() && d.pop() {}
            if !d.is_dir() {
                out.push(Some(format!("{} is in the way: a file where a directory must be made", d.display())));
                continue;
            }
            let probe = d.join(format!(".kcert.{}.probe", std::process::id()));
            let made = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe);
            out.push(match made {
                Ok(_) => std::fs::remove_file(&probe).err().map(|e| format!("cannot remove a probe file in {}: {e}", d.display())),
                Err(e) => Some(format!("nothing can be created in {}: {e}", d.display())),
            });
        }
        Ok(out)
    }

    async fn compare_and_swap(&self, path: &str, expect: Option<&[u8]>, new: Option<&[u8]>) -> NodeResult<super::Swapped> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let fail = |e: String| NodeFailure::command(format!("{path}: {e}"));
        let target = self.host_path(path).map_err(fail)?;
        let dir = target.parent().ok_or_else(|| fail("no parent directory".into()))?.to_path_buf();
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| fail(e.to_string()))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        // The same lock file the SSH script takes with flock(1): one lock for both.
        let lock = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(dir.join(".lock")).map_err(|e| fail(e.to_string()))?;
        lock.lock().map_err(|e| fail(format!("cannot lock {}: {e}", dir.join(".lock").display())))?;
        // A swap a kill cut off left its temp file here; none is in flight while the lock is held.
        self.remove_temps(&[path.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default()]).await?;
        let before = match std::fs::read(&target) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(fail(e.to_string())),
        };
        if before.as_deref() != expect {
            return Ok(super::Swapped { before, swapped: false });
        }
        match new {
            Some(bytes) => {
                self.write_files(&[WriteFile { path: path.to_string(), bytes: bytes.to_vec(), mode: 0o600, private: true }]).await?;
            }
            None => {
                std::fs::remove_file(&target).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }).map_err(|e| fail(e.to_string()))?;
                if let Ok(d) = std::fs::File::open(&dir) {
                    let _ = d.sync_all();
                }
            }
        }
        drop(lock);
        Ok(super::Swapped { before, swapped: true })
    }

    async fn dial(&self, host: &str, port: u16) -> NodeResult<Box<dyn Stream>> {
        if self.offline() {
            return Err(NodeFailure::command("ports are not probed when reading a --root directory"));
        }
        let s = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| NodeFailure::command(format!("{host}:{port}: {e}")))?;
        Ok(Box::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let pki = root.path().join("var/lib/kubelet/pki");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::write(pki.join("kubelet-client-2024.pem"), b"x").unwrap();
        std::os::unix::fs::symlink("/var/lib/kubelet/pki/kubelet-client-2024.pem", pki.join("kubelet-client-current.pem")).unwrap();
        let got = resolve_in_root(root.path(), "/var/lib/kubelet/pki/kubelet-client-current.pem").unwrap();
        assert_eq!(got, pki.join("kubelet-client-2024.pem"));
        // `..` cannot climb out of the root.
        assert_eq!(resolve_in_root(root.path(), "/../../etc/passwd").unwrap(), root.path().join("etc/passwd"));
    }

    #[tokio::test]
    async fn listing_under_a_root_reports_node_paths() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/kubernetes/pki/etcd")).unwrap();
        std::fs::write(root.path().join("etc/kubernetes/pki/etcd/ca.crt"), b"x").unwrap();
        let t = LocalTransport::new("local", Some(root.path().to_path_buf()));
        let files = t.list_files(&["/etc/kubernetes".into()]).await.unwrap();
        assert_eq!(files, vec!["/etc/kubernetes/pki/etcd/ca.crt".to_string()]);
        assert!(t.run("true").await.is_err(), "offline transports run nothing");
    }
}
