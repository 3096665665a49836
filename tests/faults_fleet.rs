//! kcert under faults, on its own kubeadm test fleet (cp2's PKI on an 80 MiB tmpfs, so its
//! disk can be filled), the probes running: a rotation killed (SIGKILL) at eight points drawn
//! at random across S1-S5 (seeded, the seed printed) and resumed each time, half of them from a
//! machine that never saw the run; and faults injected in the middle of a rotation: a worker
//! cut off the network mid-batch, sshd killed on a node mid-step, the PKI disk filled
//! mid-stage, a node restarted inside S4. Each fault stops the run with exit 1 naming the node
//! and what happened, the stage rolled back or paused as `--on-failure` says, every file the
//! run touches either the run's or the original's (never half written); `resume` then finishes
//! with zero failed handshakes. Scenarios run in order; the fleet is torn down whatever happened.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fleet::{Fleet, Scenario, assert_no_temp_files, harness, journal_lines, kcert_state, keep, keep_text, no_failed_handshake, probe, sh, spawn_env, spawned_output, under_probes, verify_live_clean};
use common::pem_certs;

const PKI: &str = "/etc/kubernetes/pki";

/// A small deterministic generator (splitmix64): the seed printed repeats the run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The CA certificates the three CA files hold on cp1.
fn cas(f: &Fleet) -> Vec<String> {
    ["ca.crt", "etcd/ca.crt", "front-proxy-ca.crt"].iter().flat_map(|c| pem_certs(&sh(&f.node("cp1").container, &format!("cat {PKI}/{c}")))).collect()
}

/// A finished rotation, as the files and the live cluster show it: each CA file one new CA on
/// every control-plane node, no staging left, every edge verified live.
fn assert_finished(f: &Fleet, old: &[String], what: &str) {
    let new = cas(f);
    assert_eq!(new.len(), 3, "{what}: each CA file holds one CA");
    assert!(new.iter().all(|c| !old.contains(c)), "{what}: the CAs are new");
    for n in f.nodes.iter().filter(|n| n.control_plane) {
        assert_eq!(sh(&n.container, &format!("test -e {PKI}/kcert-rotation && echo left || echo clean")).trim(), "clean", "{what}: {}: staging left", n.name);
        assert_eq!(sh(&n.container, "test -e /var/lib/kcert/lease.json && echo leased || echo free").trim(), "free", "{what}: {}: the lease was given back", n.name);
    }
    verify_live_clean(f);
}

/// Every file a run's plan touches holds either what it held before the run or what one of
/// the plan's steps writes there (or is absent where the plan has it absent): never a half
/// written file.
fn assert_files_are_the_runs_or_originals(f: &Fleet, sd: &Path, what: &str) {
    let run = std::fs::read_dir(sd.join("runs")).unwrap().flatten().next().expect("a run folder").path();
    let plan = common::plan_json(&run.join("plan.json.gz"));
    let mut allowed: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for stage in plan["stages"].as_array().unwrap() {
        for step in stage["steps"].as_array().unwrap() {
            let Some(ops) = step["ops"].as_array() else { continue };
            for o in ops {
                for file in o["files"].as_array().unwrap() {
                    let set = allowed.entry((o["node"].as_str().unwrap().to_string(), file["path"].as_str().unwrap().to_string())).or_default();
                    for k in ["old_sha256", "new_sha256"] {
                        set.insert(file[k].as_str().unwrap_or("absent").to_string());
                    }
                }
            }
        }
    }
    for n in &f.nodes {
        let paths: Vec<&String> = allowed.keys().filter(|(node, _)| *node == n.name).map(|(_, p)| p).collect();
        if paths.is_empty() {
            continue;
        }
        let script: String = paths.iter().map(|p| format!("if [ -e '{p}' ]; then sha256sum '{p}'; else echo 'absent {p}'; fi\n")).collect();
        for line in sh(&n.container, &script).lines() {
            let (sum, path) = line.split_once(' ').unwrap();
            let path = path.trim_start_matches(' ').trim_start_matches('*');
            let ok = &allowed[&(n.name.clone(), path.to_string())];
            assert!(ok.contains(sum), "{what}: {}:{path} holds {sum}, neither what it held before the run nor what the run writes there", n.name);
        }
    }
}

/// Waits until the journal in `sd` has a record `when` matches (beyond the first `skip`),
/// while `child` runs; panics if it ends first or the moment never comes.
fn wait_for_record(child: &mut std::process::Child, sd: &Path, skip: usize, what: &str, when: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        if journal_lines(sd).iter().skip(skip).any(&when) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("kcert ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "{what} never came");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `script` in `container` until it succeeds (bounded).
fn until(container: &str, script: &str, what: &str) {
    for _ in 0..240 {
        if Command::new("docker").args(["exec", container, "sh", "-c", script]).output().is_ok_and(|o| o.status.success()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{container}: {what} never came back");
}

/// The cluster answers again after a fault: sshd on every node, etcd's quorum, every apiserver.
fn healthy(f: &Fleet) {
    let eps: Vec<String> = f.nodes.iter().filter(|n| n.control_plane).map(|n| format!("https://{}:2379", n.ip)).collect();
    let etcd = format!("ETCDCTL_API=3 etcdctl --endpoints={} --cacert {PKI}/etcd/ca.crt --cert {PKI}/etcd/healthcheck-client.crt --key {PKI}/etcd/healthcheck-client.key endpoint health", eps.join(","));
    for n in &f.nodes {
        until(&n.container, "pgrep -x sshd >/dev/null", "sshd");
        if n.control_plane {
            until(&n.container, &etcd, "etcd's quorum");
            until(&n.container, "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /healthz --request-timeout=5s", "the apiserver");
        }
    }
}

/// A rotation with a fault injected when the journal shows `when`: it must stop with exit 1
/// naming what `said` lists; then `heal`, check no file is half written, and `resume` under
/// the probes: zero failed handshakes, a finished rotation.
#[allow(clippy::too_many_arguments)]
fn fault(f: &Fleet, name: &str, on_failure: &str, when_what: &str, when: impl Fn(&serde_json::Value) -> bool, inject: impl FnOnce(&Fleet), said: &[&str], heal: impl FnOnce(&Fleet)) {
    let old = cas(f);
    let sd = kcert_state(f, name);
    std::fs::create_dir_all(&sd).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let sdir = sd.to_str().unwrap();
    let mut child = spawn_env(f, &["rotate-ca", "--yes", "--state-dir", sdir, "--on-failure", on_failure, "--command-timeout", "20s", "--connect-timeout", "10s"], logs.path(), name, &[]);
    wait_for_record(&mut child, &sd, 0, when_what, when);
    let t0 = Instant::now();
    inject(f);
    let status = child.wait().unwrap();
    let out = spawned_output(logs.path(), name);
    keep_text(f, &format!("{name}-rotate"), &out);
    eprintln!("{name}: the fault was injected {when_what}; kcert stopped {:.1}s later", t0.elapsed().as_secs_f64());
    heal(f);
    assert_eq!(status.code(), Some(1), "{name}: exit 1 after the fault:\n{out}");
    for s in said {
        assert!(out.contains(s), "{name}: kcert's output says {s:?}:\n{out}");
    }
    assert_files_are_the_runs_or_originals(f, &sd, name);
    healthy(f);
    let (done, probes) = under_probes(f, || f.kcert(&["resume", "--yes", "--state-dir", sdir]).run());
    keep(f, &format!("{name}-resume"), &done);
    done.status(0);
    no_failed_handshake(probes, &format!("while the run was resumed after {name}"));
    assert_no_temp_files(f, name);
    assert_finished(f, &old, name);
}

fn rec(v: &serde_json::Value, event: &str, stage: &str, node: Option<&str>) -> bool {
    v["event"] == event && v["stage"] == stage && node.is_none_or(|n| v["node"] == n)
}

fn killed_at_eight_seeded_points_across_s1_to_s5_each_resumed_under_probes(f: &Fleet) {
    let seed = std::env::var("KCERT_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("kill points: seed {seed} (KCERT_FAULT_SEED={seed} repeats them)");
    let mut rng = Rng(seed);
    // Every stage once, three more drawn; within a stage, the k-th record that process writes
    // there. A fresh run writes 39 records in S1, 92 in S2, 10 in S3 (its API steps skipped),
    // 116 in S4 and 155 in S5 on this fleet. A kill lands once the batch holding its record is
    // on disk (a node's backups or writes: at most 10 records in S2, 14 in S4, 12 in S5), and
    // the next process goes on from there. So the kills of one stage share `most`, each drawing
    // from its share: together, batches included, they stay inside the stage whatever is drawn
    // (at worst S2: 4 x (10 + 9) = 76 < 92), and every kill lands.
    let most = |s: &str| if s == "S3" { 3 } else if s == "S1" { 12 } else { 40 };
    let mut stages: Vec<&str> = vec!["S1", "S2", "S3", "S4", "S5"];
    // The three more from the long stages: a second kill in S1 could find it done already.
    for _ in 0..3 {
        stages.push(["S2", "S4", "S5"][rng.below(3) as usize]);
    }
    stages.sort();
    let kills_in = |s: &str| stages.iter().filter(|t| **t == s).count() as u64;
    let points: Vec<(String, u64)> = stages.iter().map(|s| (s.to_string(), 1 + rng.below(most(s) / kills_in(s)))).collect();
    eprintln!("kill points: {}", points.iter().map(|(s, k)| format!("{s}:{k}")).collect::<Vec<_>>().join(" "));
    let old = cas(f);
    let logs = tempfile::tempdir().unwrap();
    probe(f, "start").unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut sd = kcert_state(f, "kills-0");
        for (i, (stage, k)) in points.iter().enumerate() {
            let fault = format!("record:{stage}:{k}");
            let name = format!("kill-{i}");
            let sdir = sd.to_str().unwrap().to_string();
            let args: Vec<&str> = if i == 0 { vec!["rotate-ca", "--yes", "--state-dir", &sdir] } else { vec!["resume", "--yes", "--state-dir", &sdir] };
            let status = spawn_env(f, &args, logs.path(), &name, &[("KCERT_FAULT", &fault)]).wait().unwrap();
            let out = spawned_output(logs.path(), &name);
            keep_text(f, &name, &out);
            assert!(status.code().is_none(), "{name}: kcert was to be killed at the {k}-th record of {stage}, and ended {status}:\n{out}");
            let last = journal_lines(&sd).last().cloned().unwrap_or_default();
            // Every other time (once S1 put the new CA keys on the nodes), the operator's machine
            // is gone: the next one starts with an empty state dir and the inventory alone.
            let lost = i % 2 == 0 && stage != "S1";
            eprintln!("killed kcert at {fault}, after a {} record{}", last["event"], if lost { "; the next resume runs on a machine that never saw the run" } else { "" });
            if lost {
                sd = kcert_state(f, &format!("kills-{}", i + 1));
            }
        }
        let done = f.kcert(&["resume", "--yes", "--state-dir", sd.to_str().unwrap()]).run();
        keep(f, "kills-final-resume", &done);
        done.status(0);
    }));
    let probes = probe(f, "stop");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    no_failed_handshake(probes, "while kcert was killed at eight points and resumed each time");
    assert_no_temp_files(f, "eight kills");
    assert_finished(f, &old, "eight kills and resumes");
}

fn a_worker_cut_off_the_network_mid_batch_pauses_the_run_and_resume_finishes_it(f: &Fleet) {
    let w1 = f.node("w1");
    let (c, ip, net) = (w1.container.clone(), w1.ip.clone(), format!("{}-net", f.name));
    fault(
        f,
        "network-cut",
        "pause",
        "as S2 backed up w1's files",
        |v| rec(v, "backup", "S2", Some("w1")),
        |_| {
            Command::new("docker").args(["network", "disconnect", &net, &c]).status().unwrap();
        },
        &["w1", "paused"],
        |_| {
            assert!(Command::new("docker").args(["network", "connect", "--ip", &ip, &net, &c]).status().unwrap().success(), "w1 back on the network");
        },
    );
}

fn sshd_killed_on_a_node_mid_step_leaves_no_half_written_file_and_resume_finishes(f: &Fleet) {
    let c = f.node("cp3").container.clone();
    fault(
        f,
        "sshd-killed",
        "rollback",
        "as S4 backed up and wrote cp3's files in one round trip (its restarts next)",
        |v| rec(v, "backup", "S4", Some("cp3")),
        |_| {
            let _ = Command::new("docker").args(["exec", &c, "pkill", "-KILL", "-x", "sshd"]).status();
        },
        &["cp3", "S4"],
        |_| {},
    );
}

fn the_pki_disk_filled_mid_stage_stops_the_run_and_resume_finishes(f: &Fleet) {
    let c = f.node("cp2").container.clone();
    fault(
        f,
        "disk-full",
        "rollback",
        "as S2 started (S0 measured the free space before)",
        |v| v["event"] == "stage-started" && v["stage"] == "S2",
        |_| {
            // Fill cp2's PKI tmpfs to the last block.
            let _ = Command::new("docker").args(["exec", &c, "sh", "-c", &format!("dd if=/dev/zero of={PKI}/zz-filler bs=64k 2>/dev/null; sync")]).status();
        },
        &["cp2", "rolled back"],
        |_| {
            sh(&c, &format!("rm -f {PKI}/zz-filler"));
        },
    );
}

fn a_node_restarted_inside_s4_pauses_the_run_and_resume_finishes(f: &Fleet) {
    // cp3 (its PKI on the container's disk; cp2's is a tmpfs a restart would empty).
    let c = f.node("cp3").container.clone();
    fault(
        f,
        "node-restart",
        "pause",
        "as S4 restarted a component on cp3",
        |v| rec(v, "restarted", "S4", Some("cp3")),
        |_| {
            Command::new("docker").args(["restart", "-t", "0", &c]).status().unwrap();
        },
        &["cp3", "paused"],
        |_| {},
    );
}

fn main() {
    let scenarios: Vec<(&'static str, Scenario)> = vec![
        ("killed_at_eight_seeded_points_across_s1_to_s5_each_resumed_under_probes", killed_at_eight_seeded_points_across_s1_to_s5_each_resumed_under_probes),
        ("a_worker_cut_off_the_network_mid_batch_pauses_the_run_and_resume_finishes_it", a_worker_cut_off_the_network_mid_batch_pauses_the_run_and_resume_finishes_it),
        ("sshd_killed_on_a_node_mid_step_leaves_no_half_written_file_and_resume_finishes", sshd_killed_on_a_node_mid_step_leaves_no_half_written_file_and_resume_finishes),
        ("a_node_restarted_inside_s4_pauses_the_run_and_resume_finishes", a_node_restarted_inside_s4_pauses_the_run_and_resume_finishes),
        ("the_pki_disk_filled_mid_stage_stops_the_run_and_resume_finishes", the_pki_disk_filled_mid_stage_stops_the_run_and_resume_finishes),
    ];
    harness(scenarios, Some("cp2"));
}
