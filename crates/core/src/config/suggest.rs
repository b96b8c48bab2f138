//! "Did you mean ...?": the closest known word to a misspelt key or metric, so an
//! unknown key is an error a person fixes at once.

use leakwatch_probe::{FdClass, FdKind};

/// The closest of `candidates` to a misspelt `word`, if one is close.
pub(super) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    // An abbreviation ("crit") is as telling as a typo.
    if word.len() >= 3
        && let Some(full) = candidates.iter().find(|c| c.len() > word.len() && c.starts_with(word))
    {
        return Some(full);
    }
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

pub(super) fn target_metric_names() -> impl Iterator<Item = &'static str> {
    ["fds", "rss", "slope", "eta", "down"]
        .into_iter()
        .chain(FdKind::ALL.into_iter().map(FdKind::name))
        .chain(FdClass::ALL.into_iter().map(FdClass::name))
}
