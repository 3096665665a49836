//! Benchmark: the rotate-ca planner on a simulated cluster of N nodes (default 5,000: three
//! control-plane nodes and N-3 workers), no SSH. The PKI of three control-plane nodes and two
//! workers is made with the project's openssl script; every other worker is the first
//! worker's files under another name, each holding its own copy of what differs between the
//! two workers (the kubelet's certificates and keys) and sharing what is the same bytes on
//! both, as gathering a real fleet shares it. Prints the time to build the trust model, to plan (making every
//! file change: re-signing each leaf, editing each bundle and kubeconfig) and to prove the
//! plan, and the process's peak memory; beside them, the floor: the leaves it re-signs times
//! one signature's time (measured here) over the cores; and where the plan's CPU went (the
//! signatures, the rest, idle cores) and one signature's time when every core signs at once.
//!
//!   cargo bench --bench planner [-- NODES]      (KCERT_BENCH_PLAN=FILE also saves the plan there)

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use kcert::gather::NodeFacts;
use kcert::gather::facts::Contents;
use kcert::plan::rotation::{self, Input};
use kcert::plan::schema::Options;
use kcert::plan::{build, prove};
use kcert::reach::fleet::Fleet;

/// Peak resident memory of this process (VmHWM), in MB (10^6 bytes, the goal's unit).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).map(|kib| kib * 1024.0 / 1e6).unwrap_or(f64::NAN)
}

/// CPU time this process has used so far, every thread's (utime + stime), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<f64>().ok()).sum();
    ticks / 100.0
}

fn discover(root: &Path, name: &str, control_plane: bool) -> NodeFacts {
    let fleet = Fleet::local(Some(root.to_path_buf()), Some(kcert::playbook::builtin("kubeadm").unwrap())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // As `kcert rotate-ca` hands them to its planner.
    let mut g = rt.block_on(kcert::gather::gather(&fleet, &[])).unwrap().for_planning();
    let mut n = g.nodes.remove(0);
    n.name = name.to_string();
    n.control_plane = control_plane;
    n.offline = false;
    n
}

/// What one signature is timed with: the new CA's signer and a leaf of `node`.
fn signing(ca: &rotation::NewCaInput, node: &NodeFacts, now: i64) -> (kcert::pki::sign::Signer, kcert::pki::CertInfo) {
    let cert = kcert::pki::first_cert(ca.cert_pem.as_bytes()).unwrap();
    let signer = kcert::pki::sign::Signer::new(&cert, ca.key_pem.as_bytes(), now).unwrap();
    let leaf = node.files.values().filter_map(|b| kcert::pki::first_cert(b).ok()).find(|c| !c.is_ca).expect("a leaf on the first node");
    (signer, leaf)
}

/// The median of `rounds` timings of `f`, each in seconds per signature `f` makes on each thread.
fn median(rounds: usize, per_round: f64, f: impl Fn()) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() / per_round
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// One signature's time (the median of 50), re-signing `leaf`.
fn signature_seconds((signer, leaf): &(kcert::pki::sign::Signer, kcert::pki::CertInfo), now: i64) -> f64 {
    use kcert::pki::sign::Validity;
    median(50, 1.0, || drop(signer.resign(leaf, Validity { now, days: 365 }, &[]).unwrap()))
}

/// One signature's time when `threads` threads sign at once, in seconds: the median of 9
/// rounds of 25 signatures on each thread, timed once every thread has made its first (a new
/// thread's first signature costs milliseconds more, aws-lc setting up its per-thread state:
/// the planner's signing threads pay that once a plan, not once every 25 signatures). On some
/// VMs two cores signing together are each slower than one alone, which the floor does not count.
fn signature_seconds_at_once((signer, leaf): &(kcert::pki::sign::Signer, kcert::pki::CertInfo), now: i64, threads: usize) -> f64 {
    use kcert::pki::sign::Validity;
    let mut times: Vec<f64> = (0..9)
        .map(|_| {
            let ready = std::sync::Barrier::new(threads + 1);
            let sign = || drop(signer.resign(leaf, Validity { now, days: 365 }, &[]).unwrap());
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            sign();
                            ready.wait();
                            let t = Instant::now();
                            (0..25).for_each(|_| sign());
                            t.elapsed().as_secs_f64() / 25.0
                        })
                    })
                    .collect();
                ready.wait();
                workers.into_iter().map(|w| w.join().unwrap()).fold(0.0, f64::max)
            })
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let nodes: usize = std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(5000).max(4);
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new(repo.join("docker/pki/make-kubeadm-pki.sh")).arg(dir.path()).args(["cp1:10.0.0.1:cp", "cp2:10.0.0.2:cp", "cp3:10.0.0.3:cp", "w1:10.0.1.1:worker", "w2:10.0.1.2:worker"]).status().unwrap().success();
    assert!(ok, "make-kubeadm-pki.sh failed");
    let mut facts: Vec<NodeFacts> = ["cp1", "cp2", "cp3"].iter().map(|n| discover(&dir.path().join(n), n, true)).collect();
    let worker = discover(&dir.path().join("w1"), "w1", false);
    // Gathering holds each distinct content once (`gather::facts::Held`): the files two workers
    // have byte for byte the same are shared by every worker; the rest is each worker's own
    // (its link and the link's target, one file on disk, share one copy).
    let other = discover(&dir.path().join("w2"), "w2", false);
    let own: Vec<&str> = worker.files.iter().filter(|(p, b)| other.files.get(*p) != Some(*b)).map(|(p, _)| p.as_str()).collect();
    assert!(own.len() >= 3 && own.len() < worker.files.len(), "what two workers do not share: {own:?}");
    facts.extend((1..=nodes - 3).map(|i| {
        let mut mine = Contents::default();
        let files = worker.files.iter().map(|(p, b)| (p.clone(), if own.contains(&p.as_str()) { mine.hold(b.to_vec()) } else { b.clone() })).collect();
        NodeFacts { name: format!("w{i}"), files, ..worker.clone() }
    }));
    drop(other);

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let pb = kcert::playbook::builtin("kubeadm").unwrap();
    let aliases: Vec<String> = pb.rotation.as_ref().unwrap().cas.keys().cloned().collect();
    let input = Input {
        playbook: &pb,
        target: Default::default(),
        nodes: &facts,
        checks: Vec::new(),
        opts: Options { cas: aliases.clone(), ca_days: Some(3650), leaf_days: 365, key_type: None, batch_size: 50, kubernetes_api: true, offline: false, certs: Vec::new() },
        id: "bench".into(),
        cluster: "bench".into(),
        now,
    };
    let rss_before = peak_rss_mb();

    let olds = rotation::old_cas(&input, &aliases).unwrap();
    let news = rotation::successors(&olds, 3650, now, None).unwrap();
    let timed = signing(&news[0], &facts[0], now);
    let before = signature_seconds(&timed, now);
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let plan = rotation::plan(&input, olds, news).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let plan_s = t.elapsed().as_secs_f64();
    let plan_cpu = cpu_seconds() - cpu;
    // This VM's speed drifts by a third within a minute: the faster of the two medians, taken
    // just before and just after the plan, so a slow moment never lowers the ratio.
    let one_signature = before.min(signature_seconds(&timed, now));

    let t = Instant::now();
    // Saved as `kcert rotate-ca --plan-out` saves it: compressed into the file as it is made.
    let plan_file = std::env::var_os("KCERT_BENCH_PLAN").map_or_else(|| dir.path().join("plan.json.gz"), std::path::PathBuf::from);
    kcert::run::keys::save_plan(&plan_file, &plan, false).unwrap();
    let saved = std::fs::metadata(&plan_file).unwrap().len() as usize;
    let save_s = t.elapsed().as_secs_f64();
    // What `kcert rotate-ca` holds at most: the facts, then planning (its model, its proof)
    // and saving. The model and proof timed alone below are the bench's own, made after.
    let peak = peak_rss_mb();
    let t = Instant::now();
    let model = build::model(&pb, &facts);
    let model_s = t.elapsed().as_secs_f64();
    let effects = plan.effects();
    let t = Instant::now();
    prove::prove(&model, &effects).unwrap();
    let prove_s = t.elapsed().as_secs_f64();
    let peak_after = peak_rss_mb();
    // The simulated workers share one key pair, so their re-signed leaves compress better
    // than a real fleet's would: the bound takes out what the plan's distinct recipe texts
    // compress to and counts each text's base64 as random instead (3 bytes per 4 characters).
    let (texts_gz, texts) = {
        use kcert::plan::schema::Recipe;
        use std::io::Write;
        let mut distinct = std::collections::BTreeSet::new();
        for (_, _, _, f) in plan.file_ops() {
            match &f.recipe {
                Recipe::Text { text } => drop(distinct.insert(&**text)),
                Recipe::Certs { certs } | Recipe::CaKey { certs, .. } => distinct.extend(certs.iter().map(|c| &**c)),
                Recipe::Kubeconfig { fields } => distinct.extend(fields.iter().map(|x| &*x.pem)),
                _ => {}
            }
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        distinct.iter().for_each(|t| gz.write_all(t.as_bytes()).unwrap());
        (gz.finish().unwrap().len(), distinct.iter().map(|t| t.len()).sum::<usize>())
    };
    let bound = (saved.saturating_sub(texts_gz) + texts * 3 / 4) as f64 / 1e6;
    let (files, restarts, changed) = plan.counts();

    let signed: usize = plan.stages.iter().flat_map(|s| &s.steps).filter_map(|st| match st { kcert::plan::schema::StepPlan::Batch(b) => Some(b), _ => None }).flat_map(|b| &b.ops).flat_map(|o| &o.files).map(|f| f.changes.iter().filter(|l| l.contains("re-signed ")).count()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor = signed as f64 * one_signature / cores as f64;
    println!("nodes                  {nodes} ({} control plane, {} workers; batch size 50)", 3, nodes - 3);
    println!("trust model            {} files, {} readers, {} edges", model.files.len(), model.readers.len(), model.edges.len());
    println!("plan                   {files} file changes on {changed} nodes, {restarts} restarts, {} proof steps", effects.iter().map(|s| s.effects.len()).sum::<usize>());
    println!("build the model        {model_s:.2} s");
    println!("plan (incl. its proof) {plan_s:.2} s   (re-signs every leaf, edits every bundle and kubeconfig)");
    println!("prove again alone      {prove_s:.2} s   (goal: under 1 s)");
    println!("signature floor        {floor:.2} s   ({signed} leaves x {:.2} ms per signature / {cores} cores)", one_signature * 1000.0);
    let signing_cpu = signed as f64 * one_signature;
    let at_once = signature_seconds_at_once(&timed, now, cores);
    println!(
        "plan's CPU             {plan_cpu:.2} core-s: signing ~{signing_cpu:.2} (at one signature's time alone), the rest ~{:.2} (other work, and signing's slow-down when every core signs); cores idle ~{:.2} core-s of {:.2}",
        plan_cpu - signing_cpu,
        plan_s * cores as f64 - plan_cpu,
        plan_s * cores as f64
    );
    println!(
        "signing on every core  {:.2} ms per signature on each of {cores} cores at once ({:+.0}% against one alone)",
        at_once * 1000.0,
        (at_once / one_signature - 1.0) * 100.0
    );
    println!("plan vs floor          {:.2}x   (goal: within 1.3x)", plan_s / floor);
    println!("plan file              {:.1} MB saved (gzip, in {save_s:.2} s); at most {bound:.1} MB were every certificate distinct   (goal: under 15 MB)", saved as f64 / 1e6);
    println!("peak memory            {peak:.0} MB (facts before planning: {rss_before:.0} MB; with the bench's own second model and proof after: {peak_after:.0} MB)   (goal: under 200 MB)");
}
