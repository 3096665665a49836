//! Owns: finding a node's PKI from the files its components actually read: manifest flags,
//! the kubelet config, kubeconfigs (embedded and referenced), the playbook's defaults and
//! scanned directories, read over a transport in a few batched round trips.
//! Must not: read private keys unless asked to (`Keys::Read`: a change, whose plan reads them
//! anyway; otherwise their existence is checked, their bytes fetched only when they share a
//! file with a certificate), or report; callers decide what to show.

use std::collections::{BTreeMap, BTreeSet};

use super::facts::{ComponentFlags, FoundError, FoundErrorKind, NodePki, Want, classify, component_keys, endpoint_targets, is_key_name, missing, resolve_refs, unreadable};
use super::units::{unit_candidates, unit_files, unit_keys};
use crate::playbook::{FileKind, Playbook};
use crate::reach::transport::survey::Alternative;
use crate::reach::transport::{FileData, NodeResult, Prefetched, Survey, Transport};

/// The script that names the node as it names itself: the kernel's nodename, which is what
/// `hostname` prints (proc(5), /proc/sys/kernel/hostname), read by the shell without a fork;
/// `hostname` itself where /proc is not there.
pub const HOSTNAME_SCRIPT: &str = "{ read -r h </proc/sys/kernel/hostname; } 2>/dev/null && printf '%s\\n' \"$h\" || hostname\n";

/// What a survey asks of the private keys at the playbooks' paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Whether they exist (a report).
    Exist,
    /// Their bytes (a change, whose plan reads them anyway: in the first round trip, not a
    /// second). They are held in memory like every key kcert reads.
    Read,
}

/// What `detect` and `discover` with any of these playbooks ask first (and the node's
/// hostname), asked in one round trip: the files every component reads its flags from, the
/// playbook's files, the units with their drop-ins, and the scanned directories (of the
/// playbook the node is detected as) with every file in them but keys. Only what these files
/// name beyond that is asked afterwards.
pub async fn surveyed<'a>(t: &'a dyn Transport, playbooks: &[&Playbook], extra_paths: &[String]) -> NodeResult<Prefetched<'a>> {
    surveyed_with(t, playbooks, extra_paths, None, Keys::Exist).await
}

/// As `surveyed`, asking what `also` asks in the same round trip, and the keys as `keys` says.
pub async fn surveyed_with<'a>(t: &'a dyn Transport, playbooks: &[&Playbook], extra_paths: &[String], also: Option<&Survey>, keys: Keys) -> NodeResult<Prefetched<'a>> {
    if t.offline() {
        return Ok(Prefetched::new(t, Default::default()));
    }
    let mut req = survey_request(playbooks, extra_paths, &t.user(), keys);
    if let Some(also) = also {
        req.merge(also);
    }
    Prefetched::survey(t, &req).await
}

/// The playbooks a node may be: the one the fleet names, or every embedded one (detected).
pub fn candidates<'p>(named: Option<&'p Playbook>, embedded: &'p [Playbook]) -> Vec<&'p Playbook> {
    match named {
        Some(p) => vec![p],
        None => embedded.iter().collect(),
    }
}

/// The questions `surveyed` asks of a node reached as `user`.
pub fn survey_request(playbooks: &[&Playbook], extra_paths: &[String], user: &str, keys: Keys) -> Survey {
    let home = if user == "root" { Some("/root".to_string()) } else { None };
    let mut req = Survey { skip: vec!["*.key".into(), "*-key.pem".into()], run: vec![HOSTNAME_SCRIPT.into()], ..Default::default() };
    if home.is_none()
        && playbooks.iter().any(|p| p.files.iter().any(|f| f.path.starts_with("~/")))
        && let Some(s) = home_script(user)
    {
        req.run.push(s);
    }
    req.list_read.extend(extra_paths.iter().cloned());
    req.list.push(super::units::ADMIN_DIR.to_string());
    for pb in playbooks {
        req.exists.extend(pb.detect.iter().chain(&pb.detect_unless).cloned());
        req.read.extend(pb.components.iter().filter_map(|c| c.source().map(str::to_string)));
        req.exists.extend(pb.presence_files().cloned());
        for c in pb.components.iter().filter_map(|c| c.unit.as_deref()) {
            let (units, dropins) = unit_candidates(c);
            req.read.extend(units);
            req.list_read.extend(dropins);
        }
        // A distribution's directories are read only where it is the one detected: a kubeadm
        // node's /var/lib/kubelet (pods' volumes) is not the hard way's to read.
        match playbooks {
            [_] => req.list_read.extend(pb.scan.iter().cloned()),
            _ => req.alternatives.push(Alternative { when: pb.detect.clone(), unless: pb.detect_unless.clone(), list_read: pb.scan.clone() }),
        }
        for (f, path) in file_paths(pb, home.as_deref()) {
            if f.kind.holds_certs() || keys == Keys::Read {
                req.read.push(path)
            } else {
                req.exists.push(path)
            }
        }
    }
    req
}

/// The first embedded playbook one of whose `detect` paths exists on the node and none of
/// whose `detect_unless` paths does, if any.
pub async fn detect(t: &dyn Transport, playbooks: &[Playbook]) -> NodeResult<Option<String>> {
    let paths: Vec<String> = playbooks.iter().flat_map(|p| p.detect.iter().chain(&p.detect_unless).cloned()).collect();
    let found = t.exists(&paths).await?;
    let mut i = 0;
    for p in playbooks {
        let (n, m) = (p.detect.len(), p.detect_unless.len());
        if found[i..i + n].iter().any(|b| *b) && !found[i + n..i + n + m].iter().any(|b| *b) {
            return Ok(Some(p.name.clone()));
        }
        i += n + m;
    }
    Ok(None)
}

/// Every component of the playbook that runs from a systemd unit, as the node has it: its
/// flags and the files they were read from (units, drop-ins, environment and config files),
/// read in a few rounds (each round's files name the next's). A unit absent from the node is
/// a component that does not run there.
async fn read_units(t: &dyn Transport, pb: &Playbook, pki: &mut NodePki) -> NodeResult<Vec<(String, ComponentFlags)>> {
    let comps: Vec<&crate::playbook::Component> = pb.components.iter().filter(|c| c.unit.is_some()).collect();
    if comps.is_empty() {
        return Ok(Vec::new());
    }
    let candidates: Vec<(Vec<String>, Vec<String>)> = comps.iter().map(|c| unit_candidates(c.unit.as_deref().unwrap_or_default())).collect();
    let unit_paths: Vec<String> = candidates.iter().flat_map(|(u, _)| u.clone()).collect();
    let dropin_dirs: Vec<String> = candidates.iter().flat_map(|(_, d)| d.clone()).collect();
    // The drop-ins, and the links `systemctl enable` made (a package's unit runs only enabled).
    let listing: Vec<String> = dropin_dirs.iter().cloned().chain([super::units::ADMIN_DIR.to_string()]).collect();
    let (data, listed) = tokio::join!(t.read_files(&unit_paths), t.list_files(&listing));
    let mut have: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut tried: BTreeSet<String> = unit_paths.iter().cloned().collect();
    for (p, d) in unit_paths.iter().zip(data?) {
        match d {
            FileData::Found(b) => {
                have.insert(p.clone(), b);
            }
            // A unit linked to /dev/null is masked: seen, and empty.
            FileData::NotAFile => {
                have.insert(p.clone(), Vec::new());
            }
            _ => {}
        }
    }
    let listed = listed?;
    let mut units: Vec<Vec<String>> = Vec::new();
    for (u, d) in &candidates {
        units.push(unit_files(u, d, &have, &listed));
    }
    // Drop-ins, then environment files, then config files: at most three more rounds.
    for _ in 0..3 {
        let mut want: Vec<String> = units.iter().flatten().filter(|p| !tried.contains(*p)).cloned().collect();
        for (c, u) in comps.iter().zip(&units) {
            if u.iter().all(|p| tried.contains(p)) {
                let read = unit_keys(c, u, &|p: &str| have.get(p).cloned());
                want.extend(read.wanted.into_iter().map(|(p, _)| p).filter(|p| !tried.contains(p)));
            }
        }
        want.sort();
        want.dedup();
        if want.is_empty() {
            break;
        }
        for (p, d) in want.iter().zip(t.read_files(&want).await?) {
            tried.insert(p.clone());
            match d {
                FileData::Found(b) => {
                    have.insert(p.clone(), b);
                }
                FileData::Unreadable(e) => pki.errors.push(unreadable(p, e)),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for (c, u) in comps.iter().zip(units) {
        if u.is_empty() {
            continue;
        }
        let read = unit_keys(c, &u, &|p: &str| have.get(p).cloned());
        for (p, required) in read.wanted {
            if required {
                pki.errors.push(FoundError { kind: FoundErrorKind::Missing, path: Some(p), error: format!("missing (named by {})", c.origin()) });
            }
        }
        if let Some(e) = read.error {
            pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: u.first().cloned(), error: format!("cannot parse {}: {e}", c.name) });
            continue;
        }
        out.push((c.name.clone(), read.flags));
    }
    Ok(out)
}

pub async fn discover(t: &dyn Transport, playbook: Option<&Playbook>, extra_paths: &[String]) -> NodeResult<NodePki> {
    let mut wants: BTreeMap<String, Want> = BTreeMap::new();
    let add = |wants: &mut BTreeMap<String, Want>, path: String, want: Want| {
        let e = wants.entry(path).or_insert(Want { kind: None, name: None, origin: None, required: false });
        e.kind = e.kind.or(want.kind);
        e.name = e.name.clone().or(want.name);
        e.origin = e.origin.clone().or(want.origin);
        e.required |= want.required;
    };

    // Round 1: the components' own config, every default path, and the scanned directories.
    let sources: Vec<String> = playbook.map(|p| p.components.iter().filter_map(|c| c.source().map(str::to_string)).collect()).unwrap_or_default();
    let mut scan: Vec<String> = playbook.map(|p| p.scan.clone()).unwrap_or_default();
    scan.extend(extra_paths.iter().cloned());
    let homes = playbook.is_some_and(|p| p.files.iter().any(|f| f.path.starts_with("~/")));
    let presence: Vec<String> = playbook.map(|p| p.presence_files().cloned().collect()).unwrap_or_default();
    let (source_data, listed, home, present) =
        tokio::join!(t.read_files(&sources), t.list_files(&scan), async { if homes { login_home(t).await } else { None } }, t.exists(&presence));
    let source_data = source_data?;
    let present: Vec<&String> = presence.iter().zip(present?).filter(|(_, ok)| *ok).map(|(p, _)| p).collect();
    let mut listed = listed?;
    let source_text: BTreeMap<String, Vec<u8>> = sources
        .iter()
        .zip(source_data)
        .filter_map(|(p, d)| match d {
            FileData::Found(b) => Some((p.clone(), b)),
            _ => None,
        })
        .collect();

    let mut pki = NodePki::default();
    let from_units = match playbook {
        Some(pb) => read_units(t, pb, &mut pki).await?,
        None => Vec::new(),
    };
    let mut cert_dirs: Vec<String> = Vec::new();
    if let Some(pb) = playbook {
        for (f, path) in file_paths(pb, home.as_deref()) {
            add(&mut wants, path, Want { kind: Some(f.kind), name: Some(f.name.clone()), origin: None, required: false });
        }
        let mut read: Vec<(&crate::playbook::Component, ComponentFlags)> = Vec::new();
        for c in &pb.components {
            if let Some((_, f)) = from_units.iter().find(|(n, _)| *n == c.name) {
                read.push((c, f.clone()));
                continue;
            }
            if let Some(p) = &c.present {
                if present.contains(&p) {
                    read.push((c, ComponentFlags { keys: BTreeMap::new(), sites: BTreeMap::new(), units: Vec::new(), sources: Vec::new() }));
                }
                continue;
            }
            let Some(src) = c.source() else { continue };
            let Some(bytes) = source_text.get(src) else { continue };
            match component_keys(c, bytes) {
                Ok(keys) => read.push((c, ComponentFlags { keys, sites: BTreeMap::new(), units: Vec::new(), sources: vec![src.to_string()] })),
                Err(e) => pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(src.to_string()), error: format!("cannot parse {}: {e}", c.name) }),
            }
        }
        for (c, flags) in read {
            let src = c.origin();
            let src = src.as_str();
            let keys = flags.keys.clone();
            // A manifest counts among the PKI files as before; units and their environment
            // files are where flags come from, not PKI.
            if c.unit.is_none() {
                pki.files.extend(flags.sources.iter().cloned());
            }
            for (k, site) in &flags.sites {
                pki.sites.insert((c.name.clone(), k.clone()), site.clone());
            }
            pki.sources.insert(c.name.clone(), flags.sources.clone());
            pki.units.insert(c.name.clone(), flags.units.clone());
            for (path, r, required) in resolve_refs(pb, c, src, &keys) {
                let file = pb.file(&r.file).expect("playbook validated");
                pki.refs.entry((c.name.clone(), r.key.clone())).or_insert_with(|| path.clone());
                pki.named.entry(file.name.clone()).or_insert_with(|| path.clone());
                add(&mut wants, path, Want {
                    kind: Some(r.kind.unwrap_or(file.kind)),
                    name: Some(file.name.clone()),
                    origin: Some(format!("{} in {}", r.key, flags.sites.get(&r.key).map(|s| s.file()).unwrap_or(src))),
                    required,
                });
            }
            pki.endpoints.extend(endpoint_targets(pb, c, src, &keys));
            cert_dirs.extend(c.cert_dirs.iter().filter_map(|k| keys.get(k)).filter(|d| d.starts_with('/') && !scan.iter().any(|s| d.starts_with(s.as_str()))).cloned());
            pki.components.insert(c.name.clone(), keys);
        }
    }
    // The directories components keep certificates in, where the scan does not reach already.
    if !cert_dirs.is_empty() {
        cert_dirs.sort();
        cert_dirs.dedup();
        listed.extend(t.list_files(&cert_dirs).await?);
    }
    for path in listed {
        add(&mut wants, path, Want { kind: None, name: None, origin: None, required: false });
    }

    // Round 2: every file that may hold certificates; keys only need to exist.
    let (to_read, key_paths): (Vec<String>, Vec<String>) = {
        let mut read = Vec::new();
        let mut keys = Vec::new();
        for (p, w) in &wants {
            match w.kind {
                Some(k) if k.holds_certs() => read.push(p.clone()),
                Some(_) => keys.push(p.clone()),
                None if is_key_name(p) => keys.push(p.clone()),
                None => read.push(p.clone()),
            }
        }
        (read, keys)
    };
    let (data, present) = tokio::join!(t.read_files(&to_read), t.exists(&key_paths));
    let data = data?;
    for (p, ok) in key_paths.iter().zip(present?) {
        let w = &wants[p];
        if ok {
            pki.files.insert(p.clone());
        } else if w.required {
            pki.errors.push(missing(p, w));
        }
    }

    let mut kubeconfig_refs: Vec<(String, Want)> = Vec::new();
    for (path, d) in to_read.iter().zip(data) {
        let w = &wants[path];
        match d {
            FileData::Found(bytes) => {
                let refs = classify(path, &bytes, w, &mut pki);
                kubeconfig_refs.extend(refs);
            }
            FileData::Missing if w.required => pki.errors.push(missing(path, w)),
            FileData::Missing => {}
            FileData::NotAFile if w.required => pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(path.clone()), error: "not a regular file".into() }),
            FileData::NotAFile => {}
            FileData::Unreadable(e) => pki.errors.push(unreadable(path, e)),
            FileData::TooLarge(n) if w.kind.is_some() => {
                pki.errors.push(FoundError { kind: FoundErrorKind::Invalid, path: Some(path.clone()), error: format!("{n} bytes: too large to be a certificate or kubeconfig") })
            }
            FileData::TooLarge(_) => {}
        }
    }

    // Round 3: files that kubeconfigs point at and that were not read yet.
    let mut extra_read: Vec<(String, Want)> = Vec::new();
    let mut extra_keys: Vec<(String, Want)> = Vec::new();
    let mut seen: BTreeSet<String> = to_read.iter().cloned().collect();
    for (p, w) in kubeconfig_refs {
        if w.kind == Some(FileKind::Key) {
            if !pki.files.contains(&p) && seen.insert(p.clone()) {
                extra_keys.push((p, w));
            }
        } else if seen.insert(p.clone()) {
            extra_read.push((p, w));
        }
    }
    let read_paths: Vec<String> = extra_read.iter().map(|(p, _)| p.clone()).collect();
    let key_paths: Vec<String> = extra_keys.iter().map(|(p, _)| p.clone()).collect();
    let (data, present) = tokio::join!(t.read_files(&read_paths), t.exists(&key_paths));
    for ((p, w), d) in extra_read.iter().zip(data?) {
        match d {
            FileData::Found(bytes) => {
                classify(p, &bytes, w, &mut pki);
            }
            FileData::Unreadable(e) => pki.errors.push(unreadable(p, e)),
            _ => pki.errors.push(missing(p, w)),
        }
    }
    for ((p, w), ok) in extra_keys.iter().zip(present?) {
        if ok {
            pki.files.insert(p.clone());
        } else {
            pki.errors.push(missing(p, w));
        }
    }
    if let Some(pb) = playbook {
        for (f, path) in file_paths(pb, home.as_deref()) {
            if !pki.named.contains_key(&f.name) && pki.files.contains(&path) {
                pki.named.insert(f.name.clone(), path);
            }
        }
    }
    Ok(pki)
}

/// Each playbook file's default path on this node: `~/` in the login user's home, left out
/// where there is none or where it is another file's path already (root's own home).
fn file_paths<'p>(pb: &'p Playbook, home: Option<&str>) -> Vec<(&'p crate::playbook::KnownFile, String)> {
    pb.files
        .iter()
        .filter_map(|f| {
            let path = super::facts::expand_home(&f.path, home)?;
            let elsewhere = f.path.starts_with("~/") && pb.files.iter().any(|o| o.path == path);
            (!elsewhere).then_some((f, path))
        })
        .collect()
}

/// The login user's home directory (`~/.kube/config` is read there): root's is /root; none
/// for a `--root` tree. A user whose home cannot be told has none (nothing is read there).
async fn login_home(t: &dyn Transport) -> Option<String> {
    if t.offline() {
        return None;
    }
    let user = t.user();
    if user == "root" {
        return Some("/root".into());
    }
    let out = t.run(&home_script(&user)?).await.ok()?;
    let home = out.stdout_text().lines().next()?.split(':').nth(5)?.to_string();
    (out.success() && home.starts_with('/') && home != "/").then_some(home)
}

/// The script that prints a login user's entry in the user database (its sixth field is the
/// home directory, passwd(5)); none for a name kcert would not put in a script.
fn home_script(user: &str) -> Option<String> {
    (!user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))).then(|| format!("getent passwd {user}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_users_kubeconfig_is_read_in_their_home_once() {
        let pb = crate::playbook::builtin("hardway").unwrap();
        let path = |home: Option<&str>| file_paths(&pb, home).into_iter().find(|(f, _)| f.name == "user.kubeconfig").map(|(_, p)| p);
        assert_eq!(path(Some("/home/ops")).as_deref(), Some("/home/ops/.kube/config"));
        assert_eq!(path(Some("/root")), None, "root's is the playbook's own /root/.kube/config already");
        assert_eq!(path(None), None, "no login user (a --root tree): nothing is read for it");
        assert!(file_paths(&pb, None).iter().any(|(f, p)| f.name == "admin" && p == "/root/.kube/config"));
    }
}
