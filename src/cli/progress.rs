//! Owns: what a person sees while kcert works: a bar of nodes for reports, a bar of steps for
//! runs with what each node is doing, on a terminal only (never with NO_COLOR); logs through
//! tracing either way.
//! Must not: print results (render does) or decide anything.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

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

/// A bar of steps while a run goes on (sized when the run says how many it has).
pub struct Steps {
    what: String,
    bar: OnceLock<Option<ProgressBar>>,
}

impl Steps {
    pub fn new(what: &str) -> Steps {
        Steps { what: what.to_string(), bar: OnceLock::new() }
    }

    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(Some(b)) = self.bar.get() {
            f(b);
        }
    }

    pub fn observe(&self, e: &Event) {
        match e {
            Event::Begin { steps } => {
                self.bar.get_or_init(|| (shown() && *steps > 0).then(|| bar(*steps, "steps", &self.what)));
            }
            Event::Stage { id, name, undo } => {
                tracing::info!(stage = id.as_str(), undo, "{name}");
                self.with(|b| b.set_message(format!("{id} {name}")));
            }
            Event::Step { stage, index, of, label } => {
                tracing::info!(stage = stage.as_str(), step = index + 1, of, "{label}");
                self.with(|b| b.set_message(format!("{stage} step {}/{of}: {label}", index + 1)));
            }
            Event::Node { node, what } => {
                tracing::info!(node = node.as_str(), "{what}");
                self.with(|b| b.set_message(format!("{node}: {what}")));
            }
            Event::StepDone { stage, index, ok } => {
                tracing::info!(stage = stage.as_str(), step = index + 1, ok, "step done");
                self.with(|b| b.inc(1));
            }
            Event::Note { message } => {
                tracing::info!("{message}");
                // A note is for the person running kcert: above the bars, or on stderr.
                match self.bar.get() {
                    Some(Some(b)) => b.println(message),
                    _ => eprintln!("kcert: {message}"),
                }
            }
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.with(|b| b.finish_and_clear());
    }
}
