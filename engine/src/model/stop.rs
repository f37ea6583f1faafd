//! Streaming stop strings: decide, piece by piece, which generated text is
//! safe to show.
//!
//! Text arrives a token at a time, so a stop string may be split across
//! pushes. [`StopMatcher`] holds back only the shortest tail that could still
//! grow into a stop string and releases everything else at once, so streaming
//! stays live. Cuts always fall on `char` boundaries: input is `&str` and a
//! held tail equals a prefix of a (valid UTF-8) stop string.

/// Finds the first occurrence of any stop string in a text stream.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are dropped: they would match before any text.
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string has been seen; later pushes emit nothing.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Feeds newly decoded text; returns the text safe to emit now and whether
    /// a stop string was found. On a match the text before it is emitted and
    /// the stop string and anything after it are dropped.
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        let mut buf = std::mem::take(&mut self.held);
        buf.push_str(text);
        if let Some(at) = self.first_match(&buf) {
            buf.truncate(at);
            self.stopped = true;
            return (buf, true);
        }
        let keep_from = buf.len() - self.partial_tail_len(&buf);
        self.held = buf.split_off(keep_from);
        (buf, false)
    }

    /// At the end of generation, the held-back tail (empty once stopped).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Byte offset of the earliest occurrence of any stop string.
    fn first_match(&self, buf: &str) -> Option<usize> {
        self.stops.iter().filter_map(|s| buf.find(s.as_str())).min()
    }

    /// Length of the longest tail of `buf` that is a proper prefix of some stop
    /// string: the most that a later push could complete into a match.
    fn partial_tail_len(&self, buf: &str) -> usize {
        let longest_stop = self.stops.iter().map(String::len).max().unwrap_or(0);
        let max_tail = longest_stop.saturating_sub(1).min(buf.len());
        (1..=max_tail)
            .rev()
            .find(|&n| {
                let start = buf.len() - n;
                buf.is_char_boundary(start)
                    && self
                        .stops
                        .iter()
                        .any(|s| s.len() > n && s.as_bytes().starts_with(&buf.as_bytes()[start..]))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    /// Pushes each piece; returns everything emitted (including `finish`) and
    /// whether it stopped.
    fn run(m: &mut StopMatcher, pieces: &[&str]) -> (String, bool) {
        let mut out = String::new();
        for p in pieces {
            let (emit, stopped) = m.push(p);
            out.push_str(&emit);
            if stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_split_across_pushes() {
        let mut m = matcher(&["<|im_end|>"]);
        assert_eq!(m.push("Paris.<|im"), ("Paris.".to_string(), false));
        assert_eq!(m.push("_en"), (String::new(), false));
        assert_eq!(m.push("d|>\nmore"), (String::new(), true));
        assert!(m.stopped());
        assert_eq!(m.push("ignored"), (String::new(), true));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn partial_prefix_that_fails_is_released() {
        let mut m = matcher(&["STOP"]);
        assert_eq!(m.push("a ST"), ("a ".to_string(), false));
        assert_eq!(m.push("OR"), ("STOR".to_string(), false));
        assert_eq!(m.push("y S"), ("y ".to_string(), false));
        assert_eq!(m.finish(), "S");
    }

    #[test]
    fn overlapping_prefix_restarts_inside_held_text() {
        // "aab" must be found even though the held "aa" first looked like "aa|b".
        let mut m = matcher(&["aab"]);
        assert_eq!(
            run(&mut m, &["xa", "a", "ab", "tail"]),
            ("xa".to_string(), true)
        );
    }

    #[test]
    fn multiple_stops_earliest_wins() {
        let mut m = matcher(&["\n\n", "User:", "###"]);
        assert_eq!(
            run(&mut m, &["Hi there", " User: ###"]),
            ("Hi there ".to_string(), true)
        );
        let mut m = matcher(&["long stop", "op"]);
        assert_eq!(run(&mut m, &["a long st", "op"]), ("a ".to_string(), true));
        let mut m = matcher(&["\n\n", "User:"]);
        assert_eq!(
            run(&mut m, &["line\n", "User", " no"]),
            ("line\nUser no".to_string(), false)
        );
    }

    #[test]
    fn empty_stop_list_passes_everything() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("<|im_end|>"), ("<|im_end|>".to_string(), false));
        let mut m = matcher(&[""]);
        assert_eq!(m.push("abc"), ("abc".to_string(), false));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn unicode_is_never_split() {
        // "é" is two bytes and "€" three; the stop starts with a multibyte char.
        let mut m = matcher(&["€€!"]);
        assert_eq!(m.push("café €"), ("café ".to_string(), false));
        assert_eq!(m.push("€"), (String::new(), false));
        assert_eq!(m.push("?"), ("€€?".to_string(), false));
        let mut m = matcher(&["é!"]);
        let (out, stopped) = run(&mut m, &["caf", "é", "é", "!", "x"]);
        assert_eq!((out.as_str(), stopped), ("café", true));
        // A stop that shares a leading byte with the text but not a char.
        let mut m = matcher(&["\u{00e8}x"]);
        assert_eq!(
            run(&mut m, &["\u{00e9}", "x"]),
            ("\u{00e9}x".to_string(), false)
        );
    }

    #[test]
    fn stop_at_the_very_start_emits_nothing() {
        let mut m = matcher(&["<eos>"]);
        assert_eq!(m.push("<eos>after"), (String::new(), true));
    }
}
