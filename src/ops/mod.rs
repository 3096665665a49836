//! Owns: one library function per command that changes a cluster, what the CLI calls:
//! `renew` and `rotate_ca` (plan, then show, save or run it), `apply` (a saved plan, while
//! its facts hold), `resume`, `rollback` and `runs`; and what they share: saving a plan and
//! its keys, refusing a stale plan or a changed playbook, one unfinished run per cluster.
//! Must not: print or read the terminal; the CLI passes its confirmation and progress in.

pub mod fetch;
pub mod renew;
pub mod rotate;
pub mod runs;
mod saved;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::gather::Gathered;
use crate::plan::Plan;
use crate::plan::schema::PlanTarget;
use crate::playbook::Playbook;
use crate::reach::fleet::{Connected, Fleet};
use crate::reach::inventory::{self, LoadOptions};
use crate::run::journal::{self, Done, Journal, Record, TargetRecord};
use crate::run::{Event, OnFailure, RunReport, Runner, keys, lease};
pub use renew::RenewOptions;
pub use rotate::RotateOptions;
pub use saved::{facts_moved, load_plan};

/// A plan ready to show, save or run, with what it needs that is not in it: the new CA keys
/// of a rotation (memory only), and what `verify` found that does not stop it.
pub struct Prepared {
    pub gathered: Gathered,
    pub plan: Plan,
    keys: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// What to do with a plan once it is made.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Show it; change nothing.
    DryRun,
    /// Save it (and its new CA keys, 0600, in the state dir) for `kcert apply`.
    PlanOut(PathBuf),
    /// Carry it out (after the confirmation).
    Run,
}

/// How a changing command ended.
pub enum Ended {
    /// The plan was made, and shown or saved; nothing was changed.
    Planned { plan: Box<Plan>, warnings: Vec<String>, saved: Option<Saved> },
    Ran(RunReport),
}

/// Where `--plan-out` put a plan, and its keys when it has any.
pub struct Saved {
    pub path: PathBuf,
    pub keys: Option<PathBuf>,
}

/// What every run needs from the caller.
pub struct RunOptions<'a> {
    pub state_dir: PathBuf,
    pub patience: Duration,
    /// Take a stale lease (`--break-lease`).
    pub break_lease: bool,
    pub on_failure: OnFailure,
    /// Asked once the plan is known, before anything changes; an error stops the run.
    pub confirm: &'a dyn Fn(&Plan, &[String]) -> Result<()>,
    pub observer: &'a (dyn Fn(&Event) + Sync),
}

/// `kcert renew`.
pub async fn renew(fleet: &Fleet, extra_paths: &[String], opts: &RenewOptions, mode: Mode, run: &RunOptions<'_>) -> Result<Ended> {
    refuse_beside_unfinished(fleet, &mode, run)?;
    let gathered = crate::gather::gather_asking(fleet, extra_paths, &crate::run::copies::states_survey()).await?;
    let unfinished = Unfinished::ask(&gathered, fleet, target_of(fleet), run);
    let prepared = renew::prepare(fleet, gathered.for_planning(), opts)?;
    carry_out(prepared, unfinished.answer().await?, fleet, mode, run, opts.now).await
}

/// `kcert rotate-ca`.
pub async fn rotate_ca(fleet: &Fleet, extra_paths: &[String], opts: &RotateOptions, mode: Mode, run: &RunOptions<'_>) -> Result<Ended> {
    refuse_beside_unfinished(fleet, &mode, run)?;
    let gathered = crate::gather::gather_asking(fleet, extra_paths, &crate::run::copies::states_survey()).await?;
    let unfinished = Unfinished::ask(&gathered, fleet, target_of(fleet), run);
    let prepared = rotate::prepare(fleet, gathered.for_planning(), opts)?;
    carry_out(prepared, unfinished.answer().await?, fleet, mode, run, opts.now).await
}

/// One changing run per cluster: another one's changes still on the nodes refuse a new run
/// before anything is read (a plan made now would start from its half-way state).
fn refuse_beside_unfinished(fleet: &Fleet, mode: &Mode, run: &RunOptions<'_>) -> Result<()> {
    match (mode, runs::unfinished(&run.state_dir, &target_of(fleet))) {
        (Mode::Run, Some(u)) => Err(Error::input(format!("cluster {}", fleet.cluster), format!("{u}; nothing was changed"))),
        _ => Ok(()),
    }
}

/// How a run on this fleet reaches its nodes again, as its journal keeps it.
fn target_of(fleet: &Fleet) -> PlanTarget {
    PlanTarget { inventory: fleet.inventory.clone(), root: fleet.root(), from_ansible: fleet.from_ansible }
}

/// The unfinished run on this cluster, as this machine's state dir (its runs on `target`) or
/// the control-plane nodes' copies (another operator's, another machine's) know it: asked
/// while the plan is made or checked (the answer does not depend on it), given up if that fails.
struct Unfinished(tokio::task::JoinHandle<Result<Option<String>>>);

impl Unfinished {
    /// `g`: gathered with `copies::states_survey` asked of the control plane, so that only
    /// a node that could not answer it then is asked again.
    fn ask(g: &Gathered, fleet: &Fleet, target: PlanTarget, run: &RunOptions<'_>) -> Unfinished {
        let (nodes, seen, state_dir, inventory) = (g.connected.of(&fleet.control_plane()), g.asked.clone(), run.state_dir.clone(), fleet.inventory.clone());
        Unfinished(tokio::spawn(async move {
            if let Some(u) = runs::unfinished(&state_dir, &target) {
                return Ok(Some(u));
            }
            fetch::cluster_unfinished(&nodes, &seen, &state_dir, inventory.as_deref()).await
        }))
    }

    async fn answer(mut self) -> Result<Option<String>> {
        (&mut self.0).await.map_err(|e| Error::Runtime(format!("asking the control plane for unfinished runs: {e}")))?
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn carry_out(p: Prepared, unfinished: Option<String>, fleet: &Fleet, mode: Mode, run: &RunOptions<'_>, now: i64) -> Result<Ended> {
    let mut warnings = p.warnings;
    match mode {
        Mode::DryRun | Mode::PlanOut(_) => {
            if let Some(u) = &unfinished {
                warnings.push(format!("{u}: this plan cannot run until that run is resumed or rolled back"));
            }
            let saved = match mode {
                Mode::PlanOut(path) => Some(saved::save(&p.plan, &p.keys, &path, &run.state_dir)?),
                _ => None,
            };
            Ok(Ended::Planned { plan: Box::new(p.plan), warnings, saved })
        }
        Mode::Run => {
            if let Some(u) = unfinished {
                return Err(Error::input(format!("cluster {}", p.plan.cluster), format!("{u}; nothing was changed")));
            }
            if p.plan.counts().0 == 0 {
                return Ok(Ended::Planned { plan: Box::new(p.plan), warnings, saved: None });
            }
            if p.plan.options.offline && p.plan.made_by_nodes() {
                let pb = &p.gathered.playbook.name;
                return Err(Error::input(format!("distribution {pb}"), format!("{pb} makes its certificates itself when its unit starts, so files alone (--root) cannot be changed this way; run against the nodes (--dry-run shows the plan); nothing was changed")));
            }
            (run.confirm)(&p.plan, &warnings)?;
            let report = start(&p.plan, &p.keys, &p.gathered.playbook, &p.gathered, fleet, run, now).await?;
            Ok(Ended::Ran(report))
        }
    }
}

/// A new run of a plan: the run folder gets the plan and the keys (0600), the journal its
/// first records, then the runner carries it out.
#[allow(clippy::too_many_arguments)]
async fn start(plan: &Plan, keys: &BTreeMap<String, String>, pb: &Playbook, g: &Gathered, fleet: &Fleet, run: &RunOptions<'_>, now: i64) -> Result<RunReport> {
    let nodes = g.connected.clone();
    let mut j = Journal::create(&run.state_dir, plan.kind.as_str(), now)?;
    let held = match take_lease(&nodes, fleet, &j.run_id, plan.kind.as_str(), None, run).await {
        Ok(h) => h,
        Err(e) => {
            // Nothing was recorded: the run never started.
            let _ = std::fs::remove_dir_all(&j.dir);
            return Err(e);
        }
    };
    let stop = held.stop.clone();
    let runner = (|| {
        let saved_sha256 = keys::save_plan(&j.dir.join(journal::PLAN_FILE), plan, true)?;
        if !keys.is_empty() {
            keys::save_keys(&j.dir.join("keys"), keys)?;
        }
        let target = TargetRecord { inventory: plan.target.inventory.clone(), root: plan.target.root.clone(), from_ansible: plan.target.from_ansible, nodes: plan.nodes().into_iter().map(str::to_string).collect() };
        j.record(&Record::RunStarted { run_id: j.run_id.clone(), command: plan.kind, at: crate::text::rfc3339(now), target })?;
        j.record(&Record::Plan { plan_id: plan.id.clone(), sha256: saved_sha256 })?;
        Ok(Runner::new(plan, pb, nodes, &fleet.overrides, keys, j, run.patience, fleet.concurrency, run.on_failure, run.observer).keep_copies_on(fleet.control_plane()).stop_when(stop).seen_at_start(as_gathered(plan, g)))
    })();
    under_lease(held, runner, &Done::default(), fleet).await
}

/// What each file the plan writes held as gathered, where that is what its first op expects
/// (a file the plan creates: absent); a file gathered otherwise, or not gathered, is read.
fn as_gathered(plan: &Plan, g: &Gathered) -> BTreeMap<crate::run::NodeFile, Option<Vec<u8>>> {
    let facts: BTreeMap<&str, &crate::gather::NodeFacts> = g.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut out = BTreeMap::new();
    let mut first = BTreeSet::new();
    for (_, _, node, f) in plan.file_ops() {
        if !first.insert((node, f.path.as_str())) {
            continue;
        }
        let bytes = facts.get(node).and_then(|n| n.files.get(&f.path));
        match (&f.old_sha256, bytes) {
            (None, None) => drop(out.insert((node.to_string(), f.path.clone()), None)),
            (Some(sha), Some(b)) if crate::pki::sha256(b) == *sha => drop(out.insert((node.to_string(), f.path.clone()), Some(b.to_vec()))),
            _ => {}
        }
    }
    out
}

/// A run under its lease, to its end: its last record is copied to the nodes while the lease
/// is given back, or kept marked paused for a paused run (what could not be done is added to
/// the report's notes). A runner that could not be made gives the lease back.
async fn under_lease(held: lease::Held, runner: Result<Runner<'_>>, done: &Done, fleet: &Fleet) -> Result<RunReport> {
    let runner = match runner {
        Ok(r) => r,
        Err(e) => {
            held.release().await;
            return Err(e);
        }
    };
    let mut report = drive(&runner, done, fleet).await;
    let paused = report.stages.iter().any(|s| s.status == crate::run::StageStatus::Paused);
    let lease = async { if paused { held.pause().await } else { held.release().await } };
    let (said, ()) = futures::join!(lease, runner.finish(&report));
    report.notes.extend(said);
    Ok(report)
}

/// Takes the cluster's lease on its control-plane nodes for run `run_id` (all or none);
/// `own`: the run being carried on or undone, whose paused lease it may take back.
async fn take_lease(nodes: &Connected, fleet: &Fleet, run_id: &str, command: &str, own: Option<&str>, run: &RunOptions<'_>) -> Result<lease::Held> {
    let how = lease::Taking { break_stale: run.break_lease, run_id: own };
    let (held, said) = lease::take(nodes.of(&fleet.control_plane()), run_id, command, how).await?;
    for message in said {
        (run.observer)(&Event::Note { message });
    }
    Ok(held)
}

/// Runs a plan to its end (the caller records the end); a rotation whose steps all went
/// through is then judged by the files as they stand on every node, not by the plan's own
/// account: an old CA's key still trusted anywhere, a leaf still signed by it, a CA file not
/// matching its key, fails it.
async fn drive(runner: &Runner<'_>, done: &Done, fleet: &Fleet) -> RunReport {
    let mut report = runner.run(done).await;
    if report.failure.is_none() && runner.plan.kind == crate::plan::Kind::RotateCa {
        // Read back over the run's own connections: nothing to set up again.
        let left = match crate::gather::gather_reusing(fleet, Some(&runner.nodes), &[]).await {
            Ok(g) => crate::plan::outcome::rotation_problems(&g.playbook, &g.nodes, runner.plan),
            Err(e) => vec![format!("the nodes cannot be read back to check the result: {e}")],
        };
        if !left.is_empty() {
            report.failure = Some(format!("every step ran, but the files do not show a finished rotation:\n  {}\n  look at them, then `kcert rollback {}`", left.join("\n  "), report.run_id));
        }
    }
    report
}

/// The plan against the files as gathered now: replayed op by op (old bytes found, recipes
/// rebuild their bytes, signing pairs match, a rotation ends finished) and, when nothing of
/// it has run, proven again on the trust model they make.
async fn holds_up(g: &mut Gathered, plan: &Plan, keys: &BTreeMap<String, String>, done: &Done) -> Result<()> {
    // Every file the plan touches is read, not only those discovery finds (staged copies).
    for n in g.nodes.iter_mut() {
        let wanted: Vec<String> = plan.file_ops().filter(|(_, _, node, f)| *node == n.name && !n.files.contains_key(&f.path)).map(|(_, _, _, f)| f.path.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let Some(t) = g.connected.get(&n.name) else { continue };
        if wanted.is_empty() {
            continue;
        }
        let data = t.read_files(&wanted).await.map_err(|e| Error::node(n.name.clone(), e.message))?;
        for (p, d) in wanted.into_iter().zip(data) {
            if let crate::reach::transport::FileData::Found(b) = d {
                n.files.insert(p, b.into());
            }
        }
    }
    let mut problems = crate::plan::replay::replay(&g.playbook, &g.nodes, plan, keys, &done.steps);
    if done.steps.is_empty() {
        let model = crate::plan::build::model(&g.playbook, &g.nodes);
        if let Err(v) = crate::plan::prove::prove(&model, &plan.effects()) {
            problems.push(format!("its proof fails on the cluster as it stands: {v}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::input(format!("plan {}", plan.id), format!("it does not hold up against the cluster as it stands (edited by hand, or the cluster moved); nothing was changed:\n  {}", problems.join("\n  "))))
}

/// `kcert apply FILE`: a saved plan, only while every fact it was made from still holds and
/// its playbook is the one it was made with; `inventory` (read through `ansible-inventory`
/// with `from_ansible`) reaches the nodes another way.
pub async fn apply(path: &Path, inventory: Option<&Path>, from_ansible: bool, run: &RunOptions<'_>) -> Result<RunReport> {
    let plan = load_plan(path)?;
    let pb = saved::playbook_of(&plan)?;
    let reach = match inventory {
        Some(_) => runs::Reach { inventory, root: None, from_ansible },
        None => runs::Reach { inventory: plan.target.inventory.as_deref(), root: plan.target.root.as_deref(), from_ansible: plan.target.from_ansible },
    };
    let fleet = fleet_of(reach, &pb)?;
    let mut g = crate::gather::gather_asking(&fleet, &[], &crate::run::copies::states_survey()).await?;
    let unfinished = Unfinished::ask(&g, &fleet, plan.target.clone(), run);
    let moved = facts_moved(&plan, &g);
    if !moved.is_empty() {
        return Err(Error::input(
            format!("plan {}", path.display()),
            format!("the cluster moved since the plan was made ({}); nothing was changed:\n  {}\n  make a new plan: kcert {} --plan-out FILE", plan.created_at, moved.join("\n  "), plan.kind),
        ));
    }
    if let Some(u) = unfinished.answer().await? {
        return Err(Error::input(format!("cluster {}", plan.cluster), format!("{u}; nothing was changed")));
    }
    let keys_dir = keys::plan_keys_dir(&run.state_dir, &plan.id);
    let keys = if plan.cas.is_empty() { BTreeMap::new() } else { saved::plan_keys(&plan, &keys_dir)? };
    holds_up(&mut g, &plan, &keys, &Done::default()).await?;
    (run.confirm)(&plan, &[])?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let report = start(&plan, &keys, &pb, &g, &fleet, run, now).await?;
    // The run folder holds the keys now; no second copy is left behind.
    if !plan.cas.is_empty() {
        let _ = std::fs::remove_dir_all(&keys_dir);
    }
    Ok(report)
}

/// The fleet a saved plan or a run reaches: an inventory, else the root directory (or this
/// machine) it was made on; either way with the plan's own playbook.
pub fn fleet_of(reach: runs::Reach<'_>, pb: &Playbook) -> Result<Fleet> {
    let mut fleet = match reach.inventory {
        Some(inv) => Fleet::from_inventory(&inventory::load(inv, &LoadOptions { from_ansible: reach.from_ansible, ..LoadOptions::default() })?, &[], None)?,
        None => Fleet::local(reach.root.map(Path::to_path_buf), None)?,
    };
    fleet.playbook = Some(pb.clone());
    Ok(fleet)
}

/// Connects to every node of a plan (resume and rollback need no discovery: the plan has
/// the paths and the gates). A node the plan changes that cannot be reached stops it.
pub async fn connect(fleet: &Fleet, plan: &Plan) -> Result<Connected> {
    let wanted = plan.nodes();
    let results = fleet.run(&|_| {}, |t, target| async move { Ok((t, target)) }).await;
    let mut nodes = Vec::new();
    let mut failures = Vec::new();
    for (target, r) in results {
        if !wanted.contains(&target.name.as_str()) {
            continue;
        }
        match r {
            Ok((t, target)) => nodes.push((target.name.clone(), t)),
            Err(e) => failures.push(format!("{}: {}", target.name, e.message)),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Runtime(format!("cannot reach every node of the run; nothing was changed:\n  {}", failures.join("\n  "))));
    }
    for n in &wanted {
        if !nodes.iter().any(|(name, _)| name == n) {
            return Err(Error::input(format!("node {n}"), "the run's plan changes it, but the inventory no longer lists it"));
        }
    }
    Ok(Connected::new(nodes))
}
