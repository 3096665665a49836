//! Owns: the user's OpenSSH client config as kcert reads it (aliases, users, ports, keys,
//! ProxyJump) and jump-host specs.
//! Must not: connect anywhere, or evaluate what it cannot read faithfully (`Match`).

use std::path::Path;

use super::{At, expand_home, read_config};
use crate::error::{Error, Result};
use crate::reach::transport::ssh::JumpHost;

/// The ssh config an inventory names (`none`: none), else `~/.ssh/config` when it exists.
pub(super) fn load(config_file: Option<&At<String>>) -> Result<Option<ssh2_config::SshConfig>> {
    let path = match config_file {
        Some(f) if f.value == "none" => return Ok(None),
        Some(f) => {
            let p = f.path();
            if !p.exists() {
                return Err(f.error(format!("{} does not exist (use `none` to read no ssh config)", p.display())));
            }
            p
        }
        None => {
            let p = expand_home("~/.ssh/config");
            if !p.exists() {
                return Ok(None);
            }
            p
        }
    };
    let text = read_config(&path).map_err(|e| Error::input(path.display().to_string(), e))?;
    parse_ssh_config(&text, &path).map(Some)
}

/// An ssh config's text (`path` names it in errors), as kcert reads it: `Match` blocks are
/// refused, unknown and unsupported fields kept aside.
pub fn parse_ssh_config(text: &str, path: &Path) -> Result<ssh2_config::SshConfig> {
    if let Some((i, _)) = text.lines().enumerate().find(|(_, l)| l.trim_start().to_ascii_lowercase().starts_with("match ")) {
        return Err(Error::InputAt {
            file: path.to_path_buf(),
            line: i as u64 + 1,
            column: 1,
            message: "Match: kcert does not evaluate Match blocks and will not guess; set the SSH fields in the inventory, or point ssh.config_file at a config without Match".into(),
        });
    }
    let rules = ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS | ssh2_config::ParseRule::ALLOW_UNSUPPORTED_FIELDS;
    ssh2_config::SshConfig::default()
        .parse(&mut text.as_bytes(), rules)
        .map_err(|e| Error::input(path.display().to_string(), format!("cannot parse ssh config: {e}")))
}

/// `[user@]host[:port]`, with `host` resolved through the ssh config like any other alias.
pub fn parse_jump(spec: &str, default_user: &str, config: Option<&ssh2_config::SshConfig>) -> std::result::Result<JumpHost, String> {
    let (user, rest) = match spec.split_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, spec),
    };
    let (alias, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p.parse::<u16>().map_err(|_| format!("bad port in jump host {spec:?}"))?)),
        _ => (rest, None),
    };
    if alias.is_empty() {
        return Err(format!("jump host {spec:?} has no host"));
    }
    let params = config.map(|c| c.query(alias));
    Ok(JumpHost {
        host: params.as_ref().and_then(|p| p.host_name.clone()).unwrap_or_else(|| alias.to_string()),
        port: port.or_else(|| params.as_ref().and_then(|p| p.port)).unwrap_or(22),
        user: user.or_else(|| params.as_ref().and_then(|p| p.user.clone())).unwrap_or_else(|| default_user.to_string()),
    })
}
