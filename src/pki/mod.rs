//! Owns: everything kcert knows about certificates as data: PEM, X.509 fields, digests,
//! kubeconfig embedded data, static pod manifest and systemd unit flags, byte-level edits,
//! signing, which CA signed which cert, and the limits every YAML text is parsed under.
//! Must not: do I/O of any kind; callers hand it bytes.

pub mod cert;
pub mod edit;
pub mod k3s;
pub mod kubeconfig;
pub mod manifest;
pub mod memo;
pub mod sign;
pub mod unit;
pub mod yaml;

pub use cert::{CertInfo, PemContent, PkiError, find_issuer, first_cert, parse_pem, sha256};
