//! Owns: a file op's recipe, how its new bytes are made from the old ones on the node (the
//! public texts it carries, shared and stored once), and the planners' store of those texts.
//! Must not: carry a private key (keys come from the run's key store), or do I/O.

use serde::{Deserialize, Serialize};

use super::schema::FileOp;
use crate::pki::edit;

/// A public text a recipe carries (a certificate, a bundle, a manifest). Shared: the planners
/// keep one copy of each distinct text (`Texts`), as a saved plan stores each once.
pub type Text = std::sync::Arc<str>;

/// The planners' store of distinct texts: one `Text` per content, however many ops carry it.
#[derive(Default)]
pub struct Texts(std::sync::Mutex<foldhash::HashSet<Text>>);

impl Texts {
    /// The stored copy of `t` (stored first when new).
    pub fn intern(&self, t: &Text) -> Text {
        let mut set = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match set.get(t) {
            Some(have) => have.clone(),
            None => {
                set.insert(t.clone());
                t.clone()
            }
        }
    }

    /// Every text of `ops`' recipes replaced by its stored copy.
    pub fn intern_ops(&self, ops: &mut [FileOp]) {
        for op in ops {
            for t in op.recipe.texts_mut() {
                *t = self.intern(t);
            }
        }
    }
}

/// How the new bytes are made from the old ones on the node. Never carries a private key:
/// files holding one are rebuilt from their old bytes (key blocks kept) or from the run's key store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Recipe {
    /// The whole new content (certificates, bundles, manifests: public).
    Text {
        #[serde(serialize_with = "super::stored::text")]
        text: Text,
    },
    /// The file's certificate blocks become these; every other block (a key) stays as it was.
    Certs {
        #[serde(serialize_with = "super::stored::texts")]
        certs: Vec<Text>,
    },
    /// These kubeconfig `*-data` fields become these PEM texts; every other byte stays.
    Kubeconfig { fields: Vec<KubeconfigField> },
    /// The new private key of this CA (a playbook file name), from the run's key store; in a
    /// file that holds the CA's certificate too, that file's certificates become `certs` and
    /// its key block the new key.
    CaKey {
        ca: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty", serialize_with = "super::stored::texts")]
        certs: Vec<Text>,
    },
    /// The old private key of this CA, kept under another name for its other use (a binary
    /// cluster's service-account key that was the CA key), from the run's key store.
    OldCaKey { ca: String },
    /// Every join token in the file pinning the CA hash `from` (`K10<from>::`) pins `to`
    /// instead; every other byte (the token's secret among them) stays, and is never carried.
    JoinToken { from: String, to: String },
    Remove,
}

/// The run's key store name of a CA's old key (kept only where the plan copies it: its other
/// use, the service-account key, keeps working after the CA key changes).
pub fn old_key_id(ca: &str) -> String {
    format!("{ca}.old")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeconfigField {
    pub field: String,
    #[serde(serialize_with = "super::stored::text")]
    pub pem: Text,
}

impl Recipe {
    /// The new bytes (None: the file is removed), given the old ones and the new CA keys.
    pub fn apply(&self, old: Option<&[u8]>, key_of: &dyn Fn(&str) -> Option<String>) -> Result<Option<Vec<u8>>, String> {
        let old_bytes = || old.ok_or_else(|| "the file is missing".to_string());
        Ok(match self {
            Recipe::Text { text } => Some(text.as_bytes().to_vec()),
            Recipe::Certs { certs } => Some(edit::set_certs(old_bytes()?, certs)?),
            Recipe::Kubeconfig { fields } => {
                let mut b = old_bytes()?.to_vec();
                for f in fields {
                    b = edit::edit_kubeconfig(&b, &f.field, |_| Ok(f.pem.as_bytes().to_vec())).map_err(|e| format!("{}: {e}", f.field))?;
                }
                Some(b)
            }
            Recipe::CaKey { ca, certs } => {
                let key = key_of(ca).ok_or_else(|| format!("the new key of CA {ca} is not in the run's key store"))?;
                if certs.is_empty() { Some(key.into_bytes()) } else { Some(edit::set_key(&edit::set_certs(old_bytes()?, certs)?, &key)?) }
            }
            Recipe::OldCaKey { ca } => Some(key_of(&old_key_id(ca)).ok_or_else(|| format!("the old key of CA {ca} is not in the run's key store"))?.into_bytes()),
            Recipe::JoinToken { from, to } => Some(crate::pki::k3s::rehash_tokens(old_bytes()?, from, to)?),
            Recipe::Remove => None,
        })
    }

    /// Every text the recipe carries, to be stored once in a saved plan (`stored`).
    pub fn texts_mut(&mut self) -> Vec<&mut Text> {
        match self {
            Recipe::Text { text } => vec![text],
            Recipe::Certs { certs } | Recipe::CaKey { certs, .. } => certs.iter_mut().collect(),
            Recipe::Kubeconfig { fields } => fields.iter_mut().map(|f| &mut f.pem).collect(),
            Recipe::OldCaKey { .. } | Recipe::JoinToken { .. } | Recipe::Remove => Vec::new(),
        }
    }

    /// The public text the recipe carries (what must never hold a key).
    pub fn carried_text(&self) -> String {
        match self {
            Recipe::Text { text } => text.to_string(),
            Recipe::Certs { certs } | Recipe::CaKey { certs, .. } => certs.iter().map(|c| &**c).collect(),
            Recipe::Kubeconfig { fields } => fields.iter().map(|f| &*f.pem).collect(),
            Recipe::OldCaKey { .. } | Recipe::JoinToken { .. } | Recipe::Remove => String::new(),
        }
    }
}
