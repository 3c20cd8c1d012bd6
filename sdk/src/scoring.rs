//! Pure decisions about scores shared by scoring callbacks.

/// Whether `current` is a new best given the scores of earlier epochs.
///
/// The first score is always best; after that a score is best only when it is strictly better
/// than every earlier one. Because the earlier scores come from history, a run resumed from a
/// checkpoint continues its `*_best` flags instead of starting over.
pub fn is_best(previous: impl IntoIterator<Item = f64>, current: f64, lower_is_better: bool) -> bool {
    let best =
        previous.into_iter().filter(|v| !v.is_nan()).reduce(|a, b| if lower_is_better { a.min(b) } else { a.max(b) });
    match best {
        None => !current.is_nan(),
        Some(best) if lower_is_better => current < best,
        Some(best) => current > best,
    }
}

/// Records `key = score` (a non-finite score as its token, [`crate::values::number`]) and
/// `<key>_best` in the current epoch, comparing with the values of
/// `key` in every earlier epoch of the history; returns whether it is a new best.
pub fn record_with_best(
    host: &mut dyn crate::Host,
    key: &str,
    score: f64,
    lower_is_better: bool,
) -> crate::Result<bool> {
    let previous: Vec<f64> =
        (0..host.epochs() as isize - 1).filter_map(|e| crate::values::as_number(&host.history_get(e, key)?)).collect();
    let best = is_best(previous, score, lower_is_better);
    host.record(key, crate::values::number(score))?;
    host.record(&format!("{key}_best"), best.into())?;
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::is_best;

    #[test]
    fn the_first_score_is_best() {
        assert!(is_best([], 3.0, true));
        assert!(is_best([], 3.0, false));
    }

    #[test]
    fn a_tie_is_not_a_new_best() {
        assert!(!is_best([1.0, 0.5], 0.5, true));
        assert!(is_best([1.0, 0.5], 0.4, true));
        assert!(!is_best([0.7, 0.9], 0.8, false));
        assert!(is_best([0.7, 0.9], 0.91, false));
    }

    #[test]
    fn a_resumed_run_compares_against_the_restored_best() {
        // Restored history already reached 0.2; a resumed epoch at 0.3 is not best.
        assert!(!is_best([0.5, 0.2, 0.25], 0.3, true));
    }
}
