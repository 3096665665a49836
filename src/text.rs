//! Owns: small text helpers every layer uses: dates, byte counts, short digests, URL hosts,
//! shell quoting.
//! Must not: import anything of kcert's own; it is the bottom of the tree.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A Unix time as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn rfc3339(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_else(|| ts.to_string())
}

/// The date as `kubeadm certs check-expiration` prints it: `Nov 14, 2023 22:13 UTC`.
pub fn kubeadm_date(ts: i64) -> String {
    let fmt = time::macros::format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    OffsetDateTime::from_unix_timestamp(ts).ok().and_then(|t| t.format(&fmt).ok()).unwrap_or_else(|| ts.to_string())
}

/// Bytes as `df -h` reads them: `512 B`, `64.0 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

/// The first `n` characters of a digest, or all of it when shorter (never a panic).
pub fn prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A sha256 for a person: its first 12 hex digits, or `(absent)` for a file that is not there.
pub fn short_sha(sha: Option<&str>) -> String {
    match sha {
        Some(s) if !s.is_empty() => prefix(s, 12).to_string(),
        _ => "(absent)".into(),
    }
}

/// The host and port of `https://10.0.0.1:6443`, `https://[::1]:2379` or `api.example`
/// (brackets of IPv6 literals removed; `default_port` when none is written).
pub fn url_host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6.split_once(']')?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((h.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(port) => Some((h.to_string(), port)),
            // Not a port: the whole thing is the host (`unix://local:x` is no URL kcert dials).
            Err(_) => Some((hostport.to_string(), default_port)),
        },
        None => Some((hostport.to_string(), default_port)),
    }
}

/// The host of a URL (see `url_host_port`); empty when there is none.
pub fn url_host(url: &str) -> String {
    url_host_port(url, 0).map(|(h, _)| h).unwrap_or_default()
}

/// A word for a POSIX shell: single-quoted, with embedded quotes escaped.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `n what` with an `s` when n is not 1.
pub fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc_or_kubeadm_like() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(kubeadm_date(1_700_000_000), "Nov 14, 2023 22:13 UTC");
    }

    #[test]
    fn bytes_read_like_df_h() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64.0 MiB");
    }

    #[test]
    fn short_digests_never_panic() {
        assert_eq!(short_sha(Some("0123456789abcdef")), "0123456789ab");
        assert_eq!(short_sha(Some("abc")), "abc");
        assert_eq!(short_sha(Some("")), "(absent)");
        assert_eq!(short_sha(None), "(absent)");
        assert_eq!(prefix("é1", 1), "é");
    }

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(url_host_port("https://10.0.0.1:6443", 1), Some(("10.0.0.1".into(), 6443)));
        assert_eq!(url_host_port("https://[::1]:2379", 1), Some(("::1".into(), 2379)));
        assert_eq!(url_host_port("https://[::1]", 443), Some(("::1".into(), 443)));
        assert_eq!(url_host_port("https://api.example", 443), Some(("api.example".into(), 443)));
        assert_eq!(url_host("https://10.0.0.1:2379/x"), "10.0.0.1");
        assert_eq!(url_host("unix://local"), "local");
    }

    #[test]
    fn shell_words_survive_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
