//! Owns: reading a static pod manifest's container flags (`--flag=value`, `--flag value`).
//! Must not: do I/O (callers hand it the text) or edit a manifest (`edit::set_flag` does).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize)]
struct Pod {
    #[serde(default)]
    spec: Option<PodSpec>,
}
#[derive(Deserialize)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
}
#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
}

/// Manifests read so far (the planner compares each one's flags many times; up to 4 MiB).
static FLAGS: super::memo::Memo<Result<BTreeMap<String, String>, String>> = super::memo::Memo::new(4 << 20);

/// `--flag=value` and `--flag value` from every container's command and args; first wins.
pub fn manifest_flags(text: &str) -> Result<BTreeMap<String, String>, String> {
    FLAGS.get_or(text.as_bytes(), || flags_uncached(text))
}

fn flags_uncached(text: &str) -> Result<BTreeMap<String, String>, String> {
    let pod: Pod = super::yaml::from_str(text).map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    let mut flags = BTreeMap::new();
    for c in pod.spec.map(|s| s.containers).unwrap_or_default() {
        let items: Vec<&String> = c.command.iter().chain(c.args.iter()).collect();
        let mut i = 0;
        while i < items.len() {
            let item = items[i].as_str();
            if let Some(flag) = item.strip_prefix("--") {
                match flag.split_once('=') {
                    Some((k, v)) => {
                        flags.entry(format!("--{k}")).or_insert_with(|| v.to_string());
                    }
                    None if i + 1 < items.len() && !items[i + 1].starts_with('-') => {
                        flags.entry(item.to_string()).or_insert_with(|| items[i + 1].clone());
                        i += 1;
                    }
                    None => {
                        flags.entry(item.to_string()).or_insert_with(|| "true".into());
                    }
                }
            }
            i += 1;
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APISERVER: &str = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --tls-cert-file=/x/apiserver.crt\n    - --secure-port=8443\n    - --client-ca-file\n    - /x/ca.crt\n    - --allow-privileged=true\n    name: kube-apiserver\n";

    #[test]
    fn flags_come_from_both_spellings() {
        let f = manifest_flags(APISERVER).unwrap();
        assert_eq!(f["--tls-cert-file"], "/x/apiserver.crt");
        assert_eq!(f["--client-ca-file"], "/x/ca.crt");
        assert_eq!(f["--secure-port"], "8443");
        assert_eq!(f["--allow-privileged"], "true");
    }
}
