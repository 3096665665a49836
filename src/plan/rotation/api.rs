//! Owns: a rotation's steps against the cluster's API (S3 and the end of S5), from the
//! playbook's scripts with their placeholders filled: which kubeconfig, which CA bundle.
//! Must not: run anything (the runner does), or carry a private key.

use super::planner::Planner;
use crate::playbook::ApiWhen;
use crate::plan::schema::{ApiCall, StepPlan};

/// Substitutes an API step's placeholders.
pub fn render_script(script: &str, kubeconfig: &str, bundle_pem: &str, new_pem: &str, old_pem: &str) -> String {
    use base64::Engine;
    let marker = |pem: &str| pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 40).nth(1).unwrap_or("").to_string();
    script
        .replace("{kubeconfig}", &crate::text::shell_quote(kubeconfig))
        .replace("{ca_b64}", &base64::engine::general_purpose::STANDARD.encode(bundle_pem))
        .replace("{new_marker}", &marker(new_pem))
        .replace("{old_marker}", &marker(old_pem))
}

impl Planner<'_> {
    /// The playbook's API steps of one moment, run on the first control-plane node; skipped
    /// (and said why) offline, without an API server, or when the CA they carry is not rotated.
    pub(super) fn api_calls(&self, when: ApiWhen) -> Vec<StepPlan> {
        let pb = self.input.playbook;
        let Some(rot) = &pb.rotation else {
            return Vec::new();
        };
        let api_ca = rot.cas.get(&rot.api_ca);
        let Some(cluster) = self.rots.iter().find(|r| api_ca == Some(&r.old.name)).or(self.rots.first()) else {
            return Vec::new();
        };
        let api_node = self.input.nodes.iter().find(|n| n.control_plane).map(|n| n.name.clone()).unwrap_or_default();
        let kc = rot.kubeconfig.as_ref().and_then(|k| pb.file(k)).map(|f| f.path.clone()).unwrap_or_default();
        let bundle = match when {
            ApiWhen::Trust => format!("{}{}", cluster.old_pem, cluster.new_pem),
            ApiWhen::Prune => cluster.new_pem.clone(),
        };
        let skipped = if self.input.opts.offline {
            Some("offline (--root): nothing is run".to_string())
        } else if !self.input.opts.kubernetes_api {
            Some("kubernetes_api: false in the inventory (no API server reachable)".to_string())
        } else if !api_ca.is_some_and(|c| self.rots.iter().any(|r| &r.old.name == c)) {
            Some(format!("the {} CA is not rotated (--ca): API objects carry only it", rot.api_ca))
        } else {
            None
        };
        rot.api
            .iter()
            .filter(|a| a.when == when)
            .map(|a| StepPlan::Api(ApiCall { name: a.name.clone(), node: api_node.clone(), script: render_script(&a.script, &kc, &bundle, &cluster.new_pem, &cluster.old_pem), skipped: skipped.clone(), undo: None }))
            .collect()
    }
}
