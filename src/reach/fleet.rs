//! Owns: the set of nodes a command works on (an inventory, or this machine / a root
//! directory) and running one async job per node under a global concurrency limit.
//! Must not: know what the job does; it connects, runs, and reports per node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::join_all;
use tokio::sync::Semaphore;

use super::inventory::{ComponentOverride, Inventory, Role};
use super::transport::{LocalTransport, NodeResult, SshOptions, SshTransport, Transport};
use crate::error::{Error, Result};
use crate::playbook::Playbook;

#[derive(Debug, Clone)]
pub enum Connect {
    Ssh(SshOptions),
    Local { root: Option<PathBuf> },
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub roles: Vec<Role>,
    pub connect: Connect,
}

/// The nodes of one command run, with the playbook they share (None: detect per node).
#[derive(Debug, Clone)]
pub struct Fleet {
    pub targets: Vec<Target>,
    pub playbook: Option<Playbook>,
    pub concurrency: usize,
    /// The inventory's per-component restart/health overrides.
    pub overrides: BTreeMap<String, ComponentOverride>,
    /// The inventory this fleet came from (journaled, so rollback can reach the nodes again).
    pub inventory: Option<PathBuf>,
    /// The inventory was read through `ansible-inventory --list`.
    pub from_ansible: bool,
    pub kubernetes_api: bool,
    /// Workers changed together in a changing command's batches.
    pub batch_size: usize,
    /// The inventory's cluster name (for plans and reports).
    pub cluster: String,
}

impl Target {
    /// The address other nodes reach this one on.
    pub fn address(&self) -> String {
        match &self.connect {
            Connect::Ssh(o) => o.host.clone(),
            Connect::Local { .. } => "127.0.0.1".into(),
        }
    }

    pub fn is_control_plane(&self) -> bool {
        self.roles.iter().any(|r| matches!(r, Role::ControlPlane | Role::Etcd))
    }

    /// Changed one at a time, first: a control-plane or etcd node, or a directory (`--root`
    /// is a copy of a control-plane node; an inventory says what each node is).
    pub fn goes_alone(&self) -> bool {
        self.roles.is_empty() || self.is_control_plane()
    }
}

/// What the observers of a fleet-wide job (progress bars, logs) are told.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    Started { node: String },
    Finished { node: String, ok: bool },
}

pub type Observer<'a> = &'a (dyn Fn(&NodeEvent) + Sync);

/// The nodes a run reaches, by name, each over its connection.
#[derive(Clone, Default)]
pub struct Connected {
    nodes: Vec<(String, Arc<dyn Transport>)>,
}

impl Connected {
    pub fn new(nodes: Vec<(String, Arc<dyn Transport>)>) -> Connected {
        Connected { nodes }
    }
    pub fn get(&self, node: &str) -> Option<&Arc<dyn Transport>> {
        self.nodes.iter().find(|(n, _)| n == node).map(|(_, t)| t)
    }
    /// True when every node is a directory tree (`--root`): files only.
    pub fn offline(&self) -> bool {
        self.nodes.iter().all(|(_, t)| t.offline())
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|(n, _)| n.as_str())
    }
    /// The connections to these nodes (those of them that are connected).
    pub fn of(&self, names: &[String]) -> Vec<(String, Arc<dyn Transport>)> {
        self.nodes.iter().filter(|(n, _)| names.contains(n)).cloned().collect()
    }
}

impl Fleet {
    pub fn from_inventory(inv: &Inventory, only: &[String], concurrency: Option<usize>) -> Result<Fleet> {
        for n in only {
            if !inv.nodes.iter().any(|x| &x.name == n) {
                let names: Vec<&str> = inv.nodes.iter().map(|x| x.name.as_str()).collect();
                return Err(Error::Usage(format!("--nodes: no node {n:?} in {} (nodes: {})", inv.path.display(), names.join(", "))));
            }
        }
        let targets = inv
            .nodes
            .iter()
            .filter(|n| only.is_empty() || only.contains(&n.name))
            .map(|n| Target { name: n.name.clone(), roles: n.roles.clone(), connect: Connect::Ssh(n.ssh.clone()) })
            .collect();
        Ok(Fleet {
            targets,
            playbook: inv.playbook.clone(),
            concurrency: concurrency.unwrap_or(inv.concurrency).max(1),
            overrides: inv.components.clone(),
            inventory: Some(std::path::absolute(&inv.path).unwrap_or_else(|_| inv.path.clone())),
            from_ansible: inv.from_ansible,
            kubernetes_api: inv.kubernetes_api,
            batch_size: inv.batch_size.max(1),
            cluster: inv.cluster.clone(),
        })
    }

    /// The nodes that go alone (control plane and etcd; a node of unknown role, or a
    /// `--root` tree, counts as one): they keep a copy of every run.
    pub fn control_plane(&self) -> Vec<String> {
        self.targets.iter().filter(|t| t.goes_alone()).map(|t| t.name.clone()).collect()
    }

    pub fn local(root: Option<PathBuf>, playbook: Option<Playbook>) -> Result<Fleet> {
        if let Some(r) = &root
            && !r.is_dir()
        {
            return Err(Error::input(format!("--root {}", r.display()), "not a directory"));
        }
        let root = root.map(|r| std::path::absolute(&r).unwrap_or(r));
        Ok(Fleet {
            targets: vec![Target { name: "local".into(), roles: Vec::new(), connect: Connect::Local { root } }],
            playbook,
            concurrency: 1,
            overrides: BTreeMap::new(),
            inventory: None,
            from_ansible: false,
            kubernetes_api: false,
            batch_size: 1,
            cluster: "local".into(),
        })
    }

    /// The directory a local run reads (`--root`), if it is one.
    pub fn root(&self) -> Option<PathBuf> {
        self.targets.iter().find_map(|t| match &t.connect {
            Connect::Local { root } => root.clone(),
            Connect::Ssh(_) => None,
        })
    }

    /// Runs `job` on every node, at most `concurrency` at once; results come back in
    /// inventory order whatever order the nodes finish in.
    pub async fn run<T, F, Fut>(&self, observer: Observer<'_>, job: F) -> Vec<(Target, NodeResult<T>)>
    where
        F: Fn(Arc<dyn Transport>, Target) -> Fut,
        Fut: std::future::Future<Output = NodeResult<T>>,
    {
        self.run_reusing(None, observer, job).await
    }

    /// `run`, on the connections of `reuse` where it has one to the node (a node it lacks is
    /// connected to as `run` does).
    pub async fn run_reusing<T, F, Fut>(&self, reuse: Option<&Connected>, observer: Observer<'_>, job: F) -> Vec<(Target, NodeResult<T>)>
    where
        F: Fn(Arc<dyn Transport>, Target) -> Fut,
        Fut: std::future::Future<Output = NodeResult<T>>,
    {
        let permits = Semaphore::new(self.concurrency);
        let tasks = self.targets.iter().map(|target| {
            let permits = &permits;
            let job = &job;
            async move {
                let _permit = permits.acquire().await.expect("semaphore is never closed");
                observer(&NodeEvent::Started { node: target.name.clone() });
                let open = reuse.and_then(|c| c.get(&target.name)).cloned();
                let result = match open {
                    Some(t) => job(t, target.clone()).await,
                    None => match connect(target).await {
                        Ok(t) => job(t, target.clone()).await,
                        Err(e) => Err(e),
                    },
                };
                observer(&NodeEvent::Finished { node: target.name.clone(), ok: result.is_ok() });
                (target.clone(), result)
            }
        });
        join_all(tasks).await
    }
}

pub async fn connect(target: &Target) -> NodeResult<Arc<dyn Transport>> {
    Ok(match &target.connect {
        Connect::Ssh(opts) => Arc::new(SshTransport::connect(&target.name, opts.clone()).await?),
        Connect::Local { root } => Arc::new(LocalTransport::new(target.name.clone(), root.clone())),
    })
}
