//! Owns: the SSH transport (russh): one verified, authenticated connection per node, reused
//! for every script and port; host keys checked against known_hosts; `sudo -n` for non-root.
//! Must not: accept an unknown host key unless told to, ever accept a changed one, or log
//! anything a script prints (it may hold file contents).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::known_hosts::learn_known_hosts_path;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Preferred};
use tokio::sync::Semaphore;

use super::known_hosts::{self, KnownHosts};
use super::{CmdOutput, FileData, NodeFailure, NodeResult, Phase, Replace, Replaced, Snapshot, Stream, Survey, Transport, WriteFile, replace, script, survey, write};

/// sshd's default MaxSessions is 10; stay under it.
const MAX_CHANNELS: usize = 8;

#[derive(Debug, Clone)]
pub struct JumpHost {
    pub host: String,
    pub port: u16,
    pub user: String,
}

/// Everything needed to reach one node, already resolved from inventory and ~/.ssh/config.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Key files to try, in order; the agent (SSH_AUTH_SOCK) is tried after them.
    pub identity_files: Vec<PathBuf>,
    pub known_hosts: PathBuf,
    pub become_sudo: bool,
    pub jump: Option<JumpHost>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub accept_new_host_keys: bool,
    /// Key exchanges to offer, in order (`KexAlgorithms` from the ssh config); none: kcert's
    /// order, the cheapest first.
    pub kex: Option<Vec<String>>,
}

pub struct SshTransport {
    name: String,
    opts: SshOptions,
    handle: Handle<HostKeyCheck>,
    // Held so the tunnel through the jump host stays open.
    _jump: Option<Handle<HostKeyCheck>>,
    channels: Semaphore,
    /// Commands run over this connection (each its own channel), logged when it closes.
    execs: std::sync::atomic::AtomicUsize,
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        let execs = self.execs.load(std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(node = %self.name, execs, "connection closed");
    }
}

struct HostKeyCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    verdict: Arc<Mutex<Option<String>>>,
}

impl HostKeyCheck {
    fn refuse(&self, why: String) -> Result<bool, russh::Error> {
        *self.verdict.lock().expect("verdict lock") = Some(why);
        Ok(false)
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return self.refuse(format!("{} presented an SSH host certificate; kcert checks plain host keys only", self.host));
        };
        let shown = display_host(&self.host, self.port);
        let got = key.fingerprint(HashAlg::Sha256);
        let known: Arc<KnownHosts> = known_hosts::load(&self.known_hosts);
        match known.check(&self.host, self.port, key) {
            Ok(true) => Ok(true),
            Ok(false) if self.accept_new => {
                match learn_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
                    Ok(()) => {
                        known_hosts::forget(&self.known_hosts);
                        tracing::warn!(host = %shown, fingerprint = %got, file = %self.known_hosts.display(), "recorded a new host key");
                        Ok(true)
                    }
                    Err(e) => self.refuse(format!("cannot record the host key of {shown} in {}: {e}", self.known_hosts.display())),
                }
            }
            Ok(false) => {
                let mut msg = format!(
                    "host key of {shown} is not in {} ({} {got}); verify it and add it, or pass --accept-new-host-keys to record it on first use",
                    self.known_hosts.display(),
                    key.algorithm()
                );
                if known.unsupported {
                    msg.push_str("; note: kcert does not read wildcard, negated or @cert-authority known_hosts lines");
                }
                self.refuse(msg)
            }
            Err(russh::keys::Error::KeyChanged { line }) => {
                let recorded = known
                    .keys_for(&self.host, self.port)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, k)| k.algorithm() == key.algorithm())
                    .map(|(_, k)| k.fingerprint(HashAlg::Sha256).to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.refuse(format!(
                    "HOST KEY CHANGED for {shown}: {}:{line} records {} {recorded}, the server presented {got}. \
                     This may be an attack; kcert refuses to connect. If the change is expected, remove the old line.",
                    self.known_hosts.display(),
                    key.algorithm()
                ))
            }
            Err(e) => self.refuse(format!("cannot read {}: {e}", self.known_hosts.display())),
        }
    }
}

fn display_host(host: &str, port: u16) -> String {
    if port == 22 { host.to_string() } else { format!("[{host}]:{port}") }
}

/// Host-key algorithms to offer: those already recorded for the host first, so a host known
/// by its ECDSA key is not reported unknown because it offered Ed25519.
fn preferred_for(host: &str, port: u16, known_hosts: &Path) -> Preferred {
    let recorded: Vec<Algorithm> = known_hosts::load(known_hosts)
        .keys_for(host, port)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, k)| k.algorithm())
        .collect();
    let mut preferred = Preferred::default();
    if recorded.is_empty() {
        return preferred;
    }
    let mut keys: Vec<Algorithm> = Vec::new();
    for alg in preferred.key.iter() {
        let same_kind = |r: &Algorithm| match (r, alg) {
            (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
            (a, b) => a == b,
        };
        if recorded.iter().any(same_kind) {
            keys.push(alg.clone());
        }
    }
    preferred.key = Cow::Owned(keys);
    preferred
}

async fn handshake<S>(stream: S, host: &str, port: u16, opts: &SshOptions) -> NodeResult<Handle<HostKeyCheck>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let verdict = Arc::new(Mutex::new(None));
    let handler = HostKeyCheck {
        host: host.to_string(),
        port,
        known_hosts: opts.known_hosts.clone(),
        accept_new: opts.accept_new_host_keys,
        verdict: verdict.clone(),
    };
    let mut preferred = preferred_for(host, port, &opts.known_hosts);
    preferred.kex = Cow::Owned(kex_order(opts.kex.as_deref()));
    let config = Arc::new(client::Config {
        preferred,
        keepalive_interval: Some(Duration::from_secs(15)),
        nodelay: true,
        ..Default::default()
    });
    let shown = display_host(host, port);
    match tokio::time::timeout(opts.connect_timeout, client::connect_stream(config, stream, handler)).await {
        Err(_) => Err(NodeFailure::new(Phase::Connect, format!("SSH handshake with {shown} timed out after {:?}", opts.connect_timeout))),
        Ok(Err(e)) => match verdict.lock().expect("verdict lock").take() {
            Some(why) => Err(NodeFailure::new(Phase::HostKey, why)),
            None => Err(NodeFailure::new(Phase::Connect, format!("SSH handshake with {shown} failed: {e}"))),
        },
        Ok(Ok(handle)) => Ok(handle),
    }
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> NodeResult<tokio::net::TcpStream> {
    let shown = display_host(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Err(_) => Err(NodeFailure::new(Phase::Connect, format!("cannot connect to {shown}: timed out after {timeout:?}"))),
        Ok(Err(e)) => Err(NodeFailure::new(Phase::Connect, format!("cannot connect to {shown}: {e}"))),
        Ok(Ok(s)) => {
            // Small request/response packets: without this, Nagle and delayed ACKs stall
            // every round trip ~40 ms (russh sets it only on sockets it opens itself).
            s.set_nodelay(true).map_err(|e| NodeFailure::new(Phase::Connect, format!("cannot set TCP_NODELAY on the connection to {shown}: {e}")))?;
            Ok(s)
        }
    }
}

/// The key exchanges offered, in order: the ssh config's `KexAlgorithms` when it sets them
/// (those russh knows), else curve25519-sha256 first (the cheapest on CPU both sides of a
/// fleet-wide read), then russh's safe order (post-quantum hybrid included).
fn kex_order(configured: Option<&[String]>) -> Vec<russh::kex::Name> {
    let known = |n: &str| russh::kex::ALL_KEX_ALGORITHMS.iter().find(|k| k.as_ref() == n).map(|k| **k);
    let defaults = Preferred::default().kex;
    let mut order: Vec<russh::kex::Name> = match configured {
        Some(names) => names.iter().filter_map(|n| known(n)).collect(),
        None => std::iter::once(russh::kex::CURVE25519).chain(defaults.iter().copied().filter(|k| *k != russh::kex::CURVE25519)).collect(),
    };
    // The extension markers (ext-info-c, strict kex) are not exchanges: always offered.
    for k in defaults.iter().filter(|k| k.as_ref().starts_with("ext-info") || k.as_ref().starts_with("kex-strict")) {
        if !order.contains(k) {
            order.push(*k);
        }
    }
    order
}

async fn authenticate(handle: &mut Handle<HostKeyCheck>, user: &str, host: &str, keys: &[PathBuf]) -> NodeResult<()> {
    let mut tried = Vec::new();
    let auth_err = |e: russh::Error| NodeFailure::new(Phase::Auth, format!("authentication with {host} failed: {e}"));
    for path in keys {
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(k) => k,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                tried.push(format!("{} (encrypted: load it into ssh-agent)", path.display()));
                continue;
            }
            Err(e) => {
                tried.push(format!("{} (unreadable: {e})", path.display()));
                continue;
            }
        };
        let hash = handle.best_supported_rsa_hash().await.map_err(auth_err)?.flatten();
        let res = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(auth_err)?;
        if res.success() {
            return Ok(());
        }
        tried.push(format!("{} (refused)", path.display()));
    }
    match russh::keys::agent::client::AgentClient::connect_env().await {
        Ok(mut agent) => {
            let identities = agent.request_identities().await.unwrap_or_default();
            for id in identities {
                let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = id else { continue };
                let hash = handle.best_supported_rsa_hash().await.map_err(auth_err)?.flatten();
                match handle.authenticate_publickey_with(user, key.clone(), hash, &mut agent).await {
                    Ok(r) if r.success() => return Ok(()),
                    _ => tried.push(format!("agent key {}", key.fingerprint(HashAlg::Sha256))),
                }
            }
        }
        Err(_) if tried.is_empty() => tried.push("no ssh-agent (SSH_AUTH_SOCK unset)".into()),
        Err(_) => {}
    }
    Err(NodeFailure::new(
        Phase::Auth,
        format!("authentication as {user}@{host} failed; tried: {}", if tried.is_empty() { "nothing".into() } else { tried.join(", ") }),
    ))
}

impl SshTransport {
    pub async fn connect(name: &str, opts: SshOptions) -> NodeResult<SshTransport> {
        let (mut handle, jump) = match &opts.jump {
            None => {
                let stream = tcp(&opts.host, opts.port, opts.connect_timeout).await?;
                (handshake(stream, &opts.host, opts.port, &opts).await?, None)
            }
            Some(j) => {
                let stream = tcp(&j.host, j.port, opts.connect_timeout).await?;
                let mut jh = handshake(stream, &j.host, j.port, &opts).await.map_err(|f| NodeFailure::new(f.phase, format!("jump host: {}", f.message)))?;
                authenticate(&mut jh, &j.user, &j.host, &opts.identity_files).await.map_err(|f| NodeFailure::new(f.phase, format!("jump host: {}", f.message)))?;
                let ch = jh
                    .channel_open_direct_tcpip(opts.host.clone(), opts.port as u32, "127.0.0.1", 0)
                    .await
                    .map_err(|e| NodeFailure::new(Phase::Connect, format!("jump host {} cannot reach {}:{}: {e}", j.host, opts.host, opts.port)))?;
                (handshake(ch.into_stream(), &opts.host, opts.port, &opts).await?, Some(jh))
            }
        };
        authenticate(&mut handle, &opts.user, &opts.host, &opts.identity_files).await?;
        Ok(SshTransport { name: name.to_string(), opts, handle, _jump: jump, channels: Semaphore::new(MAX_CHANNELS), execs: Default::default() })
    }

    fn uses_sudo(&self) -> bool {
        self.opts.become_sudo && self.opts.user != "root"
    }

    async fn exec(&self, command: &str, stdin: &[u8]) -> NodeResult<CmdOutput> {
        let _permit = self.channels.acquire().await.expect("semaphore is never closed");
        self.execs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fail = |e: russh::Error| NodeFailure::command(format!("SSH channel to {}: {e}", self.opts.host));
        let work = async {
            let mut ch = self.handle.channel_open_session().await.map_err(fail)?;
            ch.exec(true, command).await.map_err(fail)?;
            ch.data(stdin).await.map_err(fail)?;
            ch.eof().await.map_err(fail)?;
            let mut out = CmdOutput { status: None, stdout: Vec::new(), stderr: Vec::new() };
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    _ => {}
                }
            }
            Ok(out)
        };
        let started = std::time::Instant::now();
        match tokio::time::timeout(self.opts.command_timeout, work).await {
            Ok(r) => {
                tracing::debug!(node = %self.name, ms = started.elapsed().as_millis() as u64, sent = stdin.len(), status = ?r.as_ref().ok().and_then(|o| o.status), "exec");
                r
            }
            Err(_) => Err(NodeFailure::command(format!("command on {} timed out after {:?}", self.name, self.opts.command_timeout))),
        }
    }
}

/// Turns sudo's own complaints into messages that say what to do.
fn sudo_problem(user: &str, node: &str, out: &CmdOutput) -> Option<NodeFailure> {
    if out.success() {
        return None;
    }
    let err = out.stderr_text();
    let why = if err.contains("a password is required") || err.contains("a terminal is required") {
        format!("sudo on {node} needs a password for {user}; kcert runs `sudo -n` (never prompts): allow NOPASSWD for {user} or log in as root")
    } else if err.contains("not in the sudoers") || err.contains("not allowed to execute") {
        format!("{user} may not use sudo on {node}: {err}")
    } else if err.contains("sudo: not found") || err.contains("sudo: command not found") {
        format!("sudo is not installed on {node}; log in as root or set become: none")
    } else {
        return None;
    };
    Some(NodeFailure::new(Phase::Sudo, why))
}

#[async_trait]
impl Transport for SshTransport {
    fn node(&self) -> &str {
        &self.name
    }

    fn offline(&self) -> bool {
        false
    }

    fn user(&self) -> String {
        self.opts.user.clone()
    }

    async fn run(&self, script: &str) -> NodeResult<CmdOutput> {
        let command = if self.uses_sudo() { "sudo -n sh -s" } else { "sh -s" };
        let out = self.exec(command, script::in_c_locale(script).as_bytes()).await?;
        if self.uses_sudo()
            && let Some(problem) = sudo_problem(&self.opts.user, &self.name, &out)
        {
            return Err(problem);
        }
        Ok(out)
    }

    async fn read_files(&self, paths: &[String]) -> NodeResult<Vec<FileData>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        // The survey reads any number of files with a fixed number of forks; an answer it
        // cannot give (a relative path, a file changing while read) is read file by file.
        let req = Survey { read: paths.to_vec(), ..Default::default() };
        let out = self.run(&survey::script(&req, "")).await?;
        if let Ok(snap) = survey::parse(&out.stdout, &req, "")
            && let Some(all) = paths.iter().map(|p| snap.file(p)).collect::<Option<Vec<FileData>>>()
        {
            return Ok(all);
        }
        let out = self.run(&script::read_files(paths)).await?;
        script::parse_read_files(&out.stdout, paths.len())
            .map_err(|e| NodeFailure::command(format!("reading files: {e}; stderr: {}", out.stderr_text())))
    }

    async fn read_large(&self, path: &str, max: u64) -> NodeResult<FileData> {
        let out = self.run(&script::read_files_up_to(&[path.to_string()], max)).await?;
        script::parse_read_files(&out.stdout, 1).map(|mut v| v.remove(0)).map_err(|e| NodeFailure::command(format!("reading {path}: {e}; stderr: {}", out.stderr_text())))
    }

    async fn list_files(&self, paths: &[String]) -> NodeResult<Vec<String>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.run(&script::list_files(paths)).await?;
        Ok(script::parse_list_files(&out.stdout))
    }

    async fn exists(&self, paths: &[String]) -> NodeResult<Vec<bool>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.run(&script::exists(paths)).await?;
        script::parse_exists(&out.stdout, paths.len()).map_err(NodeFailure::command)
    }

    async fn free_bytes(&self, path: &str) -> NodeResult<u64> {
        Ok(self.free_bytes_all(&[path.to_string()]).await?[0])
    }

    async fn free_bytes_all(&self, paths: &[String]) -> NodeResult<Vec<u64>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.run(&script::free_space_all(paths)).await?;
        script::parse_df_all(&out.stdout, paths.len()).map_err(NodeFailure::command)
    }

    async fn write_files(&self, files: &[WriteFile]) -> NodeResult<Vec<String>> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.run(&write::write_files(files)).await?;
        if !out.success() {
            return Err(NodeFailure::command(out.stderr_text()));
        }
        write::parse_write_files(&out.stdout, files.len()).map_err(NodeFailure::command)
    }

    async fn append_file(&self, path: &str, had: u64, bytes: &[u8]) -> NodeResult<Option<u64>> {
        let out = self.run(&write::append_file(path, had, bytes)).await?;
        write::parse_append_file(&out.stdout).map_err(|e| NodeFailure::command(format!("appending to {path}: {e}; stderr: {}", out.stderr_text())))
    }

    async fn remove_files(&self, paths: &[String]) -> NodeResult<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let out = self.run(&script::remove_files(paths)).await?;
        if !out.success() {
            return Err(NodeFailure::command(out.stderr_text()));
        }
        Ok(())
    }

    async fn remove_empty_dirs(&self, dirs: &[String]) -> NodeResult<()> {
        if dirs.is_empty() {
            return Ok(());
        }
        self.run(&script::remove_empty_dirs(dirs)).await.map(|_| ())
    }

    async fn remove_temps(&self, dirs: &[String]) -> NodeResult<usize> {
        if dirs.is_empty() {
            return Ok(0);
        }
        let out = self.run(&script::remove_temps(dirs)).await?;
        Ok(out.stdout_text().trim().parse().unwrap_or(0))
    }

    async fn unwritable(&self, paths: &[String]) -> NodeResult<Vec<Option<String>>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.run(&script::unwritable(paths)).await?;
        script::parse_lines(&out.stdout, paths.len()).map_err(NodeFailure::command)
    }

    async fn compare_and_swap(&self, path: &str, expect: Option<&[u8]>, new: Option<&[u8]>) -> NodeResult<super::Swapped> {
        let out = self.run(&script::compare_and_swap(path, expect, new)).await?;
        if !out.success() {
            return Err(NodeFailure::command(format!("{path}: {}", out.stderr_text())));
        }
        script::parse_compare_and_swap(&out.stdout).map_err(NodeFailure::command)
    }

    async fn replace_files(&self, files: &[Replace], prune: &[String]) -> NodeResult<Replaced> {
        if files.is_empty() && prune.is_empty() {
            return Ok(Replaced::default());
        }
        let out = self.run(&replace::replace_files(files, prune)).await?;
        replace::parse_replace_files(&out.stdout, out.status, &out.stderr_text(), files).map_err(|e| NodeFailure::command(format!("replacing files: {e}")))
    }

    async fn survey(&self, req: &Survey) -> NodeResult<Snapshot> {
        let out = self.run(&survey::script(req, "")).await?;
        // An answer kcert cannot use (a node without GNU find, a file changing while read)
        // only costs the round trips the survey would have saved.
        Ok(survey::parse(&out.stdout, req, "").unwrap_or_else(|e| {
            tracing::debug!(node = %self.name, error = %e, "survey unusable; asking file by file");
            Snapshot::default()
        }))
    }

    async fn dial(&self, host: &str, port: u16) -> NodeResult<Box<dyn Stream>> {
        let ch = self
            .handle
            .channel_open_direct_tcpip(host, port as u32, "127.0.0.1", 0)
            .await
            .map_err(|e| NodeFailure::command(format!("{host}:{port} on {}: {e}", self.name)))?;
        Ok(Box::new(ch.into_stream()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve25519_is_offered_first_unless_the_ssh_config_says_otherwise() {
        let names = |v: Vec<russh::kex::Name>| v.iter().map(|k| k.as_ref().to_string()).collect::<Vec<_>>();
        let default = names(kex_order(None));
        assert_eq!(default[0], "curve25519-sha256");
        assert!(default.iter().any(|k| k.starts_with("mlkem768x25519")), "the post-quantum hybrid is still offered: {default:?}");
        assert!(default.iter().any(|k| k == "kex-strict-c-v00@openssh.com"), "{default:?}");
        let configured = names(kex_order(Some(&["diffie-hellman-group14-sha256".to_string(), "no-such-kex".to_string()])));
        assert_eq!(configured[0], "diffie-hellman-group14-sha256");
        assert!(!configured.iter().any(|k| k.starts_with("curve25519")), "{configured:?}");
        assert!(configured.iter().any(|k| k == "ext-info-c"), "{configured:?}");
    }

    fn out(status: u32, stderr: &str) -> CmdOutput {
        CmdOutput { status: Some(status), stdout: vec![], stderr: stderr.as_bytes().to_vec() }
    }

    #[test]
    fn sudo_asking_for_a_password_is_said_plainly() {
        let p = sudo_problem("ops", "cp1", &out(1, "sudo: a password is required\n")).unwrap();
        assert_eq!(p.phase, Phase::Sudo);
        assert!(p.message.contains("needs a password") && p.message.contains("NOPASSWD"), "{}", p.message);
        assert!(sudo_problem("ops", "cp1", &out(0, "")).is_none());
        assert!(sudo_problem("ops", "cp1", &out(1, "grep: x: No such file")).is_none());
    }

    #[test]
    fn recorded_algorithms_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, "10.0.0.1 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=\n").unwrap();
        let p = preferred_for("10.0.0.1", 22, &kh);
        assert_eq!(p.key.as_ref(), &[Algorithm::Ecdsa { curve: russh::keys::EcdsaCurve::NistP256 }]);
        assert_eq!(preferred_for("10.0.0.2", 22, &kh).key.len(), Preferred::default().key.len());
    }
}
