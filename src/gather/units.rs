//! Owns: reading a node's systemd units as systemd would load them (which unit file, its
//! drop-ins in order, the environment and config files they name) into a component's keys.
//! Must not: do I/O (`discover` reads the files) or parse a unit's text (`pki::unit` does).

use std::collections::BTreeMap;

use super::facts::{ComponentFlags, Site, config_fields};
use crate::pki::unit;
use crate::playbook::Component;

/// What reading a unit gave, and the files it needs that `get` did not have: (path,
/// required) — an optional `-` environment file is not required.
pub struct UnitRead {
    pub flags: ComponentFlags,
    pub wanted: Vec<(String, bool)>,
    pub error: Option<String>,
}

/// Where systemd looks for a unit, most important first (systemd.unit(5) "Unit File Load Path").
const UNIT_DIRS: &[&str] = &["/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// Where the administrator's units and the links `systemctl enable` makes live.
pub const ADMIN_DIR: &str = "/etc/systemd/system";

/// The unit files and drop-in directories of `unit` to look at.
pub fn unit_candidates(unit: &str) -> (Vec<String>, Vec<String>) {
    (UNIT_DIRS.iter().map(|d| format!("{d}/{unit}.service")).collect(), UNIT_DIRS.iter().map(|d| format!("{d}/{unit}.service.d")).collect())
}

/// The unit file systemd loads (the first found) and its drop-ins: every `*.conf` of the
/// drop-in directories, a name in an earlier directory hiding the same name in a later one,
/// applied in the order of their names. None when the component does not run from it: a
/// unit masked (empty, or linked to /dev/null, in an earlier directory), or a package's unit
/// (`/usr/lib`, `/lib`) nobody enabled (no link to it in a `*.wants` or `*.requires`
/// directory of /etc/systemd/system: the etcd package installed on a worker that runs none).
/// `listed` holds the files under the drop-in directories and under /etc/systemd/system.
pub fn unit_files(units: &[String], dropin_dirs: &[String], have: &BTreeMap<String, Vec<u8>>, listed: &[String]) -> Vec<String> {
    let Some(main) = units.iter().find(|p| have.contains_key(*p)) else { return Vec::new() };
    if have[main].iter().all(|b| b.is_ascii_whitespace()) {
        return Vec::new();
    }
    let name = main.rsplit('/').next().unwrap_or(main);
    let vendor = !main.starts_with(ADMIN_DIR) && !main.starts_with("/run/");
    let enabled = || {
        listed.iter().any(|f| {
            f.strip_prefix(ADMIN_DIR).and_then(|r| r.strip_prefix('/')).and_then(|r| r.split_once('/')).is_some_and(|(dir, file)| (dir.ends_with(".wants") || dir.ends_with(".requires")) && file == name)
        })
    };
    if vendor && !enabled() {
        return Vec::new();
    }
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for dir in dropin_dirs.iter().rev() {
        for f in listed.iter().filter(|f| f.strip_prefix(dir.as_str()).and_then(|r| r.strip_prefix('/')).is_some_and(|r| !r.contains('/') && r.ends_with(".conf"))) {
            by_name.insert(f.rsplit('/').next().unwrap_or(f).to_string(), f.clone());
        }
    }
    std::iter::once(main.clone()).chain(by_name.into_values()).collect()
}

/// A unit component's keys from its files (`get` hands their bytes): the command line's
/// flags, etcd's own settings when the playbook says so, and the fields of the config file
/// `config_flag` names, a flag in `flag_fields` winning over its field.
pub fn unit_keys(c: &Component, units: &[String], get: &dyn Fn(&str) -> Option<Vec<u8>>) -> UnitRead {
    let mut wanted = Vec::new();
    let text = |p: &str| get(p).map(|b| String::from_utf8_lossy(&b).into_owned());
    let texts: Vec<(String, String)> = units.iter().filter_map(|p| text(p).map(|t| (p.clone(), t))).collect();
    let pairs: Vec<(&str, &str)> = texts.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let s = unit::settings(&pairs);
    let mut sources: Vec<String> = units.to_vec();
    let mut envs: Vec<(String, String)> = Vec::new();
    for (p, optional) in &s.env_files {
        match text(p) {
            Some(t) => {
                sources.push(p.clone());
                envs.push((p.clone(), t));
            }
            None => wanted.push((p.clone(), !optional)),
        }
    }
    let mut flags = unit::flags(&s, &envs);
    let mut error = None;
    if c.etcd_settings {
        unit::etcd_env(&s, &envs, &mut flags);
        if let Some(cfg) = flags.get("--config-file").map(|f| f.value.clone()) {
            match text(&cfg) {
                Some(t) => {
                    sources.push(cfg.clone());
                    match unit::etcd_config(&t, &cfg) {
                        Ok(f) => flags = f,
                        Err(e) => error = Some(format!("{cfg}: {e}")),
                    }
                }
                None => wanted.push((cfg, true)),
            }
        }
    }
    let mut keys: BTreeMap<String, String> = flags.iter().map(|(k, f)| (k.clone(), f.value.clone())).collect();
    let mut sites: BTreeMap<String, Site> = flags.into_iter().map(|(k, f)| (k, f.site)).collect();
    if let Some(cfg) = c.config_flag.as_ref().and_then(|k| keys.get(k)).cloned() {
        match text(&cfg) {
            Some(t) => {
                sources.push(cfg.clone());
                match config_fields(&t, c, &cfg) {
                    Ok(fields) => {
                        for (k, v) in fields {
                            keys.entry(k).or_insert(v);
                        }
                    }
                    Err(e) => error = Some(format!("{cfg}: {e}")),
                }
            }
            None => wanted.push((cfg, true)),
        }
    }
    for (flag, field) in &c.flag_fields {
        if let Some(v) = keys.get(flag).cloned() {
            keys.insert(field.clone(), v);
            if let Some(site) = sites.get(flag).cloned() {
                sites.insert(field.clone(), site);
            }
        }
    }
    sources.dedup();
    UnitRead { flags: ComponentFlags { keys, sites, units: units.to_vec(), sources }, wanted, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook;

    #[test]
    fn the_unit_systemd_loads_and_its_drop_ins_in_name_order_make_the_kubelet_keys() {
        let (units, dirs) = unit_candidates("kubelet");
        let mut have: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        have.insert("/lib/systemd/system/kubelet.service".into(), b"[Service]\nExecStart=/bin/kubelet --config=/old.yaml\n".to_vec());
        have.insert("/etc/systemd/system/kubelet.service".into(), b"[Service]\nExecStart=/bin/kubelet --config=/var/lib/kubelet/c.yaml --kubeconfig=/k --tls-cert-file=/flag.pem\n".to_vec());
        let listed = vec![
            "/usr/lib/systemd/system/kubelet.service.d/20-b.conf".to_string(),
            "/etc/systemd/system/kubelet.service.d/20-b.conf".to_string(),
            "/usr/lib/systemd/system/kubelet.service.d/10-a.conf".to_string(),
            "/etc/systemd/system/kubelet.service.d/notes.txt".to_string(),
        ];
        // A package's unit, not enabled, does not run; enabled, it does.
        have.insert("/lib/systemd/system/etcd.service".into(), b"[Service]\nExecStart=/usr/bin/etcd\n".to_vec());
        let (etcd_units, etcd_dirs) = unit_candidates("etcd");
        assert!(unit_files(&etcd_units, &etcd_dirs, &have, &listed).is_empty(), "installed, not enabled");
        let enabled = [listed.clone(), vec!["/etc/systemd/system/multi-user.target.wants/etcd.service".to_string()]].concat();
        assert_eq!(unit_files(&etcd_units, &etcd_dirs, &have, &enabled), ["/lib/systemd/system/etcd.service"]);
        let files = unit_files(&units, &dirs, &have, &listed);
        assert_eq!(files, ["/etc/systemd/system/kubelet.service", "/usr/lib/systemd/system/kubelet.service.d/10-a.conf", "/etc/systemd/system/kubelet.service.d/20-b.conf"]);
        // Masked in /etc (linked to /dev/null: read as empty): the /lib unit does not run either.
        let mut masked = have.clone();
        masked.insert("/etc/systemd/system/kubelet.service".into(), Vec::new());
        assert!(unit_files(&units, &dirs, &masked, &listed).is_empty());
        have.insert("/var/lib/kubelet/c.yaml".into(), b"authentication:\n  x509:\n    clientCAFile: ca.pem\ntlsCertFile: /config.pem\nrotateCertificates: true\n".to_vec());
        let pb = playbook::builtin("hardway").unwrap();
        let c = pb.component("kubelet").unwrap();
        let read = unit_keys(c, &files, &|p: &str| have.get(p).cloned());
        assert!(read.wanted.is_empty() && read.error.is_none());
        let k = &read.flags.keys;
        assert_eq!(k["--kubeconfig"], "/k");
        assert_eq!(k["authentication.x509.clientCAFile"], "/var/lib/kubelet/ca.pem", "relative to the config's directory");
        assert_eq!(k["tlsCertFile"], "/flag.pem", "the flag wins over the config field");
        assert_eq!(k["rotateCertificates"], "true");
        assert!(read.flags.sources.contains(&"/var/lib/kubelet/c.yaml".to_string()));
        // A required environment file that is not there is asked for, then said missing.
        have.insert("/etc/systemd/system/kubelet.service".into(), b"[Service]\nEnvironmentFile=/etc/k.env\nEnvironmentFile=-/etc/opt.env\nExecStart=/bin/kubelet $OPTS\n".to_vec());
        let read = unit_keys(c, &files, &|p: &str| have.get(p).cloned());
        assert_eq!(read.wanted, vec![("/etc/k.env".to_string(), true), ("/etc/opt.env".to_string(), false)]);
    }
}
