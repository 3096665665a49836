//! Owns: a plan's saved form: every recipe text (a certificate, a bundle, a manifest, a
//! kubeconfig field) stored once in the plan's `texts` table by its sha256, and each recipe
//! naming it as `sha256:<hex>`; and the way back, every reference checked.
//! Must not: read or write files, or change what a plan says (the two forms are one plan).

use std::collections::BTreeMap;

use serde_json::Value;

use super::schema::Plan;
use crate::pki::sha256;

const REF: &str = "sha256:";

/// The plan as saved: JSON (pretty), recipe texts stored once.
pub fn to_json(plan: &Plan) -> Vec<u8> {
    let mut v = serde_json::to_value(plan).expect("plans serialize");
    let mut texts = BTreeMap::new();
    walk_recipes(&mut v, &mut |s: &mut String| {
        let sha = sha256(s.as_bytes());
        let text = std::mem::replace(s, format!("{REF}{sha}"));
        texts.entry(sha).or_insert(text);
        Ok(())
    })
    .expect("storing never fails");
    if let Value::Object(o) = &mut v {
        o.insert("texts".into(), Value::Object(texts.into_iter().map(|(k, t)| (k, Value::String(t))).collect()));
    }
    serde_json::to_vec_pretty(&v).expect("plans serialize")
}

/// The saved form back to the plan's own: every reference replaced by its text. Refused,
/// naming it, when a reference is not in the table or a text is not what its sha256 says.
pub fn expand(v: &mut Value) -> Result<(), String> {
    let table = match v.as_object_mut().and_then(|o| o.remove("texts")) {
        Some(Value::Object(t)) => t,
        Some(_) => return Err("texts: not a table of texts by sha256".into()),
        None => return Err("texts: missing (every recipe's text is stored there)".into()),
    };
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for (sha, text) in table {
        let Value::String(text) = text else { return Err(format!("texts.{sha}: not a text")) };
        if sha256(text.as_bytes()) != sha {
            return Err(format!("texts.{sha}: its text's sha256 is {}", sha256(text.as_bytes())));
        }
        texts.insert(sha, text);
    }
    walk_recipes(v, &mut |s: &mut String| {
        let text = s.strip_prefix(REF).and_then(|sha| texts.get(sha)).ok_or_else(|| format!("a recipe names {s:?}, which is not in texts"))?;
        *s = text.clone();
        Ok(())
    })
}

/// Calls `f` on every text of every recipe (`text`, `certs[]`, `fields[].pem`).
fn walk_recipes(v: &mut Value, f: &mut dyn FnMut(&mut String) -> Result<(), String>) -> Result<(), String> {
    match v {
        Value::Object(o) => {
            if let Some(Value::Object(recipe)) = o.get_mut("recipe") {
                if let Some(Value::String(s)) = recipe.get_mut("text") {
                    f(s)?;
                }
                for c in recipe.get_mut("certs").and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Value::String(s) = c {
                        f(s)?;
                    }
                }
                for field in recipe.get_mut("fields").and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(Value::String(s)) = field.get_mut("pem") {
                        f(s)?;
                    }
                }
            }
            for (k, x) in o.iter_mut() {
                if k != "recipe" {
                    walk_recipes(x, f)?;
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                walk_recipes(x, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}
