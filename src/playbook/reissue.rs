//! Owns: a playbook's `reissue` section: how a distribution whose own tool re-issues its
//! leaves (k3s) renews them, as data: the units stopped and started around the tool, the
//! tool's services and the files each re-issues, the stale stores removed with them; and how
//! its CAs are rotated through the tool (`rotate_ca`).
//! Must not: run anything (the runner does) or choose nodes and files (the planner does).

use serde::Deserialize;

/// `reissue:` in a playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reissue {
    /// The tool, run on a node with its unit stopped (`k3s certificate rotate`).
    pub command: String,
    /// How the tool is told a service (`--service`); each chosen service a node has files of
    /// is passed by name.
    pub service_flag: String,
    /// The tool's services in its order, each with the files (`files` names) it re-issues.
    pub services: Vec<Service>,
    /// A node stops and starts the first unit whose `when_under` it matches.
    pub units: Vec<Unit>,
    /// The kubeconfig (a `files` entry) the API steps run kubectl with, on a node that has it.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// Steps against the cluster's API, run before the first node stops ({kubeconfig}).
    #[serde(default)]
    pub api: Vec<Api>,
    /// How the tool rotates the CAs (none: `rotate-ca` refuses).
    #[serde(default)]
    pub rotate_ca: Option<RotateCa>,
}

/// `reissue.rotate_ca`: a CA rotation the distribution's datastore carries (k3s's
/// `certificate rotate-ca`): kcert makes the cross-signed set, stages it on one server, hands
/// it to the tool there, and restarts every node onto it; k3s re-issues the leaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateCa {
    /// Run once, on one running server, with `path_flag DIR`.
    pub command: String,
    pub path_flag: String,
    /// kcert stages each set in a folder of its own below this one, its `tls/` laid out like
    /// the server's (what the tool reads).
    pub staging: String,
    /// The new CAs' names: `<product>-<type>-root@<time>`, `<product>-<type>-ca@<time>`.
    pub product: String,
    /// The CA types, each its certificate's `files` name; the staged file is `tls/<type>-ca.crt`.
    pub cas: Vec<CaType>,
    /// The service-account keys (a `files` name): staged as a new key with the old after it.
    #[serde(default)]
    pub service_key: Option<String>,
    /// The CA type whose bundle's hash join tokens pin (`K10<hash>::`).
    pub token_ca: String,
    /// Files a node's join token may be in (the units' environment, config.yaml): every
    /// `K10<old hash>::` in them becomes `K10<new hash>::` before the node restarts.
    #[serde(default)]
    pub tokens: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaType {
    #[serde(rename = "type")]
    pub ty: String,
    pub cert: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub name: String,
    pub script: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// The files it re-issues at the unit's next start.
    pub files: Vec<String>,
    /// Files kcert removes (after backing them up) with the unit stopped, because the unit
    /// would start again from them and keep serving what they hold (k3s's dynamic-cert.json).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Paths the tool may create for it (k3s's dynamic listener trigger), removed by a rollback.
    #[serde(default)]
    pub creates: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub name: String,
    /// Picks this unit for a node that has a file under one of these paths (k3s's server data
    /// dir: a server, as `k3s certificate rotate` tells); none: any node.
    #[serde(default)]
    pub when_under: Vec<String>,
    pub stop: String,
    pub start: String,
    /// The components that stop and start with it.
    pub components: Vec<String>,
    /// Files (`files` names) it makes anew at every start, whatever else changed (an agent's
    /// kubelet certificates, asked of a server each time).
    #[serde(default)]
    pub remade: Vec<String>,
}

impl Reissue {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// What is wrong with the section, given the playbook's file and component names.
    pub fn problems(&self, has_file: &dyn Fn(&str) -> bool, has_component: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.services {
            for f in s.files.iter().chain(&s.remove) {
                if !has_file(f) {
                    out.push(format!("reissue.services.{}: unknown file {f:?}", s.name));
                }
            }
            if let Some(p) = s.creates.iter().find(|p| !p.starts_with('/')) {
                out.push(format!("reissue.services.{}: creates {p:?}, not an absolute path", s.name));
            }
            for f in &s.remove {
                if !s.files.contains(f) {
                    out.push(format!("reissue.services.{}: {f:?} is removed but not among the files it re-issues", s.name));
                }
            }
        }
        if self.units.is_empty() {
            out.push("reissue.units: at least one unit is needed".into());
        }
        for u in &self.units {
            if let Some(p) = u.when_under.iter().find(|p| !p.starts_with('/')) {
                out.push(format!("reissue.units.{}: when_under {p:?} is not an absolute path", u.name));
            }
            for c in &u.components {
                if !has_component(c) {
                    out.push(format!("reissue.units.{}: unknown component {c:?}", u.name));
                }
            }
            for f in u.remade.iter().filter(|f| !has_file(f)) {
                out.push(format!("reissue.units.{}: remade: unknown file {f:?}", u.name));
            }
        }
        if let Some(k) = &self.kubeconfig
            && !has_file(k)
        {
            out.push(format!("reissue.kubeconfig: unknown file {k:?}"));
        }
        if let Some(r) = &self.rotate_ca {
            for c in &r.cas {
                if !has_file(&c.cert) {
                    out.push(format!("reissue.rotate_ca.cas.{}: unknown file {:?}", c.ty, c.cert));
                }
                if c.ty.is_empty() || c.ty.starts_with('/') || c.ty.contains("..") {
                    out.push(format!("reissue.rotate_ca.cas: {:?} is not a CA type (a path below tls/, such as etcd/peer)", c.ty));
                }
            }
            if !r.cas.iter().any(|c| c.ty == r.token_ca) {
                out.push(format!("reissue.rotate_ca.token_ca: {:?} is not one of its cas", r.token_ca));
            }
            if let Some(k) = r.service_key.as_ref().filter(|k| !has_file(k)) {
                out.push(format!("reissue.rotate_ca.service_key: unknown file {k:?}"));
            }
            if let Some(p) = std::iter::once(&r.staging).chain(&r.tokens).find(|p| !p.starts_with('/')) {
                out.push(format!("reissue.rotate_ca: {p:?} is not an absolute path"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::playbook::{FileKind, builtin, parse};

    fn k3s_text() -> &'static str {
        super::super::EMBEDDED.iter().find(|(n, _)| *n == "k3s").unwrap().1
    }

    #[test]
    fn k3s_s_tool_re_issues_every_leaf_it_has_and_names_only_what_the_playbook_knows() {
        let pb = builtin("k3s").unwrap();
        let r = pb.reissue.as_ref().expect("k3s renews by its own tool");
        assert_eq!(r.services.len(), 12, "pkg/util/services: All");
        assert_eq!(r.service("k3s-server").unwrap().remove, ["dynamic-cert"]);
        for f in pb.files.iter().filter(|f| f.kind == FileKind::Cert && f.signer.is_some()) {
            assert!(r.services.iter().any(|s| s.files.contains(&f.name)), "{}: no service re-issues it", f.name);
        }
        for (from, to, said) in [
            ("files: [dynamic-cert], remove: [dynamic-cert]", "files: [dynamic-cert], remove: [dynamic-certt]", "unknown file \"dynamic-certt\""),
            ("components: [kubelet, kube-proxy]", "components: [kubelet, kube-proxyy]", "unknown component \"kube-proxyy\""),
            ("when_under: [/var/lib/rancher/k3s/server/,", "when_under: [var/lib/rancher/k3s/server/,", "not an absolute path"),
            ("remove: [dynamic-cert]", "remove: [client-admin]", "removed but not among the files"),
            (
                "creates: [/var/lib/rancher/k3s/server/tls/dynamic-cert-regenerate]",
                "creates: [dynamic-cert-regenerate]",
                "creates \"dynamic-cert-regenerate\", not an absolute path",
            ),
        ] {
            let text = k3s_text().replacen(from, to, 1);
            assert_ne!(text, k3s_text(), "{from}");
            let err = parse(&text, "k3s-test", None).unwrap_err().to_string();
            assert!(err.contains(said), "{err}");
        }
    }
}
