//! Owns: a plan's saved form: gzip-compressed JSON in which every recipe text (a certificate,
//! a bundle, a manifest, a kubeconfig field) is stored once in the plan's `texts` table by its
//! sha256, each recipe naming it as `sha256:<hex>`; and the way back, every reference checked.
//! Must not: read or write files, or change what a plan says (the two forms are one plan).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Serialize, Serializer};

use super::schema::{Plan, StepPlan, Text};
use crate::pki::sha256;

const REF: &str = "sha256:";

/// The plan as saved: gzip (level 6, no name, no time: the same plan gives the same bytes)
/// of its JSON. Certificates and JSON layout compress about tenfold: a 5,000-node rotation's
/// 60 MB of JSON is about 5 MB saved. `gzip -dc PLAN | jq` reads it; `apply` takes either form.
pub fn to_bytes(plan: &Plan) -> Vec<u8> {
    write_to(plan, Vec::new()).expect("compressing into memory never fails")
}

/// `to_bytes`' bytes written into `out` as they are made (a file: a 5,000-node plan is never
/// whole in memory), then `out` back; an error is `out`'s (a full disk).
pub fn write_to<W: Write>(plan: &Plan, out: W) -> std::io::Result<W> {
    let mut gz = std::io::BufWriter::with_capacity(1 << 16, GzEncoder::new(out, Compression::new(6)));
    write_json(plan, &mut gz)?;
    gz.into_inner().map_err(std::io::IntoInnerError::into_error)?.finish()
}

/// The plan as JSON (pretty), recipe texts stored once: what `to_bytes` compresses.
pub fn to_json(plan: &Plan) -> Vec<u8> {
    let mut out = Vec::new();
    write_json(plan, &mut out).expect("writing into memory never fails");
    out
}

/// True when `bytes` are gzip (its two magic bytes), i.e. a plan as `to_bytes` saves it.
fn is_compressed(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// A saved plan's JSON: `bytes` as they are, or decompressed when gzip; refused past `limit`
/// bytes of JSON (a compressed file is no way around the size a plan can have).
pub fn json_of(bytes: &[u8], limit: u64) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    if !is_compressed(bytes) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    GzDecoder::new(bytes).take(limit + 1).read_to_end(&mut out).map_err(|e| format!("its gzip stream is damaged: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("more than {limit} bytes of JSON once decompressed: too large to be a kcert plan"));
    }
    Ok(std::borrow::Cow::Owned(out))
}

thread_local! {
    /// While `write_json` runs on this thread: every recipe text it has met, by sha256.
    static STORING: RefCell<Option<BTreeMap<String, Text>>> = const { RefCell::new(None) };
}

/// The plan's JSON with every recipe text written as `sha256:<hex>` and stored once in
/// `texts`, serialized straight from `plan` (no copy of it: at 5,000 nodes a copy was 46 MB).
fn write_json(plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    /// The table `plan`'s texts went into: serialized after them (serde keeps field order).
    struct Table;
    impl Serialize for Table {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            STORING.with(|t| t.borrow_mut().take()).unwrap_or_default().serialize(s)
        }
    }
    #[derive(Serialize)]
    struct Saved<'a> {
        #[serde(flatten)]
        plan: &'a Plan,
        texts: Table,
    }
    /// Ends the storing however serializing ends (a panic unwinding included), so a plan
    /// serialized later on this thread writes its texts, not references.
    struct Storing;
    impl Drop for Storing {
        fn drop(&mut self) {
            STORING.with(|t| *t.borrow_mut() = None);
        }
    }
    STORING.with(|t| *t.borrow_mut() = Some(BTreeMap::new()));
    let _storing = Storing;
    // A plan always serializes: an error here is `out`'s.
    serde_json::to_writer_pretty(out, &Saved { plan, texts: Table }).map_err(std::io::Error::from)
}

/// How a recipe's text serializes: as itself, or while `write_json` runs, as its reference,
/// the text stored in the table.
pub(super) fn text<S: Serializer>(t: &Text, s: S) -> Result<S::Ok, S::Error> {
    let reference = STORING.with(|table| {
        let mut table = table.borrow_mut();
        let table = table.as_mut()?;
        let sha = sha256(t.as_bytes());
        let reference = format!("{REF}{sha}");
        table.entry(sha).or_insert_with(|| t.clone());
        Some(reference)
    });
    s.serialize_str(reference.as_deref().unwrap_or(t))
}

/// `text` for each of a list.
pub(super) fn texts<S: Serializer>(ts: &[Text], s: S) -> Result<S::Ok, S::Error> {
    struct One<'a>(&'a Text);
    impl Serialize for One<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            text(self.0, s)
        }
    }
    s.collect_seq(ts.iter().map(One))
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
    // One shared copy per distinct text, as the planners hold them.
    let shared: BTreeMap<&str, Text> = texts.iter().map(|(sha, t)| (sha.as_str(), Text::from(t.as_str()))).collect();
    for_each_text(plan, &mut |s: &mut Text| {
        let text = s.strip_prefix(REF).and_then(|sha| shared.get(sha)).ok_or_else(|| format!("a recipe names {s:?}, which is not in texts"))?;
        *s = text.clone();
        Ok(())
    })
}

fn for_each_text(plan: &mut Plan, f: &mut dyn FnMut(&mut Text) -> Result<(), String>) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn json_is_taken_as_it_is_or_decompressed_within_the_limit() {
        assert_eq!(json_of(b"{\"a\":1}", 4).unwrap().as_ref(), b"{\"a\":1}", "plain JSON is not held to the compressed limit");
        let text = vec![b' '; 10_000];
        assert_eq!(json_of(&gzip(&text), 10_000).unwrap().as_ref(), text.as_slice());
        // A small file that inflates past the limit is refused, not inflated whole.
        let err = json_of(&gzip(&text), 9_999).unwrap_err();
        assert!(err.contains("more than 9999 bytes of JSON"), "{err}");
        let err = json_of(&[0x1f, 0x8b, 8, 0, 0], 100).unwrap_err();
        assert!(err.contains("gzip stream is damaged"), "{err}");
    }
}
