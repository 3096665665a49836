//! Owns: a transport answered first from a survey's snapshot, asking the node only what the
//! snapshot cannot answer (and counting those asks).
//! Must not: answer anything the snapshot did not see, or change a node itself (changes go
//! straight to the transport underneath, and make the snapshot stale: use it to read only).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::{CmdOutput, FileData, NodeResult, Replace, Replaced, Snapshot, Stream, Swapped, Transport, WriteFile};

pub struct Prefetched<'a> {
    inner: &'a dyn Transport,
    snap: Snapshot,
    asks: AtomicUsize,
}

impl<'a> Prefetched<'a> {
    pub fn new(inner: &'a dyn Transport, snap: Snapshot) -> Self {
        Prefetched { inner, snap, asks: AtomicUsize::new(0) }
    }

    /// Surveys the node, then answers from what it saw.
    pub async fn survey(inner: &'a dyn Transport, req: &super::Survey) -> NodeResult<Prefetched<'a>> {
        let snap = inner.survey(req).await?;
        Ok(Prefetched::new(inner, snap))
    }

    /// What the survey saw.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// How many questions went to the transport underneath.
    pub fn asks(&self) -> usize {
        self.asks.load(Ordering::Relaxed)
    }

    fn ask(&self) {
        self.asks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Answers per path from `known`, the rest in one call to `fetch`, in the order asked.
async fn merge<T, F, Fut>(paths: &[String], known: impl Fn(&str) -> Option<T>, fetch: F) -> NodeResult<Vec<T>>
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = NodeResult<Vec<T>>>,
{
    let mut out: Vec<Option<T>> = paths.iter().map(|p| known(p)).collect();
    let missing: Vec<String> = paths.iter().zip(&out).filter(|(_, a)| a.is_none()).map(|(p, _)| p.clone()).collect();
    if !missing.is_empty() {
        let n = missing.len();
        let fetched = fetch(missing).await?;
        if fetched.len() != n {
            return Err(super::NodeFailure::command(format!("expected {n} answers, got {}", fetched.len())));
        }
        let mut fetched = fetched.into_iter();
        for slot in out.iter_mut().filter(|a| a.is_none()) {
            *slot = fetched.next();
        }
    }
    Ok(out.into_iter().map(|a| a.expect("every path answered")).collect())
}

#[async_trait]
impl Transport for Prefetched<'_> {
    fn node(&self) -> &str {
        self.inner.node()
    }
    fn offline(&self) -> bool {
        self.inner.offline()
    }
    fn user(&self) -> String {
        self.inner.user()
    }
    async fn run(&self, script: &str) -> NodeResult<CmdOutput> {
        if let Some(out) = self.snap.ran(script) {
            return Ok(out.clone());
        }
        self.ask();
        self.inner.run(script).await
    }
    async fn read_files(&self, paths: &[String]) -> NodeResult<Vec<FileData>> {
        merge(
            paths,
            |p| self.snap.file(p),
            |m| async move {
                self.ask();
                self.inner.read_files(&m).await
            },
        )
        .await
    }
    async fn read_large(&self, path: &str, max: u64) -> NodeResult<FileData> {
        self.ask();
        self.inner.read_large(path, max).await
    }
    async fn list_files(&self, paths: &[String]) -> NodeResult<Vec<String>> {
        let known: Option<Vec<&[String]>> = paths.iter().map(|p| self.snap.listing(p)).collect();
        match known {
            Some(lists) => Ok(lists.concat()),
            None => {
                self.ask();
                self.inner.list_files(paths).await
            }
        }
    }
    async fn exists(&self, paths: &[String]) -> NodeResult<Vec<bool>> {
        merge(
            paths,
            |p| self.snap.exists(p),
            |m| async move {
                self.ask();
                self.inner.exists(&m).await
            },
        )
        .await
    }
    async fn free_bytes(&self, path: &str) -> NodeResult<u64> {
        self.inner.free_bytes(path).await
    }
    async fn free_bytes_all(&self, paths: &[String]) -> NodeResult<Vec<u64>> {
        // Answered when the survey ran the very script the node would be asked.
        if let Some(v) = self.snap.ran(&super::script::free_space_all(paths)).and_then(|o| super::script::parse_df_all(&o.stdout, paths.len()).ok()) {
            return Ok(v);
        }
        self.inner.free_bytes_all(paths).await
    }
    async fn write_files(&self, files: &[WriteFile]) -> NodeResult<Vec<String>> {
        self.inner.write_files(files).await
    }
    async fn append_file(&self, path: &str, had: u64, bytes: &[u8]) -> NodeResult<Option<u64>> {
        self.inner.append_file(path, had, bytes).await
    }
    async fn remove_files(&self, paths: &[String]) -> NodeResult<()> {
        self.inner.remove_files(paths).await
    }
    async fn remove_empty_dirs(&self, dirs: &[String]) -> NodeResult<()> {
        self.inner.remove_empty_dirs(dirs).await
    }
    async fn remove_temps(&self, dirs: &[String]) -> NodeResult<usize> {
        self.inner.remove_temps(dirs).await
    }
    async fn unwritable(&self, paths: &[String]) -> NodeResult<Vec<Option<String>>> {
        if let Some(v) = self.snap.ran(&super::script::unwritable(paths)).and_then(|o| super::script::parse_lines(&o.stdout, paths.len()).ok()) {
            return Ok(v);
        }
        self.inner.unwritable(paths).await
    }
    async fn compare_and_swap(&self, path: &str, expect: Option<&[u8]>, new: Option<&[u8]>) -> NodeResult<Swapped> {
        self.inner.compare_and_swap(path, expect, new).await
    }
    async fn replace_files(&self, files: &[Replace], prune: &[String]) -> NodeResult<Replaced> {
        self.inner.replace_files(files, prune).await
    }
    async fn survey(&self, req: &super::Survey) -> NodeResult<Snapshot> {
        self.inner.survey(req).await
    }
    async fn dial(&self, host: &str, port: u16) -> NodeResult<Box<dyn Stream>> {
        self.inner.dial(host, port).await
    }
}
