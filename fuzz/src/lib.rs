//! The parser entry points each fuzz target drives, one function a target. `tests/fuzz_corpus.rs`
//! includes this file and replays every corpus input through the same functions without the
//! fuzzer, so `cargo test` keeps every input that once crashed a parser from crashing it again.
//! Each function takes any bytes and must return, whatever the parsers answer (Ok or Err),
//! without panicking, in bounded time and memory.

use std::path::Path;

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target: its name (the fuzz target's, and its corpus directory's under `fuzz/corpus/`)
/// and the function that feeds it one input.
pub const TARGETS: &[(&str, Target)] = &[
    ("inventory", inventory),
    ("ssh_config", ssh_config),
    ("known_hosts", known_hosts),
    ("pem", pem),
    ("kubeconfig", kubeconfig),
    ("manifest", manifest),
    ("unit", unit),
    ("playbook", playbook),
    ("plan", plan),
    ("journal", journal),
];

/// An inventory, as `kcert -i FILE` reads it. Relative paths in it point into a directory
/// that does not exist, so the input alone decides what is read.
pub fn inventory(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = kcert::reach::inventory::LoadOptions::default();
    // Every format `-i` reads: kcert's YAML, Ansible's INI and YAML (told apart by content).
    let _ = kcert::reach::inventory::parse_any(text, Path::new("/nonexistent-kcert-fuzz/inventory.yaml"), &opts);
}

/// An `~/.ssh/config`: kcert's reading of it, every `Host` alias it names looked up as a node
/// host would be, and every `ProxyJump` it yields parsed as a jump host. `Include` lines are
/// skipped: they make the parser read other files, which a fuzzer must not steer.
pub fn ssh_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if text.lines().any(|l| l.trim_start().get(..7).is_some_and(|w| w.eq_ignore_ascii_case("include"))) {
        return;
    }
    let first = text.lines().next().unwrap_or("").trim();
    let _ = kcert::reach::inventory::parse_jump(first, "ops", None);
    let Ok(config) = kcert::reach::inventory::parse_ssh_config(&text, Path::new("ssh_config")) else { return };
    let mut aliases: Vec<&str> = vec!["cp1", "10.0.0.1", "bastion", first];
    for l in text.lines() {
        let mut words = l.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("host")) {
            aliases.extend(words.take(4));
        }
    }
    for alias in aliases.into_iter().take(16) {
        let params = config.query(alias);
        let _ = kcert::reach::inventory::parse_jump(alias, "ops", Some(&config));
        for jump in params.proxy_jump.iter().flatten().take(4) {
            let _ = kcert::reach::inventory::parse_jump(jump, "ops", Some(&config));
        }
    }
}

/// A known_hosts file, read as kcert reads it before and during a handshake (russh's reader,
/// which takes a path: the input is written to a scratch file first).
pub fn known_hosts(data: &[u8]) {
    let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let path = std::env::temp_dir().join(format!("kcert-fuzz-known_hosts-{}-{thread}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    for (host, port) in [("cp1", 22), ("10.0.0.1", 22), ("10.0.0.1", 2222), ("node-a.example", 22)] {
        let _ = russh::keys::known_hosts::known_host_keys_path(host, port, &path);
    }
    let _ = std::fs::remove_file(&path);
}

/// A PEM bundle (and the same bytes as one DER certificate): split into certificates, located block by block, its public keys read, and
/// the edits renew and rotate-ca make to bundles applied to it.
pub fn pem(data: &[u8]) {
    // The input as DER too: what a PEM block's body decodes to, without base64 in the way.
    let _ = kcert::pki::cert::parse_der(data);
    let _ = kcert::pki::sign::cert_public_key(data);
    let _ = kcert::pki::cert::parse_pem(data);
    let _ = kcert::pki::sign::public_keys(data);
    let _ = kcert::pki::edit::has_private_key(data);
    let _ = kcert::pki::edit::key_pem(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kcert::pki::edit::blocks(text);
    }
    let _ = kcert::pki::edit::cert_shas(data);
    if let Ok(pems) = kcert::pki::edit::cert_pems(data) {
        if let Some(first) = pems.first() {
            let _ = kcert::pki::edit::add_cert(data, first);
            let _ = kcert::pki::edit::set_certs(data, &pems[..1]);
        }
        let _ = kcert::pki::edit::set_certs(data, &pems);
    }
    if let Ok(shas) = kcert::pki::edit::cert_shas(data)
        && let Some(sha) = shas.last()
    {
        let _ = kcert::pki::edit::remove_cert(data, sha);
    }
}

/// A kubeconfig: its embedded data and references, the current context's identity, a user's
/// key, and each embedded value rewritten in place as rotate-ca rewrites it.
pub fn kubeconfig(data: &[u8]) {
    use kcert::pki::kubeconfig as kc;
    let _ = kc::looks_like_kubeconfig(data);
    let _ = kc::identity(data);
    let _ = kc::user_key(data, "0");
    let _ = kc::user_key(data, "kubernetes-admin");
    let Ok(parsed) = kc::parse_kubeconfig(data) else { return };
    for r in parsed.references.iter().take(8) {
        let _ = kc::resolve_reference("/etc/kubernetes/admin.conf", &r.path);
    }
    for e in parsed.embedded.iter().take(8) {
        let field = e.field.display();
        let _ = kcert::pki::edit::kubeconfig_data(data, &field);
        let _ = kcert::pki::edit::edit_kubeconfig(data, &field, |old| Ok([old, b"\n".as_slice()].concat()));
        // What replace_data promises: the field now holds the new value, and the file still reads.
        let pem = b"-----BEGIN CERTIFICATE-----\n";
        if let Ok(new) = kc::replace_data(data, &e.raw, pem) {
            let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
            let after = kc::parse_kubeconfig(&new).unwrap_or_else(|err| panic!("replace_data made a kubeconfig that does not parse: {err}"));
            assert!(after.embedded.iter().any(|x| x.field.display() == field && x.raw.trim() == b64), "replace_data did not put the new value in {field}");
        }
    }
}

/// A static pod manifest: its containers' flags, and each flag set as an edit sets it.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(flags) = kcert::pki::manifest::manifest_flags(&text) else { return };
    let _ = kcert::pki::edit::set_flag(data, "--client-ca-file", "/etc/kubernetes/pki/ca-bundle.crt");
    for k in flags.keys().take(8) {
        let _ = kcert::pki::edit::set_flag(data, k, "/x y/\"z\"");
    }
}

/// A systemd unit, a drop-in, an environment file and an etcd config file, separated by NUL
/// bytes: the component's flags as kcert reads them, and each flag and variable rewritten as
/// an edit rewrites it.
pub fn unit(data: &[u8]) {
    use kcert::pki::unit as u;
    let mut parts = data.split(|b| *b == 0).map(String::from_utf8_lossy);
    let unit = parts.next().unwrap_or_default();
    let dropin = parts.next().unwrap_or_default();
    let envfile = parts.next().unwrap_or_default();
    let etcd = parts.next().unwrap_or_default();
    let settings = u::settings(&[("/etc/systemd/system/kube-apiserver.service", &unit), ("/etc/systemd/system/kube-apiserver.service.d/10-kcert.conf", &dropin)]);
    let _ = u::env_file(&envfile);
    let env_files = vec![("/opt/kubernetes/cfg/kube-apiserver.conf".to_string(), envfile.to_string())];
    let mut flags = u::flags(&settings, &env_files);
    u::etcd_env(&settings, &env_files, &mut flags);
    let _ = u::etcd_config(if etcd.is_empty() { &unit } else { &etcd }, "/etc/etcd/etcd.conf.yml");
    for k in flags.keys().take(8) {
        let _ = u::set_word_flag(unit.as_bytes(), k, "/x y/$z");
        let _ = u::set_word_flag(envfile.as_bytes(), k, "/x");
    }
    for (k, _) in settings.env.iter().take(4) {
        let _ = u::set_var(envfile.as_bytes(), k, "/x \"y\"");
    }
}

/// A playbook YAML file (`distribution: ./my-playbook.yaml`), parsed and validated.
pub fn playbook(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = kcert::playbook::parse(text, "fuzz-playbook.yaml", None);
}

/// A saved plan (`kcert apply FILE`): read and checked, and when accepted, shown and walked
/// as apply walks it (every recipe applied to stand-in bytes).
pub fn plan(data: &[u8]) {
    let Ok(p) = kcert::plan::read::read(data, Path::new("plan.json")) else { return };
    let _ = p.counts();
    let _ = p.key_ids();
    let _ = p.nodes();
    let _ = p.step_count();
    let _ = p.effects();
    for (_, _, _, op) in p.file_ops().take(64) {
        let _ = op.recipe.carried_text();
        let _ = op.recipe.apply(Some(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), &|_| None);
        let _ = op.recipe.apply(None, &|_| Some(String::new()));
    }
    let mut out = Vec::new();
    let _ = kcert::render::plan(&p, &[], kcert::render::Format::Table, &mut out);
}

/// A run's journal (the operator's file or a node's copy), and what resume reads of it.
pub fn journal(data: &[u8]) {
    let Ok(records) = kcert::run::journal::parse(data) else { return };
    let _ = kcert::run::journal::done(&records);
    for stage in kcert::plan::schema::StageId::ALL {
        let _ = kcert::run::journal::live_backups(&records, stage);
    }
}

