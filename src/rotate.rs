//! Owns: `rotate-ca` above the pure planner and the runner: gathering the facts, making the
//! new CAs, planning (or loading a saved plan and checking its facts still hold), the file
//! checks of S0, saving plans and keys, and starting, resuming and rolling back runs.
//! Must not: print (the CLI renders), or keep key material anywhere but memory and 0600 files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::gate::{self, NodeView};
use crate::journal::{self, Journal, Record, TargetRecord};
use crate::pki::cert::parse_pem;
use crate::pki::sign::{KeyType, key_matches};
use crate::plan::rotation::{self, Input, NodeInput, Options, PlanTarget, RotationPlan};
use crate::playbook::Playbook;
use crate::renew::{Gathered, gather, node_sans};
use crate::runner::{Done, Event, OnFailure, RunReport, Runner};
use crate::store;

#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// `--ca` names; empty: every CA the playbook knows that the cluster has.
    pub cas: Vec<String>,
    pub ca_days: u32,
    pub leaf_days: u32,
    pub key_type: Option<KeyType>,
    pub batch_size: Option<usize>,
    pub now: i64,
}

/// A plan ready to show, save or run, with the new CA keys it needs (memory only).
pub struct Prepared {
    pub gathered: Gathered,
    pub plan: RotationPlan,
    keys: BTreeMap<String, String>,
    /// What `verify` finds as the files stand that does not stop a rotation (it re-signs
    /// every leaf: an expired one is fixed by it).
    pub warnings: Vec<String>,
}

/// Gathers the fleet, makes the new CAs and the whole plan, proves it. Nothing is changed.
pub async fn prepare(fleet: &Fleet, extra_paths: &[String], opts: &RotateOptions) -> Result<Prepared> {
    let gathered = gather(fleet, extra_paths).await?;
    let pb = &gathered.playbook;
    let Some(rot) = &pb.rotation else {
        return Err(Error::input(format!("distribution {}", pb.name), "its playbook has no `rotation` section: kcert does not know how to rotate its CAs yet"));
    };
    // Without --ca, a CA the cluster does not have (kubeadm 1.8 had no etcd CA) is skipped, and said so.
    let mut notes = Vec::new();
    let aliases: Vec<String> = if opts.cas.is_empty() {
        rot.cas
            .iter()
            .filter(|(a, f)| {
                let present = gathered.nodes.iter().any(|n| n.pki.named.contains_key(*f));
                if !present {
                    notes.push(format!("no {a} CA ({f}) on any node: nothing of it to rotate"));
                }
                present
            })
            .map(|(a, _)| a.clone())
            .collect()
    } else {
        opts.cas.clone()
    };
    let offline = gathered.nodes.iter().all(|n| n.t.offline());
    let nodes: Vec<NodeInput<'_>> = gathered
        .nodes
        .iter()
        .map(|n| NodeInput {
            name: &n.target.name,
            // A directory (--root) is a copy of a control-plane node; an inventory says.
            control_plane: n.target.roles.is_empty() || n.target.is_control_plane(),
            pki: &n.pki,
            files: &n.files,
            node_sans: node_sans(n),
        })
        .collect();
    let input = Input {
        playbook: pb,
        target: PlanTarget { inventory: fleet.inventory.clone(), root: fleet.root() },
        nodes,
        checks: if offline { Vec::new() } else { gate::checks(pb, &gathered.views(), &gathered.kubeconfig_servers()) },
        opts: Options { cas: aliases.clone(), ca_days: opts.ca_days, leaf_days: opts.leaf_days, key_type: opts.key_type, batch_size: opts.batch_size.unwrap_or(fleet.batch_size).max(1), kubernetes_api: fleet.kubernetes_api, offline },
        id: journal::stamped_id("plan", opts.now)?,
        cluster: fleet.cluster.clone(),
        now: opts.now,
    };
    let refused = |p: Vec<String>| Error::input("rotate-ca", format!("nothing was changed:\n  {}", p.join("\n  ")));
    let olds = rotation::old_cas(&input, &aliases).map_err(refused)?;
    // Checked before any key is made: what a rotation cannot fix refuses it.
    let (refuse, warnings) = file_checks(&gathered, opts.now);
    if !refuse.is_empty() {
        return Err(Error::input("rotate-ca", format!("the cluster's files do not verify; nothing was changed:\n  {}", refuse.join("\n  "))));
    }
    let news = rotation::successors(&olds, opts.ca_days, opts.now, opts.key_type).map_err(Error::Runtime)?;
    let keys = news.iter().map(|n| (n.name.clone(), n.key_pem.clone())).collect();
    let mut plan = rotation::plan(&input, olds, news).map_err(refused)?;
    drop(input);
    plan.notes.splice(0..0, notes);
    Ok(Prepared { gathered, plan, keys, warnings })
}

/// S0's file checks (`kcert verify`): keys that do not match their certificates, signing
/// pairs that are not one, unreadable files refuse the rotation; expiry and SAN findings are
/// warnings (S4 re-signs), and so is a missing file (there is nothing to re-sign in it).
fn file_checks(g: &Gathered, now: i64) -> (Vec<String>, Vec<String>) {
    let (edges, findings) = crate::verify::graph(g, now);
    let mut refuse = Vec::new();
    let mut warn = Vec::new();
    let hard = |p: &str| p.contains("does not match") || p.contains("unreadable") || p.contains("not one matching");
    for e in &edges {
        for p in &e.problems {
            let line = format!("{} {} -> {}: {p}", e.edge, e.client, e.server);
            if hard(p) { refuse.push(line) } else { warn.push(line) }
        }
    }
    for f in &findings {
        let line = format!("{} {}: {}", f.node, f.component, f.message);
        if f.broken && hard(&f.message) { refuse.push(line) } else { warn.push(line) }
    }
    refuse.dedup();
    warn.dedup();
    (refuse, warn)
}

/// Saves a plan for `kcert apply`: the plan file (no key in it) and the new CA keys in the
/// state dir (0600), where apply finds them by the plan's id.
pub fn save(p: &Prepared, path: &Path, state_dir: &Path) -> Result<PathBuf> {
    let dir = store::plan_keys_dir(state_dir, &p.plan.id);
    store::save_keys(&dir, &p.keys)?;
    let json = serde_json::to_vec_pretty(&p.plan).expect("plans serialize");
    store::write_public(path, &json)?;
    Ok(dir)
}

pub fn load_plan(path: &Path) -> Result<RotationPlan> {
    let what = format!("plan {}", path.display());
    let text = std::fs::read(path).map_err(|e| Error::input(what.clone(), e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::InputAt { file: path.to_path_buf(), line: e.line() as u64, column: e.column() as u64, message: format!("not a kcert plan: {e}") })?;
    let field = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_else(|| "missing".into());
    if v.get("kind").and_then(|k| k.as_str()) != Some(rotation::KIND) {
        return Err(Error::input(what, format!("not a {} plan (its kind is {})", rotation::KIND, field("kind"))));
    }
    if v.get("version").and_then(|k| k.as_u64()) != Some(u64::from(crate::plan::PLAN_VERSION)) {
        return Err(Error::input(what, format!("plan format version {}; this kcert reads version {}: make the plan again", field("version"), crate::plan::PLAN_VERSION)));
    }
    serde_json::from_value(v).map_err(|e| Error::input(what, format!("not a readable plan: {e}")))
}

/// How the facts a plan was made from differ from the cluster now (empty: they still hold).
pub fn facts_moved(plan: &RotationPlan, g: &Gathered) -> Vec<String> {
    let mut then: BTreeMap<(&str, &str), &str> = plan.facts.iter().map(|f| ((f.node.as_str(), f.path.as_str()), f.sha256.as_str())).collect();
    let mut out = Vec::new();
    let nodes: std::collections::BTreeSet<&str> = plan.facts.iter().map(|f| f.node.as_str()).collect();
    for n in &g.nodes {
        if !nodes.contains(n.target.name.as_str()) {
            out.push(format!("{}: a node the plan does not know", n.target.name));
            continue;
        }
        for (path, bytes) in &n.files {
            let now = crate::renew::sha256(bytes);
            match then.remove(&(n.target.name.as_str(), path.as_str())) {
                Some(sha) if sha == now => {}
                Some(sha) => out.push(format!("{}: {path} changed (sha256 {} then, {} now)", n.target.name, &sha[..12], &now[..12])),
                None => out.push(format!("{}: {path} appeared since the plan was made", n.target.name)),
            }
        }
    }
    for ((node, path), _) in then {
        if g.nodes.iter().any(|n| n.target.name == node) {
            out.push(format!("{node}: {path} is gone"));
        } else {
            out.push(format!("{node}: the node is not reachable in this run"));
        }
    }
    out.dedup();
    out
}

/// Loads a saved plan's new CA keys and checks each is its CA's.
pub fn plan_keys(plan: &RotationPlan, dir: &Path) -> Result<BTreeMap<String, String>> {
    let names: Vec<String> = plan.cas.iter().map(|c| c.name.clone()).collect();
    let keys = store::load_keys(dir, &names)?;
    for c in &plan.cas {
        let cert = parse_pem(c.cert_pem.as_bytes()).ok().and_then(|p| p.certs.into_iter().next()).ok_or_else(|| Error::input(format!("plan {}", plan.id), format!("the new {} CA certificate does not parse", c.alias)))?;
        if !key_matches(&cert, keys[&c.name].as_bytes()).unwrap_or(false) {
            return Err(Error::input(dir.join(format!("{}.key", c.name)).display().to_string(), format!("not the key of the plan's new {} CA ({})", c.alias, c.new_subject)));
        }
    }
    Ok(keys)
}

pub struct RunOptions<'a> {
    pub state_dir: PathBuf,
    pub patience: Duration,
    pub on_failure: OnFailure,
    pub observer: &'a (dyn Fn(&Event) + Sync),
}

#[allow(clippy::too_many_arguments)]
fn runner<'a>(plan: &'a RotationPlan, playbook: &'a Playbook, nodes: Vec<NodeView>, fleet: &'a Fleet, keys: &'a BTreeMap<String, String>, journal: Journal, opts: &RunOptions<'a>, on_failure: OnFailure) -> Runner<'a> {
    Runner { plan, playbook, nodes, overrides: &fleet.overrides, keys, journal: Mutex::new(journal), patience: opts.patience, concurrency: fleet.concurrency, on_failure, observer: opts.observer }
}

/// The playbook a fleet from an inventory or a run's target carries (it always has one).
fn playbook(fleet: &Fleet) -> Result<&Playbook> {
    fleet.playbook.as_ref().ok_or_else(|| Error::Usage("no distribution known for these nodes (pass --distribution)".into()))
}

/// A new run of a prepared plan: the run folder gets the plan and the keys (0600), the journal
/// its first records, then the runner carries it out.
pub async fn start(plan: &RotationPlan, keys: &BTreeMap<String, String>, g: &Gathered, fleet: &Fleet, opts: &RunOptions<'_>, now: i64) -> Result<RunReport> {
    let mut j = Journal::create(&opts.state_dir, "rotate-ca", now)?;
    let json = serde_json::to_vec_pretty(plan).expect("plans serialize");
    store::write_private(&j.dir.join("plan.json"), &json)?;
    store::save_keys(&j.dir.join("keys"), keys)?;
    let target = TargetRecord { inventory: plan.target.inventory.clone(), root: plan.target.root.clone(), nodes: g.nodes.iter().map(|n| n.target.name.clone()).collect() };
    j.record(&Record::RunStarted { run_id: j.run_id.clone(), command: "rotate-ca".into(), at: crate::render::rfc3339(now), target })?;
    j.record(&Record::Plan { plan_id: plan.id.clone(), sha256: crate::renew::sha256(&json) })?;
    let runner = runner(plan, &g.playbook, g.views(), fleet, keys, j, opts, opts.on_failure);
    Ok(runner.run(&Done::default()).await)
}

/// Runs a prepared plan (`rotate-ca --yes`).
pub async fn run(p: &Prepared, fleet: &Fleet, opts: &RunOptions<'_>, now: i64) -> Result<RunReport> {
    start(&p.plan, &p.keys, &p.gathered, fleet, opts, now).await
}

/// A run's plan, keys and journal, for resume and rollback.
pub struct Existing {
    pub run_id: String,
    pub plan: RotationPlan,
    pub keys: BTreeMap<String, String>,
    pub records: Vec<Record>,
    pub target: TargetRecord,
}

pub fn existing(state_dir: &Path, run_id: &str) -> Result<Existing> {
    let records = journal::read(state_dir, run_id)?;
    let Some(Record::RunStarted { command, target, .. }) = records.first().cloned() else {
        return Err(Error::input(format!("run {run_id}"), "its journal does not start with the run"));
    };
    if command != "rotate-ca" {
        return Err(Error::input(format!("run {run_id}"), format!("a {command} run: only rotate-ca runs are resumed")));
    }
    let dir = journal::run_dir(state_dir, run_id)?;
    let plan = load_plan(&dir.join("plan.json"))?;
    let keys = plan_keys(&plan, &dir.join("keys"))?;
    Ok(Existing { run_id: run_id.to_string(), plan, keys, records, target })
}

/// Connects to every node of a plan (for resume and rollback: no discovery needed, the plan
/// has the paths and the gates).
pub async fn connect(fleet: &Fleet, plan: &RotationPlan) -> Result<Vec<NodeView>> {
    let wanted: std::collections::BTreeSet<&str> = plan.facts.iter().map(|f| f.node.as_str()).collect();
    let results = fleet.run(&|_| {}, |t, target| async move { Ok((t, target)) }).await;
    let mut views = Vec::new();
    let mut failures = Vec::new();
    for (target, r) in results {
        if !wanted.contains(target.name.as_str()) {
            continue;
        }
        match r {
            Ok((t, target)) => views.push(NodeView { name: target.name.clone(), address: target.address(), t: Arc::clone(&t), pki: Default::default() }),
            Err(e) => failures.push(format!("{}: {}", target.name, e.message)),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Runtime(format!("cannot reach every node of the run; nothing was changed:\n  {}", failures.join("\n  "))));
    }
    for n in &wanted {
        if !views.iter().any(|v| v.name == *n) {
            return Err(Error::input(format!("node {n}"), "the run's plan changes it, but the inventory no longer lists it"));
        }
    }
    Ok(views)
}

/// Carries an interrupted (or paused, or stopped) run on from its journal.
pub async fn resume(e: &Existing, fleet: &Fleet, opts: &RunOptions<'_>) -> Result<RunReport> {
    let views = connect(fleet, &e.plan).await?;
    let j = Journal::reopen(&opts.state_dir, &e.run_id)?;
    let done = crate::runner::done(&e.records);
    Ok(runner(&e.plan, playbook(fleet)?, views, fleet, &e.keys, j, opts, opts.on_failure).run(&done).await)
}

/// Undoes a rotate-ca run's stages from the last down to `to_stage` (S0: everything).
pub async fn rollback(e: &Existing, fleet: &Fleet, to_stage: &str, opts: &RunOptions<'_>) -> Result<RunReport> {
    let Some(to) = e.plan.stages.iter().position(|s| s.id.eq_ignore_ascii_case(to_stage)) else {
        return Err(Error::Usage(format!("--to-stage {to_stage}: the plan's stages are {}", e.plan.stages.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", "))));
    };
    let views = connect(fleet, &e.plan).await?;
    let j = Journal::reopen(&opts.state_dir, &e.run_id)?;
    let runner = runner(&e.plan, playbook(fleet)?, views, fleet, &e.keys, j, opts, OnFailure::Pause);
    let report = runner.rollback(to).await;
    let now = crate::render::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp());
    let (status, message) = match &report.failure {
        None => ("ok".to_string(), format!("stages {} and later undone", e.plan.stages[to].id)),
        Some(f) => ("failed".to_string(), f.clone()),
    };
    runner.journal.lock().expect("journal lock").record(&Record::RolledBack { at: now, status, message })?;
    Ok(report)
}

/// One line per run in the state dir: id, command, start, how it stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub command: String,
    pub started: String,
    pub state: String,
    pub detail: String,
}

pub fn runs(state_dir: &Path) -> Vec<RunSummary> {
    let mut out = Vec::new();
    for id in journal::runs(state_dir) {
        let Ok(records) = journal::read(state_dir, &id) else {
            out.push(RunSummary { run_id: id, command: "?".into(), started: "?".into(), state: "unreadable".into(), detail: String::new() });
            continue;
        };
        let (command, started) = match records.first() {
            Some(Record::RunStarted { command, at, .. }) => (command.clone(), at.clone()),
            _ => ("?".into(), "?".into()),
        };
        let mut state = "interrupted".to_string();
        let mut detail = String::new();
        let mut stage = None;
        for r in &records {
            match r {
                Record::StageStarted { stage: s } => stage = Some(s.clone()),
                Record::RunFinished { status, message } => {
                    state = if status == "ok" { "finished".into() } else { "stopped".into() };
                    detail = message.clone();
                }
                Record::Paused { stage: s, step, .. } => {
                    state = "paused".into();
                    detail = format!("{s} step {}", step + 1);
                }
                Record::RolledBack { status, message, .. } => {
                    state = if status == "ok" { "rolled back".into() } else { "rollback failed".into() };
                    detail = message.clone();
                }
                _ => {}
            }
        }
        if state == "interrupted" {
            detail = match &stage {
                Some(s) => format!("in {s}: `kcert resume {id}` or `kcert rollback {id}`"),
                None => "before any stage".into(),
            };
        }
        out.push(RunSummary { run_id: id, command, started, state, detail });
    }
    out
}
