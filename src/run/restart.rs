//! Owns: restarting a component the playbook's way (kubeadm static pods by moving the
//! manifest out and back) or the inventory's, and a component's own health command.
//! Must not: decide what restarts (the plan does) or when (the runner does).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::playbook::Playbook;
use crate::reach::inventory::ComponentOverride;
use crate::reach::transport::Transport;

pub fn restart_script(pb: &Playbook, overrides: &BTreeMap<String, ComponentOverride>, component: &str) -> Option<String> {
    let cmd = overrides.get(component).and_then(|o| o.restart.clone()).or_else(|| pb.component(component).and_then(|c| c.restart.clone()))?;
    if cmd != "static-pod" {
        return Some(cmd);
    }
    let manifest = pb.component(component)?.manifest.clone()?;
    // kubelet stops a static pod when its manifest leaves the directory and starts it again
    // when it returns; crictl tells when each happened.
    Some(format!(
        r#"set -u
m={m}; park=/etc/kubernetes/kcert-parked-$(basename "$m"); name={n}
mv "$m" "$park" || exit 1
i=0; while [ $i -lt 120 ] && [ -n "$(crictl ps -q --name "^$name\$" 2>/dev/null)" ]; do sleep 0.5; i=$((i+1)); done
mv "$park" "$m" || exit 1
i=0; while [ $i -lt 240 ] && [ -z "$(crictl ps -q --name "^$name\$" 2>/dev/null)" ]; do sleep 0.5; i=$((i+1)); done
[ -n "$(crictl ps -q --name "^$name\$" 2>/dev/null)" ] || {{ echo "$name did not come back after its manifest returned" >&2; exit 1; }}
"#,
        m = crate::text::shell_quote(&manifest),
        n = crate::text::shell_quote(component)
    ))
}

/// Restarts one component the playbook's way, or the inventory's override.
pub async fn restart_component(t: &dyn Transport, pb: &Playbook, overrides: &BTreeMap<String, ComponentOverride>, component: &str) -> std::result::Result<(), String> {
    let Some(script) = restart_script(pb, overrides, component) else {
        return Err(format!("no way to restart {component} is known (set components.{component}.restart in the inventory)"));
    };
    let out = t.run(&script).await.map_err(|e| e.message)?;
    if !out.success() {
        return Err(format!("restarting {component} failed (exit {:?}): {}", out.status, out.stderr_text()));
    }
    Ok(())
}

/// The inventory's `health` command of a component, retried until it passes or time runs out.
pub async fn health_command(t: &dyn Transport, cmd: &str, patience: Duration) -> std::result::Result<(), String> {
    let deadline = Instant::now() + patience;
    loop {
        let out = t.run(cmd).await.map_err(|e| e.message)?;
        if out.success() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let said = [out.stderr_text(), out.stdout_text().trim().to_string()].into_iter().find(|t| !t.is_empty()).unwrap_or_default();
            return Err(format!("`{cmd}` kept failing for {patience:?} (exit {:?}){}", out.status, if said.is_empty() { String::new() } else { format!(": {said}") }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
