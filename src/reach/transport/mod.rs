//! Owns: how kcert reaches a node: a small trait (run a script, read and list files, dial a
//! port) and its two implementations, SSH and local (optionally under a root directory).
//! Must not: know anything of PKI, playbooks or reports.

pub mod known_hosts;
pub mod local;
pub mod script;
pub mod ssh;
pub mod survey;
pub mod write;
pub mod prefetched;
pub mod replace;

use std::fmt;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

pub use local::LocalTransport;
pub use prefetched::Prefetched;
pub use ssh::{SshOptions, SshTransport};
pub use survey::{Snapshot, Survey};

/// Files larger than this are not certificates or kubeconfigs; they are not read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileData {
    Found(Vec<u8>),
    Missing,
    NotAFile,
    Unreadable(String),
    TooLarge(u64),
}

/// One file to write atomically: a temp file in the same directory, fsynced, renamed over
/// the target. An existing file keeps its owner and mode (a symlink's target is written);
/// a new file gets `mode` (its missing parent directories 0700).
#[derive(Clone)]
pub struct WriteFile {
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
    /// Forces mode 0600 whatever the file had (private keys, backups).
    pub private: bool,
}

impl fmt::Debug for WriteFile {
    // Never the bytes: some are private keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteFile({}, {} bytes)", self.path, self.bytes.len())
    }
}

/// One file to change only while it holds what it is expected to: its bytes first copied to
/// its backup (0600), then replaced atomically (or removed).
#[derive(Debug, Clone)]
pub struct Replace {
    /// The file's path, new bytes, mode and privacy.
    pub file: WriteFile,
    /// Removed instead of written (`file.bytes` unused).
    pub remove: bool,
    /// The sha256 it must hold now (None: it must not exist).
    pub expect: Option<String>,
    /// Where its bytes are copied first (when it exists).
    pub backup: Option<String>,
}

/// What `replace_files` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Files (by index) that did not hold what was expected, with what they hold (None: absent
    /// or unreadable): when there is any, nothing was changed.
    pub changed: Vec<(usize, Option<String>)>,
    /// The sha256 of each backup made, read back, in the order of the files that have one.
    pub backups: Vec<String>,
    /// The sha256 of each file written, read back, in order (none when it failed).
    pub written: Vec<String>,
    /// Why the backups or the writes failed after the check passed (the backups listed were
    /// made; no file was written, or some were renamed into place before a failure).
    pub failure: Option<String>,
}

/// What a compare-and-swap found, and whether it swapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swapped {
    pub before: Option<Vec<u8>>,
    pub swapped: bool,
}

/// How far reaching a node got before it failed: `check` reports each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Connect,
    HostKey,
    Auth,
    Sudo,
    Command,
}

#[derive(Debug, Clone)]
pub struct NodeFailure {
    pub phase: Phase,
    pub message: String,
}

impl NodeFailure {
    pub fn new(phase: Phase, message: impl Into<String>) -> Self {
        NodeFailure { phase, message: message.into() }
    }
    pub fn command(message: impl Into<String>) -> Self {
        NodeFailure::new(Phase::Command, message)
    }
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type NodeResult<T> = std::result::Result<T, NodeFailure>;

#[async_trait]
pub trait Transport: Send + Sync {
    /// The node's name, as the inventory gives it.
    fn node(&self) -> &str;
    /// True when reading a directory tree (`--root`): files only, no commands, ports or restarts.
    fn offline(&self) -> bool;
    /// The login user, for messages.
    fn user(&self) -> String;
    /// Runs a POSIX shell script as root (through `sudo -n` when the login is not root).
    async fn run(&self, script: &str) -> NodeResult<CmdOutput>;
    /// Reads files by absolute node path, in one round trip where the transport allows.
    async fn read_files(&self, paths: &[String]) -> NodeResult<Vec<FileData>>;
    /// Reads one file that may be larger than `MAX_FILE_BYTES` (kcert's own records), up to
    /// `max` bytes.
    async fn read_large(&self, path: &str, max: u64) -> NodeResult<FileData>;
    /// Every regular file under each path (the path itself when it is a file), following links.
    async fn list_files(&self, paths: &[String]) -> NodeResult<Vec<String>>;
    async fn exists(&self, paths: &[String]) -> NodeResult<Vec<bool>>;
    /// Bytes free to unprivileged writers on the filesystem holding `path` (or its nearest parent).
    async fn free_bytes(&self, path: &str) -> NodeResult<u64>;
    /// `free_bytes` of each path, in one round trip where the transport allows (a node's sshd
    /// takes ten channels at once by default: a question per directory would go past it).
    async fn free_bytes_all(&self, paths: &[String]) -> NodeResult<Vec<u64>> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.free_bytes(p).await?);
        }
        Ok(out)
    }
    /// Writes every file atomically, all temp files first, then all renames, so a failure
    /// while writing (a full disk) changes nothing. Returns each file's sha256 as read back.
    async fn write_files(&self, files: &[WriteFile]) -> NodeResult<Vec<String>>;
    /// Appends `bytes` to a file while it is `had` bytes long, and syncs it (kcert's own
    /// append-only records): Some(the size it then has), or None when it was not that size (or
    /// the transport does not append), and nothing was appended. A failed append leaves at
    /// most a torn tail, which the size says.
    async fn append_file(&self, _path: &str, _had: u64, _bytes: &[u8]) -> NodeResult<Option<u64>> {
        Ok(None)
    }
    /// Removes files (one already gone is fine; a symlink itself, not its target), then syncs
    /// their directories.
    async fn remove_files(&self, paths: &[String]) -> NodeResult<()>;
    /// Removes each directory that is empty, in the order given; others are left alone.
    async fn remove_empty_dirs(&self, dirs: &[String]) -> NodeResult<()>;
    /// Removes the temporary files an interrupted `write_files` left in these directories, and
    /// the temporary directories holding them (`.kcert.*`: some hold private keys); returns
    /// how many went.
    async fn remove_temps(&self, dirs: &[String]) -> NodeResult<usize>;
    /// Whether each path can be written as `write_files` writes it: a directory, by making and
    /// removing a temporary file in it (or in its nearest existing parent); a file, by opening
    /// it for writing without changing it. One answer per path: why not, or `None`.
    async fn unwritable(&self, paths: &[String]) -> NodeResult<Vec<Option<String>>>;
    /// Replaces a small file only while it still holds `expect` (None: only while there is
    /// none), or removes it (`new` None); written 0600 in a 0700 directory, atomically, the
    /// compare and the rename under one lock on the node, so two kcerts never both win.
    /// Returns what the file held before (None: absent) and whether it was swapped.
    async fn compare_and_swap(&self, path: &str, expect: Option<&[u8]>, new: Option<&[u8]>) -> NodeResult<Swapped>;
    /// Checks every file holds what it is expected to (if one does not, changes nothing),
    /// backs up those that exist (sha256 read back), writes or removes them as `write_files`
    /// and `remove_files` do, then removes the directories of `prune` that are empty: in one
    /// round trip where the transport allows.
    async fn replace_files(&self, files: &[Replace], prune: &[String]) -> NodeResult<Replaced> {
        let paths: Vec<String> = files.iter().map(|f| f.file.path.clone()).collect();
        let mut out = Replaced::default();
        let data = self.read_files(&paths).await?;
        for (i, (f, d)) in files.iter().zip(&data).enumerate() {
            let now = match d {
                FileData::Found(b) => Some(crate::pki::sha256(b)),
                _ => None,
            };
            if now != f.expect {
                out.changed.push((i, now));
            }
        }
        if !out.changed.is_empty() {
            return Ok(out);
        }
        let backups: Vec<WriteFile> = files
            .iter()
            .zip(data)
            .filter_map(|(f, d)| match (&f.backup, d) {
                (Some(b), FileData::Found(bytes)) if f.expect.is_some() => Some(WriteFile { path: b.clone(), bytes, mode: 0o600, private: true }),
                _ => None,
            })
            .collect();
        match self.write_files(&backups).await {
            Ok(sums) => out.backups = sums,
            Err(e) => {
                out.failure = Some(format!("backing up: {e}"));
                return Ok(out);
            }
        }
        if out.backups.iter().zip(files.iter().filter(|f| f.expect.is_some() && f.backup.is_some())).any(|(got, f)| Some(got) != f.expect.as_ref()) {
            out.failure = Some("a backup reads back with another sha256".into());
            return Ok(out);
        }
        let writes: Vec<WriteFile> = files.iter().filter(|f| !f.remove).map(|f| f.file.clone()).collect();
        let removes: Vec<String> = files.iter().filter(|f| f.remove).map(|f| f.file.path.clone()).collect();
        let done = async {
            let sums = self.write_files(&writes).await?;
            self.remove_files(&removes).await?;
            self.remove_empty_dirs(prune).await?;
            Ok::<_, NodeFailure>(sums)
        };
        match done.await {
            Ok(sums) => out.written = sums,
            Err(e) => out.failure = Some(e.message),
        }
        Ok(out)
    }
    /// Asks many questions at once (see `survey`), in one round trip where the transport
    /// allows; the answers it cannot give are left out (by default, all of them).
    async fn survey(&self, _req: &Survey) -> NodeResult<Snapshot> {
        Ok(Snapshot::default())
    }
    /// A TCP connection to `host:port` as seen from the node.
    async fn dial(&self, host: &str, port: u16) -> NodeResult<Box<dyn Stream>>;
}
