//! Discovery's one round trip: the survey script, run in a real shell against node trees
//! (the real-world sets in place, and kubeadm, hard-way and k3s trees made with openssl), gives
//! the same facts as discovery asking file by file, and for a kubeadm node answers every
//! question discovery asks.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use kcert::gather::discover;
use kcert::playbook::Playbook;
use kcert::reach::transport::{LocalTransport, Prefetched, Transport, survey};

/// What discovery finds on the tree, file by file and through the survey, and how many
/// questions the survey left to ask.
fn both_ways(root: &Path) -> (String, String, usize, survey::Snapshot) {
    let embedded = kcert::playbook::embedded();
    let all: Vec<&Playbook> = embedded.iter().collect();
    let root_s = root.to_string_lossy().into_owned();
    let req = discover::survey_request(&all, &[], "root", discover::Keys::Exist);
    let out = Command::new("sh").arg("-c").arg(survey::script(&req, &root_s)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snap = survey::parse(&out.stdout, &req, &root_s).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let local = LocalTransport::new("n", Some(root.to_path_buf()));
        let surveyed = Prefetched::new(&local, snap.clone());
        let each = facts(&local, &embedded).await;
        let once = facts(&surveyed, &embedded).await;
        (each, once, surveyed.asks(), snap)
    })
}

async fn facts(t: &dyn Transport, embedded: &[Playbook]) -> String {
    let name = discover::detect(t, embedded).await.unwrap();
    let pb = name.as_ref().and_then(|n| embedded.iter().find(|p| &p.name == n));
    let pki = discover::discover(t, pb, &[]).await.unwrap();
    format!("{name:?} {pki:#?}")
}

/// Absolute links made relative, so the tree reads the same from a shell outside it.
fn relative_links(dir: &Path, root: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            relative_links(&p, root);
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).unwrap();
            if target.is_absolute() {
                let depth = p.strip_prefix(root).unwrap().components().count() - 1;
                let rel: PathBuf = std::iter::repeat_n(Path::new(".."), depth).collect::<PathBuf>().join(target.strip_prefix("/").unwrap());
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink(rel, &p).unwrap();
            }
        }
    }
}

fn made_tree(script: &str, dir: &Path) -> PathBuf {
    let ok = Command::new("bash").arg(format!("{}/docker/pki/{script}", env!("CARGO_MANIFEST_DIR"))).arg(dir).arg("cp1:10.0.0.11:cp").arg("w1:10.0.0.21:worker").status().unwrap();
    assert!(ok.success(), "{script}");
    let node = dir.join("cp1");
    relative_links(&node, &node);
    node
}

#[test]
fn a_kubeadm_node_is_discovered_in_one_round_trip_with_the_same_facts() {
    let dir = tempfile::tempdir().unwrap();
    let node = made_tree("make-kubeadm-pki.sh", dir.path());
    // A pod's projected token: in the hard way's scanned /var/lib/kubelet, not in kubeadm's.
    let token = node.join("var/lib/kubelet/pods/0000/volumes/kubernetes.io~projected/token");
    std::fs::create_dir_all(token.parent().unwrap()).unwrap();
    std::fs::write(&token, "a pod's service-account token").unwrap();
    let (each, once, asks, snap) = both_ways(&node);
    assert_eq!(snap.file("/var/lib/kubelet/pods/0000/volumes/kubernetes.io~projected/token"), None, "only the detected distribution's directories are read");
    assert!(matches!(snap.file("/var/lib/kubelet/pki/kubelet.crt"), Some(kcert::reach::transport::FileData::Found(_))));
    assert!(each.contains("Some(\"kubeadm\")") && each.contains("/etc/kubernetes/pki/ca.crt"), "{each}");
    assert_eq!(once, each, "the survey changes nothing discovery finds");
    assert_eq!(asks, 0, "every question discovery asks a kubeadm node is answered by the survey");
}

#[test]
fn a_hard_way_node_is_discovered_with_the_same_facts_and_few_more_questions() {
    let dir = tempfile::tempdir().unwrap();
    let node = made_tree("make-hardway-pki.sh", dir.path());
    let (each, once, asks, _) = both_ways(&node);
    assert!(each.contains("Some(\"hardway\")") && each.contains("/var/lib/kubernetes/ca.pem"), "{each}");
    assert_eq!(once, each);
    // The environment and config files the units name, then what those name: asked after.
    assert!(asks <= 2, "{asks} questions left to the transport");
}

#[test]
fn a_k3s_server_and_agent_are_discovered_in_one_round_trip_with_the_same_facts() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("{}/docker/pki/make-k3s-pki.sh", env!("CARGO_MANIFEST_DIR"));
    assert!(Command::new("bash").arg(script).arg(dir.path()).args(["s1:10.0.0.11:server", "a1:10.0.0.21:agent"]).status().unwrap().success());
    for name in ["s1", "a1"] {
        let node = dir.path().join(name);
        relative_links(&node, &node);
        let (each, once, asks, _) = both_ways(&node);
        // k3s's components are found by their files (`present`), which the survey answers too.
        assert!(each.contains("Some(\"k3s\")") && each.contains("\"kubelet\""), "{each}");
        assert_eq!(name == "s1", each.contains("\"kube-apiserver\""), "{name}: {each}");
        assert_eq!(once, each, "{name}");
        assert_eq!(asks, 0, "{name}: every question discovery asks a k3s node is answered by the survey");
    }
}

#[test]
fn every_real_world_set_gives_the_same_facts_through_the_survey() {
    let sets = common::real_world();
    let mut seen = 0;
    for set in std::fs::read_dir(&sets).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let (each, once, asks, _) = both_ways(&set);
        assert_eq!(once, each, "{}", set.display());
        if set.file_name().unwrap().to_string_lossy().starts_with("kubeadm-") {
            assert_eq!(asks, 0, "{}: kubeadm sets are answered by the survey alone", set.display());
        }
        seen += 1;
    }
    assert!(seen >= 18, "only {seen} sets under {}", sets.display());
}

/// Each program a node starts costs it about a millisecond of CPU, as much as the file reads
/// themselves: the survey starts the same eleven whatever the number of files, and none for
/// the hostname or root's home. Counted by logging stand-ins for every program it may start,
/// alone on its PATH (one it did not expect would not be found, and the answer would differ).
#[test]
fn the_survey_starts_eleven_programs_whatever_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let node = made_tree("make-kubeadm-pki.sh", dir.path());
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("started");
    let real = |name: &str| ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists()).unwrap_or_else(|| panic!("no {name}"));
    for name in ["find", "xargs", "sh", "stat", "cat", "base64", "hostname", "getent", "cut", "wc", "tr", "head", "ls", "test", "readlink"] {
        let stand_in = bin.join(name);
        std::fs::write(&stand_in, format!("#!{}\necho {name} >>'{}'\nexec {} \"$@\"\n", real("sh").display(), log.display(), real(name).display())).unwrap();
        std::fs::set_permissions(&stand_in, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let embedded = kcert::playbook::embedded();
    let all: Vec<&Playbook> = embedded.iter().collect();
    let root = node.to_string_lossy().into_owned();
    let req = discover::survey_request(&all, &[], "root", discover::Keys::Exist);
    let started = |req: &survey::Survey| {
        let _ = std::fs::remove_file(&log);
        let out = Command::new(real("sh")).arg("-c").arg(survey::script(req, &root)).env("PATH", &bin).output().unwrap();
        let snap = survey::parse(&out.stdout, req, &root).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let mut names: Vec<String> = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
        names.sort();
        (names, snap)
    };
    let (names, snap) = started(&req);
    assert!(matches!(snap.file("/etc/kubernetes/pki/ca.crt"), Some(kcert::reach::transport::FileData::Found(_))), "the stand-ins answer as the programs do");
    assert!(snap.ran(discover::HOSTNAME_SCRIPT).is_some_and(|o| o.success() && !o.stdout.is_empty()), "the hostname is answered");
    assert!(names.len() <= 11, "{} programs started: {names:?}", names.len());
    for once in ["xargs", "stat", "cat", "base64"] {
        assert_eq!(names.iter().filter(|n| *n == once).count(), 1, "{once}: one for every file to read: {names:?}");
    }
    assert!(!names.iter().any(|n| ["hostname", "getent", "cut"].contains(&n.as_str())), "{names:?}");
    // Ten times the files, and ten more directories of them: the same programs.
    for i in 0..10 {
        let d = node.join(format!("etc/kubernetes/pki/more{i}"));
        std::fs::create_dir_all(&d).unwrap();
        for j in 0..10 {
            std::fs::copy(node.join("etc/kubernetes/pki/ca.crt"), d.join(format!("c{j}.crt"))).unwrap();
        }
    }
    let (more, snap) = started(&req);
    assert!(matches!(snap.file("/etc/kubernetes/pki/more9/c9.crt"), Some(kcert::reach::transport::FileData::Found(_))));
    assert_eq!(more, names, "the same programs for ten times the files");
}

/// The runner's preflight asks a node its free space, whether each file to write can be
/// written, and its clock in one survey: run in a real shell, the survey answers all three as
/// the transport asked one by one does (the same free space give or take other writers, the
/// same verdict per path, the operator's own clock within a second), and a transport over that
/// snapshot answers them without asking again.
#[test]
fn the_preflight_is_answered_in_one_round_trip_as_the_transport_answers_it() {
    use kcert::reach::clock::{IDENTITY_SCRIPT, clock_skew};
    use kcert::reach::transport::script;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    std::fs::write(dir.path().join("ca.crt"), "old").unwrap();
    std::fs::write(dir.path().join("a-file"), "not a directory").unwrap();
    let dirs = vec![d.clone(), format!("{d}/backups/run/R1")];
    let paths = vec![format!("{d}/ca.crt"), format!("{d}/new/dir/admin.conf"), format!("{d}/a-file/under.conf")];
    let req = survey::Survey { run: vec![script::free_space_all(&dirs), script::unwritable(&paths), IDENTITY_SCRIPT.to_string()], ..Default::default() };
    let out = Command::new("sh").arg("-c").arg(survey::script(&req, "")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snap = survey::parse(&out.stdout, &req, "").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let local = LocalTransport::new("n", None);
        // Underneath the snapshot, a node where none of these paths is: asked, it would answer otherwise.
        let elsewhere = LocalTransport::new("n", Some(dir.path().join("elsewhere")));
        let surveyed = Prefetched::new(&elsewhere, snap.clone());
        assert!(req.run.iter().all(|s| snap.ran(s).is_some()), "every question is in the one answer");
        let (once, each) = (surveyed.unwritable(&paths).await.unwrap(), local.unwritable(&paths).await.unwrap());
        assert_eq!(once.iter().map(Option::is_some).collect::<Vec<_>>(), [false, false, true], "{once:?}");
        assert_eq!(each.iter().map(Option::is_some).collect::<Vec<_>>(), [false, false, true], "{each:?}");
        assert!(once[2].as_deref().is_some_and(|w| w.contains("in the way")), "{once:?}");
        let (once, each) = (surveyed.free_bytes_all(&dirs).await.unwrap(), local.free_bytes_all(&dirs).await.unwrap());
        assert_eq!(once.len(), 2);
        for (a, b) in once.iter().zip(&each) {
            assert!(a.abs_diff(*b) < 256 << 20, "free space {a} against {b}");
        }
        assert!(once[0] > 0);
        let skew = clock_skew(&surveyed).await.unwrap();
        assert!(skew.abs() < 1.0, "the operator's own clock read off by {skew}s");
    });
    // Nothing was left behind by the writability checks.
    let mut left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["a-file", "ca.crt"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(), "old");
}
