//! "Did you mean": the closest known word by edit distance.

/// Edit distance over characters where swapping two neighbours counts as
/// one edit (optimal string alignment): `sahrd` is one typo from `shard`.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between the first i chars of a and first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate nearest to `word`, if it is near enough to be a typo
/// (at most a third of the word's length, and at least 1 edit allowed), or
/// the only candidate that `word` is a prefix of.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let word = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let prefixed: Vec<&&str> = candidates
        .iter()
        .filter(|c| !word.is_empty() && c.starts_with(&word))
        .collect();
    if let [only] = prefixed.as_slice() {
        return Some(only.to_string());
    }
    candidates
        .iter()
        .map(|c| (distance(&word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("shard", "shard"), 0);
        assert_eq!(distance("shrd", "shard"), 1);
        assert_eq!(distance("sahrd", "shard"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn suggests_near_words_only() {
        let words = ["shard", "stats", "set", "plan"];
        assert_eq!(closest("shrd", words).as_deref(), Some("shard"));
        assert_eq!(closest("sta", words).as_deref(), Some("stats"));
        assert_eq!(closest("xyzzy", words), None);
        assert_eq!(closest("PLAM", words).as_deref(), Some("plan"));
    }
}
