//! Models built into the engine.

pub mod mlp;

use std::cmp::Ordering;

/// Orders dotted parameter names as PyTorch lists them: numeric segments by value
/// (`layers.2` before `layers.10`), others alphabetically.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;

    #[test]
    fn numeric_segments_sort_by_value() {
        let mut names = vec!["hidden.10.weight", "hidden.2.weight", "hidden.2.bias", "output.weight"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, vec!["hidden.2.bias", "hidden.2.weight", "hidden.10.weight", "output.weight"]);
    }
}
