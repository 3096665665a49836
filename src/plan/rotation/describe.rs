//! Owns: how a rotation's file changes read to a reviewer: CAs added and removed by subject
//! and fingerprint, leaves re-signed with old and new issuer and expiry, kubeconfig fields,
//! manifest flags. Never any key bytes.
//! Must not: decide what changes, or do I/O.

use super::planner::Planner;
use crate::pki::cert::{CertInfo, parse_pem};
use crate::pki::find_issuer;
use crate::pki::kubeconfig;
use crate::pki::manifest::manifest_flags;
use crate::text::{prefix, rfc3339};

impl Planner<'_> {
    pub(super) fn ca_label(&self, c: &CertInfo) -> String {
        format!("{} [{}]", c.subject, prefix(&c.sha256, 8))
    }

    /// What changes in a file, for a reviewer: CAs added and removed, leaves re-signed,
    /// kubeconfig fields, manifest flags. Never any key bytes.
    pub(super) fn describe(&self, old: Option<&[u8]>, new: Option<&[u8]>, private: bool) -> Vec<String> {
        if private {
            let ca = self.rots.iter().find(|r| new.is_some_and(|n| n == r.key_pem.as_bytes())).map(|r| format!("the private key of {}", self.ca_label(&r.new_cert)));
            return vec![match new {
                None => "removed (a private key; its backup stays 0600 on the node)".to_string(),
                Some(_) => format!("{} (not shown; 0600)", ca.unwrap_or_else(|| "a private key".into())),
            }];
        }
        let (Some(o), Some(n)) = (old, new) else {
            return match (old, new) {
                (None, Some(n)) => certs_lines("+", n, self),
                (Some(_), None) => vec!["removed".into()],
                _ => Vec::new(),
            };
        };
        // Flags only of a text that is neither PEM nor a kubeconfig (asked first: parsing
        // every certificate file as a manifest would only fail).
        let is_kubeconfig = kubeconfig::looks_like_kubeconfig(o);
        if memchr::memmem::find(o, b"-----BEGIN").is_none()
            && !is_kubeconfig
            && let (Ok(before), Ok(after)) = (manifest_flags(&String::from_utf8_lossy(o)), manifest_flags(&String::from_utf8_lossy(n)))
            && !before.is_empty()
        {
            let lines: Vec<String> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, v)| format!("{k}: {} -> {v}", before.get(k).map(String::as_str).unwrap_or("(unset)"))).collect();
            if !lines.is_empty() {
                return lines;
            }
        }
        if is_kubeconfig {
            let (b, a) = (kubeconfig::parsed_kubeconfig(o), kubeconfig::parsed_kubeconfig(n));
            let (Ok(b), Ok(a)) = (&*b, &*a) else {
                return vec!["kubeconfig".into()];
            };
            let mut lines = Vec::new();
            for e in &a.embedded {
                let was = b.embedded.iter().find(|x| x.field.display() == e.field.display());
                if was.map(|w| &w.raw) == Some(&e.raw) {
                    continue;
                }
                let (Ok(newc), Some(Ok(oldc))) = (&e.content, was.map(|w| &w.content)) else {
                    continue;
                };
                for l in cert_diff(&oldc.certs, &newc.certs, self) {
                    lines.push(format!("{}: {l}", e.field.display()));
                }
            }
            return lines;
        }
        if let Some(lines) = self.resigned(o, n) {
            // Every test that plans a rotation holds the shortcut to what parsing tells.
            debug_assert_eq!(Some(&lines), parse_pem(o).ok().zip(parse_pem(n).ok()).map(|(a, b)| cert_diff(&a.certs, &b.certs, self)).as_ref());
            return lines;
        }
        match (parse_pem(o), parse_pem(n)) {
            (Ok(a), Ok(b)) => cert_diff(&a.certs, &b.certs, self),
            _ => vec!["changed".into()],
        }
    }

    /// `cert_diff`'s lines for a text whose leaf this plan re-signed, told from the plan's own
    /// record of it (`ours`) and the old text's certificates, without parsing the new leaf;
    /// `None` when the new text holds a certificate neither text nor rotation names.
    fn resigned(&self, o: &[u8], n: &[u8]) -> Option<Vec<String>> {
        let shas = crate::pki::edit::cert_shas(n).ok()?;
        let signed = self.ours.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(shas.first()?).cloned()?;
        let old = parse_pem(o).ok()?;
        let a = old.certs.first().filter(|a| !a.is_ca && a.subject == signed.subject)?;
        let known = |sha: &String| old.certs[1..].iter().chain(self.rots.iter().flat_map(|r| [&r.old.cert, &r.new_cert])).find(|c| &c.sha256 == sha);
        let chain: Vec<&CertInfo> = shas[1..].iter().map(known).collect::<Option<_>>()?;
        let mut lines = vec![format!(
            "re-signed {}: issuer {} -> {}, expires {} -> {}",
            a.subject,
            issuer_label(a, self),
            self.ca_label(&self.rots[signed.ri].new_cert),
            rfc3339(a.not_after),
            rfc3339(signed.not_after)
        )];
        lines.extend(old.certs[1..].iter().filter(|c| !chain.iter().any(|x| x.sha256 == c.sha256)).map(|c| format!("- {}", self.ca_label(c))));
        lines.extend(chain.iter().filter(|c| !old.certs[1..].iter().any(|x| x.sha256 == c.sha256)).map(|c| format!("+ {}", self.ca_label(c))));
        Some(lines)
    }
}

fn certs_lines(sign: &str, bytes: &[u8], p: &Planner<'_>) -> Vec<String> {
    match parse_pem(bytes) {
        Ok(c) if !c.certs.is_empty() => c.certs.iter().map(|c| format!("{sign} {}", p.ca_label(c))).collect(),
        _ => vec![format!("{sign} {} bytes", bytes.len())],
    }
}

/// Certificates added, removed and kept; a leaf re-signed reads as one line.
fn cert_diff(old: &[CertInfo], new: &[CertInfo], p: &Planner<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    if let (Some(a), Some(b)) = (old.first(), new.first())
        && !a.is_ca
        && !b.is_ca
        && a.subject == b.subject
        && a.sha256 != b.sha256
    {
        lines.push(format!(
            "re-signed {}: issuer {} -> {}, expires {} -> {}",
            a.subject,
            issuer_label(a, p),
            issuer_label(b, p),
            rfc3339(a.not_after),
            rfc3339(b.not_after)
        ));
        let (o, n): (Vec<&CertInfo>, Vec<&CertInfo>) = (old[1..].iter().collect(), new[1..].iter().collect());
        for c in &o {
            if !n.iter().any(|x| x.sha256 == c.sha256) {
                lines.push(format!("- {}", p.ca_label(c)));
            }
        }
        for c in &n {
            if !o.iter().any(|x| x.sha256 == c.sha256) {
                lines.push(format!("+ {}", p.ca_label(c)));
            }
        }
        return lines;
    }
    for c in old {
        if !new.iter().any(|x| x.sha256 == c.sha256) {
            lines.push(format!("- {}", p.ca_label(c)));
        }
    }
    for c in new {
        if !old.iter().any(|x| x.sha256 == c.sha256) {
            lines.push(format!("+ {}", p.ca_label(c)));
        } else {
            lines.push(format!("= {}", p.ca_label(c)));
        }
    }
    lines
}

fn issuer_label(c: &CertInfo, p: &Planner<'_>) -> String {
    if let Some(ri) = p.ours.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&c.sha256).map(|s| s.ri) {
        return p.ca_label(&p.rots[ri].new_cert);
    }
    let known: Vec<&CertInfo> = p.rots.iter().flat_map(|r| [&r.old.cert, &r.new_cert]).collect();
    match find_issuer(c, &known) {
        Some(ca) => p.ca_label(ca),
        None => format!("{} (self-signed or unknown)", c.issuer),
    }
}
