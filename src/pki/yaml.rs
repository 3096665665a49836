//! Owns: the one set of limits every YAML text kcert reads is parsed under (inventories,
//! playbooks, kubeconfigs, static pod manifests, kubelet and etcd configs), so an alias bomb,
//! deep nesting or a huge scalar is refused fast, with bounded memory, wherever it comes in.
//! Must not: do I/O, or know what the YAML means (the callers' types do).

use serde::Deserialize;

/// The largest YAML text kcert parses. What it reads is at most 1 MiB (a node's file, an
/// inventory, a playbook); the margin only refuses what no configuration is, before a byte
/// of it is scanned.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// How deep mappings and sequences may nest. kcert's deepest real input (a static pod
/// manifest's probes and volumes) nests under ten levels.
pub const MAX_DEPTH: usize = 32;

/// Anchors and aliases: hand-written inventories and playbooks may share a few blocks with
/// `&name`/`*name`/`<<:`; no real file needs more than this, and an alias bomb needs far more.
pub const MAX_ALIASES: usize = 1_000;

/// Events replayed from aliases, in all: what bounds an alias bomb's work and memory.
pub const MAX_REPLAYED_EVENTS: usize = 100_000;

/// Scalar bytes in all, aliases' replays included: a real file's scalars are less than the
/// file itself (at most 1 MiB), so aliases cannot blow a small text up past this.
pub const MAX_SCALAR_BYTES: usize = 8 * 1024 * 1024;

/// The options every YAML parse in kcert uses.
pub fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_anchors = MAX_ALIASES;
    budget.max_aliases = MAX_ALIASES;
    budget.max_merge_keys = MAX_ALIASES;
    budget.max_documents = 16;
    budget.max_events = 1_000_000;
    budget.max_nodes = 500_000;
    budget.max_total_scalar_bytes = MAX_SCALAR_BYTES;
    budget.max_recorded_anchor_events = MAX_REPLAYED_EVENTS;
    budget.max_recorded_anchor_bytes = MAX_SCALAR_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    options.alias_limits.max_replay_stack_depth = MAX_DEPTH;
    options
}

/// Parses one YAML document under [`options`]; a text over [`MAX_BYTES`] is refused unread.
pub fn from_str<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, serde_saphyr::Error> {
    if text.len() > MAX_BYTES {
        return Err(serde::de::Error::custom(format!("{} bytes of YAML: too large (kcert reads at most {MAX_BYTES})", text.len())));
    }
    serde_saphyr::from_str_with_options(text, options()).map_err(plain)
}

/// An error's place (line, column; 0 when it has none) and its message without the place:
/// serde-saphyr writes it before the message (`line L column C: what`) or after it (`what at
/// line L, column C`), and follows both with a snippet; callers say the place as file:line:col.
pub fn said(e: &serde_saphyr::Error) -> (u64, u64, String) {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let first = e.to_string().lines().next().unwrap_or("").trim().trim_start_matches("error: ").to_string();
    let first = first.strip_prefix(&format!("line {line} column {column}: ")).unwrap_or(&first);
    let message = first.strip_suffix(&format!(" at line {line}, column {column}")).unwrap_or(first);
    (line, column, message.to_string())
}

/// A limit's breach said in words, where it was (serde-saphyr names it by its Rust name).
fn plain(e: serde_saphyr::Error) -> serde_saphyr::Error {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut inner = &e;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = inner {
        inner = error;
    }
    let aliases = "YAML aliases expand past what any configuration needs (an alias bomb?): refused";
    let deep = format!("YAML nested deeper than {MAX_DEPTH} levels: refused");
    let (msg, location) = match inner {
        E::Budget { breach, location } => {
            let msg = match breach {
                B::Depth { .. } => deep,
                B::ScalarBytes { .. } => format!("YAML values of more than {MAX_SCALAR_BYTES} bytes in all: refused"),
                B::Aliases { .. } | B::Anchors { .. } | B::AliasAnchorRatio { .. } | B::RecordedAnchorEvents { .. } | B::RecordedAnchorBytes { .. } | B::MergeKeys { .. } => aliases.to_string(),
                other => format!("YAML too large to read ({other:?}): refused"),
            };
            (msg, *location)
        }
        E::AliasReplayLimitExceeded { location, .. } | E::AliasExpansionLimitExceeded { location, .. } | E::AliasReplayStackDepthExceeded { location, .. } => (aliases.to_string(), *location),
        i if i.to_string().contains("recursion limit exceeded") => (deep, i.location().unwrap_or(serde_saphyr::Location::UNKNOWN)),
        // Said without serde-saphyr's advice to its caller (a setting of its Options): not the user's to take.
        E::DuplicateMappingKey { key, location } => (key.as_ref().map_or_else(|| "duplicate mapping key".to_string(), |k| format!("duplicate mapping key: {k}")), *location),
        _ => return e,
    };
    E::Message { msg, location }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn refused(text: &str) -> String {
        let t = Instant::now();
        let r: Result<serde_json::Value, _> = from_str(text);
        assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
        r.expect_err("hostile YAML must be refused").to_string()
    }

    #[test]
    fn a_duplicate_key_is_named_without_the_parser_s_advice_to_its_caller() {
        let e = refused("nodes:\n  - name: a\n    name: b\n");
        assert!(e.contains("duplicate mapping key: name") && !e.contains("DuplicateKeyPolicy") && !e.contains("Options"), "{e}");
        // Said once, with its place apart, whichever side serde-saphyr writes the place on.
        let r: Result<serde_json::Value, _> = from_str("nodes:\n  - name: a\n    name: b\n");
        assert_eq!(said(&r.unwrap_err()), (3, 5, "duplicate mapping key: name".to_string()));
        let r: Result<serde_json::Value, _> = from_str("a: [1,\n");
        let (line, _, message) = said(&r.unwrap_err());
        assert!(line > 0 && !message.contains("line") && !message.is_empty(), "{message}");
    }

    #[test]
    fn real_shapes_still_parse() {
        let v: serde_json::Value = from_str("base: &b {user: ops, port: 22}\nnodes:\n  - <<: *b\n    name: a\n  - <<: *b\n    name: b\n").unwrap();
        assert_eq!(v["nodes"][1]["port"], 22);
    }

    #[test]
    fn a_billion_laughs_is_refused() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 10].join(", ")));
        }
        let e = refused(&text);
        assert!(e.contains("alias bomb"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let e = refused(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)));
        assert!(e.contains("nested deeper than 32 levels"), "{e}");
        let e = refused(&format!("k:\n{}x\n", "- ".repeat(10_000)));
        assert!(e.contains("nested deeper than 32 levels"), "{e}");
    }

    #[test]
    fn a_huge_scalar_is_refused_unread() {
        let e = refused(&format!("k: {}\n", "x".repeat(50 << 20)));
        assert!(e.contains("too large"), "{e}");
        // Under the text limit, over the scalars' one: aliases replaying a big scalar.
        let big = "y".repeat(3 << 20);
        let e = refused(&format!("a: &a {big}\nb: [*a, *a, *a]\n"));
        assert!(e.contains("values of more than") || e.contains("alias bomb"), "{e}");
    }
}
