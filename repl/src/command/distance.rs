//! "Did you mean": the closest known word by edit distance.

/// Levenshtein distance over characters.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
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
        assert_eq!(distance("sahrd", "shard"), 2);
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
