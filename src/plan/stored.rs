//! Owns: a plan's saved form: every recipe text (a certificate, a bundle, a manifest, a
//! kubeconfig field) stored once in the plan's `texts` table by its sha256, and each recipe
//! naming it as `sha256:<hex>`; and the way back, every reference checked.
//! Must not: read or write files, or change what a plan says (the two forms are one plan).

use std::collections::BTreeMap;

use serde::Serialize;

use super::schema::{Plan, StepPlan};
use crate::pki::sha256;

const REF: &str = "sha256:";

/// The plan as saved: JSON (pretty), recipe texts stored once.
pub fn to_json(plan: &Plan) -> Vec<u8> {
    #[derive(Serialize)]
    struct Saved<'a> {
        #[serde(flatten)]
        plan: &'a Plan,
        texts: BTreeMap<String, String>,
    }
    let mut stored = plan.clone();
    let mut texts = BTreeMap::new();
    for_each_text(&mut stored, &mut |s: &mut String| {
        let sha = sha256(s.as_bytes());
        let text = std::mem::replace(s, format!("{REF}{sha}"));
        texts.entry(sha).or_insert(text);
        Ok(())
    })
    .expect("storing never fails");
    serde_json::to_vec_pretty(&Saved { plan: &stored, texts }).expect("plans serialize")
}

/// The `texts` table taken out of a saved plan's JSON, each entry checked against its sha256.
pub fn take_texts(v: &mut serde_json::Value) -> Result<BTreeMap<String, String>, String> {
    let table = match v.as_object_mut().and_then(|o| o.remove("texts")) {
        Some(serde_json::Value::Object(t)) => t,
        Some(_) => return Err("texts: not a table of texts by sha256".into()),
        None => return Err("texts: missing (every recipe's text is stored there)".into()),
    };
    let mut texts = BTreeMap::new();
    for (sha, text) in table {
        let serde_json::Value::String(text) = text else { return Err(format!("texts.{sha}: not a text")) };
        if sha256(text.as_bytes()) != sha {
            return Err(format!("texts.{sha}: its text's sha256 is {}", sha256(text.as_bytes())));
        }
        texts.insert(sha, text);
    }
    Ok(texts)
}

/// Every recipe's reference replaced by its text; refused, naming it, when one is not in the table.
pub fn expand(plan: &mut Plan, texts: &BTreeMap<String, String>) -> Result<(), String> {
    for_each_text(plan, &mut |s: &mut String| {
        let text = s.strip_prefix(REF).and_then(|sha| texts.get(sha)).ok_or_else(|| format!("a recipe names {s:?}, which is not in texts"))?;
        *s = text.clone();
        Ok(())
    })
}

fn for_each_text(plan: &mut Plan, f: &mut dyn FnMut(&mut String) -> Result<(), String>) -> Result<(), String> {
    for stage in &mut plan.stages {
        for step in &mut stage.steps {
            let StepPlan::Batch(b) = step else { continue };
            for op in b.ops.iter_mut().flat_map(|o| o.files.iter_mut()) {
                for s in op.recipe.texts_mut() {
                    f(s)?;
                }
            }
        }
    }
    Ok(())
}
