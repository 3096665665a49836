//! Owns: a playbook's `reissue` section: how a distribution whose own tool re-issues its
//! leaves (k3s) renews them, as data: the units stopped and started around the tool, the
//! tool's services and the files each re-issues, the stale stores removed with them.
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
        }
        if let Some(k) = &self.kubeconfig
            && !has_file(k)
        {
            out.push(format!("reissue.kubeconfig: unknown file {k:?}"));
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
