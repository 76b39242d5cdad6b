//! Where this server's own outbound requests may go (PROTOCOL.md §12.8,
//! SSRF): webhook deliveries (§6.2) and the LLM proxy's upstream. `https` to
//! a public host; `http` only to `localhost`/`127.0.0.0/8` and only when a
//! development variable allows loopback. Refused: loopback, RFC 1918,
//! link-local (cloud metadata), CGNAT, unspecified, multicast and reserved
//! IPv4; IPv6 loopback, unique-local, link-local and mapped IPv4;
//! `localhost`, `.local` and `.internal` names and single labels; URLs with
//! credentials. Hosts are checked as the WHATWG parser normalizes them
//! (`http://0x7f.1` is 127.0.0.1). A name that resolves to a private
//! address is not caught here: Workers cannot resolve names, and their
//! outbound fetches reach only the public internet.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The longest URL accepted.
pub const MAX_URL: usize = 2_048;

/// Checks `raw` (named `field` in the reasons); `loopback_var` names the
/// development variable that allows loopback, `allow_loopback` its value.
pub fn check(
    raw: &str,
    field: &str,
    loopback_var: &str,
    allow_loopback: bool,
) -> Result<url::Url, String> {
    let no = |why: &str| Err(format!("{field} {why}"));
    if raw.len() > MAX_URL {
        return no("is too long");
    }
    let Ok(url) = url::Url::parse(raw) else {
        return no("must be an absolute URL");
    };
    if !url.username().is_empty() || url.password().is_some() {
        return no("must not carry credentials");
    }
    const PRIVATE: &str = "must not target private, link-local or reserved addresses";
    let loopback = match url.host() {
        None => return no("needs a host"),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                true
            } else if d.ends_with(".local") || d.ends_with(".internal") || !d.contains('.') {
                return no("must name a public host");
            } else {
                false
            }
        }
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => true,
        Some(url::Host::Ipv4(ip)) if private_v4(ip) => return no(PRIVATE),
        Some(url::Host::Ipv4(_)) => false,
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => true,
        Some(url::Host::Ipv6(ip)) if private_v6(ip) => return no(PRIVATE),
        Some(url::Host::Ipv6(_)) => false,
    };
    match (url.scheme(), loopback) {
        (_, true) if !allow_loopback => no(&format!(
            "must not target loopback (allowed only with {loopback_var}=1)"
        )),
        ("http", true) | ("https", _) => Ok(url),
        _ => no("must use https"),
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

fn private_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let first = s.first().copied().unwrap_or(0);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4.is_loopback() || private_v4(v4);
    }
    ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && s.get(1) == Some(&0x0db8)
        || (first == 0x64 && s.get(1) == Some(&0xff9b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_webhook_url(u: &str, dev: bool) -> Result<url::Url, String> {
        check(u, "webhook.url", "SUBSCRIPTION_DEV_LOOPBACK", dev)
    }

    #[test]
    fn outbound_urls_refuse_local_targets() {
        let ok = |u: &str, dev| check_webhook_url(u, dev).is_ok();
        assert!(ok("https://hooks.example.com/x", false));
        assert!(ok("https://93.184.216.34/x", false));
        assert!(!ok("http://hooks.example.com/x", false));
        assert!(!ok("ftp://hooks.example.com/x", false));
        for u in [
            "https://10.0.0.1/",
            "https://172.16.3.4/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://metadata.google.internal/",
            "https://intranet/",
            "https://user:pw@hooks.example.com/",
        ] {
            assert!(!ok(u, true), "{u}");
        }
        for u in [
            "http://127.0.0.1:9/h",
            "http://localhost/h",
            "http://0x7f.1/h",
            "http://[::1]/",
        ] {
            assert!(!ok(u, false), "{u}");
            assert!(ok(u, true), "{u}");
        }
    }

    #[test]
    fn reasons_name_the_field_and_the_variable() {
        let e = check(
            "http://127.0.0.1/",
            "PROXY_UPSTREAM_URL",
            "PROXY_DEV_LOOPBACK",
            false,
        )
        .unwrap_err();
        assert!(
            e.starts_with("PROXY_UPSTREAM_URL must not target loopback"),
            "{e}"
        );
        assert!(e.contains("PROXY_DEV_LOOPBACK=1"), "{e}");
    }
}
