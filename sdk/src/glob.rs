//! Glob patterns over parameter names, as Freezer, `set_requires_grad`, parameter groups and
//! partial loading (`exclude`) use them, in the engine and in plugins alike: Python's `fnmatch` syntax, as in skorch. `*` matches any run of characters (dots
//! included), `?` one character, `[seq]` and `[!seq]` a character class; parameter names hold no
//! `/`, so nothing else is special.

use glob::{MatchOptions, Pattern};

/// Matching as `fnmatch.fnmatchcase`: case-sensitive, `*` crosses dots.
const OPTIONS: MatchOptions =
    MatchOptions { case_sensitive: true, require_literal_separator: false, require_literal_leading_dot: false };

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Glob(Pattern);

impl Glob {
    /// Compiles `pattern`; the error says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Self, String> {
        Pattern::new(pattern).map(Glob).map_err(|e| format!("{pattern:?} is not a glob pattern: {}", e.msg))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.0.matches_with(name, OPTIONS)
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn matches(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).unwrap().matches(name)
    }

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

    #[test]
    fn character_classes_work_as_in_fnmatch_and_a_broken_pattern_is_refused() {
        assert!(matches("layers.[02].weight", "layers.2.weight"));
        assert!(!matches("layers.[!02].weight", "layers.2.weight"));
        assert!(Glob::new("layers.[0").unwrap_err().contains("layers.[0"));
    }
}
