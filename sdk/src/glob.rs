//! Glob patterns over parameter names, as Freezer and parameter groups use them.
//!
//! `*` matches any run of characters (dots included, as in skorch's `fnmatch`), `?` matches one
//! character; everything else matches itself.

/// Whether `name` matches the glob `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic iterative wildcard matching with one backtrack point.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_spans_dots_like_fnmatch() {
        assert!(matches("layers.0.*", "layers.0.weight"));
        assert!(matches("*.bias", "layers.2.bias"));
        assert!(matches("*", "anything.at.all"));
        assert!(!matches("*.bias", "layers.2.weight"));
        assert!(!matches("layers.0.*", "layers.10.weight"));
    }

    #[test]
    fn question_mark_is_exactly_one_character() {
        assert!(matches("layers.?.weight", "layers.3.weight"));
        assert!(!matches("layers.?.weight", "layers.12.weight"));
    }

    #[test]
    fn a_literal_pattern_matches_only_itself() {
        assert!(matches("fc.weight", "fc.weight"));
        assert!(!matches("fc.weight", "fc.weights"));
    }
}
