//! Stream path globs (PROTOCOL.md §6 semantics), shared by access-token
//! scopes (§12.1), `PUBLIC_READ` and subscription patterns: `*` matches one
//! segment, `**` zero or more, other segments match literally.

/// A stream path glob (§6 semantics): `*` matches one segment, `**` zero or
/// more; other segments match literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<String>);

impl Glob {
    pub fn parse(pattern: &str) -> Option<Glob> {
        let segments: Vec<String> = pattern.split('/').map(str::to_string).collect();
        if pattern.is_empty() || segments.iter().any(String::is_empty) {
            return None;
        }
        Some(Glob(segments))
    }

    /// Whether the canonical stream name `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        glob_match(&self.0, &parts, |seg, part| seg == "*" || seg == part)
    }

    /// Whether every path `other` matches is matched by `self` too (a
    /// token's `read:events/**` covers a subscription's `events/*`, not the
    /// reverse): `other`'s wildcards are matched only by wildcards at least
    /// as wide.
    pub fn covers(&self, other: &Glob) -> bool {
        let parts: Vec<&str> = other.0.iter().map(String::as_str).collect();
        glob_match(&self.0, &parts, |seg, part| match part {
            "**" => false,
            "*" => seg == "*",
            _ => seg == "*" || seg == part,
        })
    }

    /// The pattern as written.
    pub fn text(&self) -> String {
        self.0.join("/")
    }
}

/// Iterative glob matching with backtracking on the last `**` (linear in
/// practice, never exponential).
fn glob_match(pattern: &[String], parts: &[&str], one: impl Fn(&str, &str) -> bool) -> bool {
    let (mut p, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        match pattern.get(p).map(String::as_str) {
            Some("**") => {
                star = Some((p, s));
                p += 1;
                continue;
            }
            Some(seg) if parts.get(s).is_some_and(|part| one(seg, part)) => {
                p += 1;
                s += 1;
                continue;
            }
            None if s == parts.len() => return true,
            _ => {}
        }
        match star {
            Some((sp, ss)) if ss < parts.len() => {
                star = Some((sp, ss + 1));
                p = sp + 1;
                s = ss + 1;
            }
            _ => return false,
        }
    }
}

/// A list of globs (e.g. `PUBLIC_READ`), separated by spaces or commas.
pub fn glob_list(list: &str) -> Vec<Glob> {
    list.split([' ', ',', '\n', '\t'])
        .filter(|s| !s.is_empty())
        .filter_map(Glob::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_covers_only_narrower_globs() {
        let g = |p: &str| Glob::parse(p).unwrap();
        assert!(g("events/**").covers(&g("events/*")));
        assert!(g("events/**").covers(&g("events/**")));
        assert!(g("**").covers(&g("**")));
        assert!(g("events/*").covers(&g("events/*")));
        assert!(g("events/*").covers(&g("events/a")));
        assert!(!g("events/*").covers(&g("events/**")));
        assert!(!g("events/a").covers(&g("events/*")));
        assert!(!g("events/*").covers(&g("*/*")));
        assert!(!g("events/**").covers(&g("**")));
        assert!(g("*/**").covers(&g("events/x/**")));
    }

    #[test]
    fn globs_follow_the_subscription_semantics() {
        let g = |p: &str| Glob::parse(p).unwrap();
        assert!(g("chat/*").matches("chat/room-1"));
        assert!(!g("chat/*").matches("chat/room-1/x"));
        assert!(!g("chat/*").matches("chat"));
        assert!(g("chat/**").matches("chat"));
        assert!(g("chat/**").matches("chat/a/b/c"));
        assert!(g("**").matches("anything/at/all"));
        assert!(g("a/**/z").matches("a/z"));
        assert!(g("a/**/z").matches("a/b/c/z"));
        assert!(!g("a/**/z").matches("a/b/c"));
        assert!(g("*/logs/**").matches("t1/logs/x/y"));
        assert!(!g("chat/room-1").matches("chat/room-10"));
        assert_eq!(Glob::parse(""), None);
        assert_eq!(Glob::parse("a//b"), None);
        // No exponential backtracking.
        let deep = Glob::parse("**/".repeat(30).trim_end_matches('/')).unwrap();
        assert!(deep.matches("x/".repeat(40).trim_end_matches('/')));
        let pat = format!("{}/nomatch", "**/a".repeat(20));
        assert!(!Glob::parse(&pat)
            .unwrap()
            .matches("a/".repeat(60).trim_end_matches('/')));
    }
}
