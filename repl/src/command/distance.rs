//! "Did you mean": the closest known word by edit distance.

// Edit distance over characters where swapping two neighbours counts as
// one edit (optimal string alignment): `sahrd` is one typo from `shard`.
use strsim::osa_distance;

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
        .map(|c| (osa_distance(&word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_of_neighbours_is_one_typo() {
        let words = ["shard", "stats"];
        assert_eq!(closest("sahrd", words).as_deref(), Some("shard"));
        assert_eq!(closest("tsats", words).as_deref(), Some("stats"));
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
