//! Owns: what a person sees while kcert works: a bar of nodes for reports; for runs, a bar of
//! steps with a line per node of the current step on a terminal, plain lines on stderr
//! elsewhere (pipes, CI, NO_COLOR); logs through tracing either way.
//! Must not: print results (render does) or decide anything.

use std::io::IsTerminal;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::reach::fleet::{Fleet, NodeEvent};
use crate::run::Event;

fn shown() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn bar(len: usize, unit: &str, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(ProgressStyle::with_template(&format!("{{spinner}} {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}")).expect("valid template").progress_chars("=> "));
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar of nodes done while a report reads the fleet.
pub struct Nodes {
    bar: Option<ProgressBar>,
}

impl Nodes {
    pub fn new(fleet: &Fleet, what: &str) -> Nodes {
        Nodes { bar: (shown() && fleet.targets.len() > 1).then(|| bar(fleet.targets.len(), "nodes", what)) }
    }

    pub fn observe(&self, event: &NodeEvent) {
        match event {
            NodeEvent::Started { node } => tracing::debug!(node, "started"),
            NodeEvent::Finished { node, ok } => {
                tracing::debug!(node, ok, "finished");
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
            }
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// While a run goes on: on a terminal, a bar of the run's steps with a line under it per node
/// of the current step (what it is doing, for how long); elsewhere (a pipe, CI, NO_COLOR)
/// the same as plain lines on stderr, each with the time since the run began.
pub struct Steps {
    what: String,
    bars: Option<MultiProgress>,
    bar: OnceLock<Option<ProgressBar>>,
    nodes: Mutex<BTreeMap<String, ProgressBar>>,
    began: Instant,
}

impl Steps {
    pub fn new(what: &str) -> Steps {
        Steps { what: what.to_string(), bars: shown().then(MultiProgress::new), bar: OnceLock::new(), nodes: Mutex::new(BTreeMap::new()), began: Instant::now() }
    }

    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(Some(b)) = self.bar.get() {
            f(b);
        }
    }

    /// A plain line, when there are no bars.
    fn line(&self, text: &str) {
        if self.bars.is_none() {
            eprintln!("kcert [{:>6.1}s] {text}", self.began.elapsed().as_secs_f64());
        }
    }

    /// The line under the bar for this node (or these nodes: a gate of a batch), made when
    /// the node is first heard of in a step.
    fn node_line(&self, node: &str, what: &str) {
        let Some(multi) = &self.bars else { return };
        let mut nodes = self.nodes.lock().expect("progress lock");
        let line = nodes.entry(node.to_string()).or_insert_with(|| {
            let l = multi.add(ProgressBar::new_spinner());
            l.set_style(ProgressStyle::with_template("  {spinner} {prefix:<12} {elapsed:>4} {wide_msg}").expect("valid template"));
            l.set_prefix(node.to_string());
            l.enable_steady_tick(Duration::from_millis(120));
            l
        });
        line.set_message(what.to_string());
    }

    /// The per-node lines of a step that ended.
    fn clear_nodes(&self) {
        for (_, l) in std::mem::take(&mut *self.nodes.lock().expect("progress lock")) {
            l.finish_and_clear();
        }
    }

    pub fn observe(&self, e: &Event) {
        match e {
            Event::Begin { steps } => {
                self.bar.get_or_init(|| match &self.bars {
                    Some(multi) if *steps > 0 => Some(multi.add(bar(*steps, "steps", &self.what))),
                    _ => None,
                });
                self.line(&format!("{}: {steps} steps", self.what));
            }
            Event::Stage { id, name, undo } => {
                tracing::info!(stage = id.as_str(), undo, "{name}");
                self.with(|b| b.set_message(format!("{id} {name}")));
                self.line(&format!("{id}{} {name}", if *undo { " (undo)" } else { "" }));
            }
            Event::Step { stage, index, of, label } => {
                tracing::info!(stage = stage.as_str(), step = index + 1, of, "{label}");
                self.with(|b| b.set_message(format!("{stage} step {}/{of}: {label}", index + 1)));
                self.line(&format!("{stage} step {}/{of}: {label}", index + 1));
            }
            Event::Node { node, what } => {
                tracing::info!(node = node.as_str(), "{what}");
                self.node_line(node, what);
                self.line(&format!("  {node}: {what}"));
            }
            Event::StepDone { stage, index, ok } => {
                tracing::info!(stage = stage.as_str(), step = index + 1, ok, "step done");
                self.clear_nodes();
                self.with(|b| b.inc(1));
                if !ok {
                    self.line(&format!("{stage} step {} FAILED", index + 1));
                }
            }
            Event::Note { message } => {
                tracing::info!("{message}");
                // A note is for the person running kcert: above the bars, or on stderr.
                match (&self.bars, self.bar.get()) {
                    (Some(multi), Some(Some(_))) => {
                        let _ = multi.println(message);
                    }
                    _ => eprintln!("kcert: {message}"),
                }
            }
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.clear_nodes();
        self.with(|b| b.finish_and_clear());
    }
}
