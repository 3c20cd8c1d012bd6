//! Random search (scikit-learn's `RandomizedSearchCV` candidates, `ParameterSampler`): each key
//! draws from a list or a distribution, `uniform(a, b)`, `loguniform(a, b)` or `randint(a, b)`,
//! with the engine's seeded generator. When every key has a list, the candidates are distinct
//! points of the grid (sampling without replacement), as scikit-learn does.

use super::search::{grid, Candidate};
use crate::data::{SplitMix64, Stream};
use toml::Value;

/// Where a key's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// One of these, each equally likely.
    List(Vec<Value>),
    /// A float uniform in `[a, b)`.
    Uniform(f64, f64),
    /// A float whose logarithm is uniform: `exp(uniform(ln a, ln b))` (`scipy.stats.loguniform(a, b)`).
    LogUniform(f64, f64),
    /// An integer uniform in `[a, b)` (`scipy.stats.randint(a, b)`).
    RandInt(i64, i64),
}

impl std::str::FromStr for Distribution {
    type Err = String;

    /// `uniform(a, b)`, `loguniform(a, b)`, `randint(a, b)`, or a comma-separated list of TOML
    /// values (`0.2,0.5,0.8`, `[32],[64]`; a value cannot itself hold a comma).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let call = |name: &str| {
            let inner = text.strip_prefix(name)?.trim_start().strip_prefix('(')?.strip_suffix(')')?;
            let (a, b) = inner.split_once(',')?;
            Some((a.trim().to_owned(), b.trim().to_owned()))
        };
        let floats = |(a, b): (String, String)| -> Result<(f64, f64), String> {
            let f = |s: &str| s.parse::<f64>().map_err(|_| format!("{s:?} is not a number"));
            let (a, b) = (f(&a)?, f(&b)?);
            match a < b && a.is_finite() && b.is_finite() {
                true => Ok((a, b)),
                false => Err(format!("needs finite a < b, got ({a}, {b})")),
            }
        };
        if let Some(args) = call("loguniform") {
            let (a, b) = floats(args)?;
            return match a > 0.0 {
                true => Ok(Distribution::LogUniform(a, b)),
                false => Err(format!("loguniform needs 0 < a < b, got ({a}, {b})")),
            };
        }
        if let Some(args) = call("uniform") {
            let (a, b) = floats(args)?;
            return Ok(Distribution::Uniform(a, b));
        }
        if let Some((a, b)) = call("randint") {
            let i = |s: &str| s.parse::<i64>().map_err(|_| format!("{s:?} is not an integer"));
            let (a, b) = (i(&a)?, i(&b)?);
            return match a < b {
                true => Ok(Distribution::RandInt(a, b)),
                false => Err(format!("randint needs a < b, got ({a}, {b})")),
            };
        }
        let values: Vec<Value> = text.split(',').map(|v| crate::config::parse_value(v.trim())).collect();
        match values.is_empty() || text.is_empty() {
            true => Err("needs at least one value".into()),
            false => Ok(Distribution::List(values)),
        }
    }
}

impl Distribution {
    fn draw(&self, g: &mut SplitMix64) -> Value {
        let unit = |g: &mut SplitMix64| (g.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        match self {
            Distribution::List(values) => values[g.below(values.len())].clone(),
            Distribution::Uniform(a, b) => Value::Float(a + (b - a) * unit(g)),
            Distribution::LogUniform(a, b) => Value::Float((a.ln() + (b.ln() - a.ln()) * unit(g)).exp()),
            Distribution::RandInt(a, b) => Value::Integer(a + g.below((b - a) as usize) as i64),
        }
    }
}

/// `n` candidates drawn from `space` with `seed`, keys in sorted order. When every key has a
/// list, `n` distinct grid points (all of them if the grid is smaller), in the order drawn.
pub fn sample(space: &[(String, Distribution)], n: usize, seed: u64) -> Vec<Candidate> {
    let mut g = SplitMix64::new(seed, Stream::Search, 0);
    let lists: Option<Vec<(String, Vec<Value>)>> = space
        .iter()
        .map(|(k, d)| match d {
            Distribution::List(v) => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect();
    if let Some(lists) = lists {
        let mut points = grid(&lists);
        g.shuffle(&mut points);
        points.truncate(n);
        return points;
    }
    let mut keys: Vec<&(String, Distribution)> = space.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    (0..n).map(|_| keys.iter().map(|(k, d)| (k.clone(), d.draw(&mut g))).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Distribution {
        s.parse().unwrap()
    }

    #[test]
    fn distributions_are_read_from_their_written_form() {
        assert_eq!(parse("uniform(0.1, 0.9)"), Distribution::Uniform(0.1, 0.9));
        assert_eq!(parse("loguniform(1e-4,1e-1)"), Distribution::LogUniform(1e-4, 1e-1));
        assert_eq!(parse("randint(16, 129)"), Distribution::RandInt(16, 129));
        assert_eq!(parse("0.2,0.5"), Distribution::List(vec![Value::Float(0.2), Value::Float(0.5)]));
        assert!("loguniform(0, 1)".parse::<Distribution>().is_err());
        assert!("uniform(2, 1)".parse::<Distribution>().is_err());
        assert!("randint(3, x)".parse::<Distribution>().unwrap_err().contains("\"x\""));
    }

    #[test]
    fn draws_stay_in_their_ranges_and_repeat_with_the_seed() {
        let space = vec![
            ("optimizer__lr".to_owned(), parse("loguniform(1e-4, 1e-1)")),
            ("module__dropout".to_owned(), parse("uniform(0.1, 0.6)")),
            ("iterator_train__batch_size".to_owned(), parse("randint(16, 33)")),
            ("module__hidden".to_owned(), parse("[32],[64]")),
        ];
        let a = sample(&space, 200, 7);
        assert_eq!(a, sample(&space, 200, 7));
        assert_ne!(a, sample(&space, 200, 8));
        for c in &a {
            let get = |k: &str| c.iter().find(|(n, _)| n == k).unwrap().1.clone();
            let lr = get("optimizer__lr").as_float().unwrap();
            assert!((1e-4..1e-1).contains(&lr));
            assert!((0.1..0.6).contains(&get("module__dropout").as_float().unwrap()));
            assert!((16..33).contains(&get("iterator_train__batch_size").as_integer().unwrap()));
        }
        // loguniform: about half the draws below the geometric mean of the bounds.
        let lr = |c: &Candidate| c.iter().find(|(n, _)| n == "optimizer__lr").unwrap().1.as_float().unwrap();
        let below = a.iter().filter(|c| lr(c) < (1e-4f64 * 1e-1).sqrt()).count();
        assert!((70..130).contains(&below), "{below}");
    }

    #[test]
    fn lists_only_give_distinct_grid_points() {
        let space = vec![("a".to_owned(), parse("1,2,3")), ("b".to_owned(), parse("4,5"))];
        let s = sample(&space, 4, 1);
        assert_eq!(s.len(), 4);
        for (i, c) in s.iter().enumerate() {
            assert!(!s[..i].contains(c), "drawn twice: {c:?}");
        }
        assert_eq!(sample(&space, 10, 1).len(), 6, "at most the whole grid");
    }
}
