//! Repository-name globs, as the token server's access rules, retention policies and
//! trust policies write them: `*` matches any run of characters (`/` included),
//! everything else matches itself.

/// Whether `name` matches `pattern` (`*`: any run of characters, `/` included;
/// everything else: itself).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("team-a/*", "team-a/app"));
        assert!(glob("team-a/*", "team-a/x/y"));
        assert!(!glob("team-a/*", "team-ab/app"));
        assert!(!glob("team-a/*", "team-a"));
        assert!(glob("team/*", "team/a/b"));
        assert!(!glob("team/*", "team"));
        assert!(glob("*", "anything/at/all"));
        assert!(glob("*", "x"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
        assert!(glob("exact", "exact"));
    }
}
