//! Keys typed while a command ran, turned back into input: whole lines to
//! run next, and the unfinished rest to pre-fill the prompt with.

/// Splits raw terminal bytes into complete lines and the unfinished rest,
/// applying backspace and Ctrl-U and dropping other control keys and
/// escape sequences (arrows).
pub fn split(bytes: &[u8]) -> (Vec<String>, String) {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\n' => lines.push(std::mem::take(&mut cur)),
            '\u{7f}' | '\u{8}' => {
                cur.pop();
            }
            '\u{15}' => cur.clear(),
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; SS3: ESC O x.
                match chars.next() {
                    Some('[') => {
                        for p in chars.by_ref() {
                            if ('@'..='~').contains(&p) {
                                break;
                            }
                        }
                    }
                    Some('O') => {
                        chars.next();
                    }
                    _ => {}
                }
            }
            c if c.is_control() => {}
            c => cur.push(c),
        }
    }
    (lines, cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rest_and_editing_keys() {
        let (lines, rest) = split(b":nodes\rHel\x7flo\x1b[A\x1bOB\nnext ");
        assert_eq!(lines, vec![":nodes", "Helo"]);
        assert_eq!(rest, "next ");
        let (lines, rest) = split(b"abc\x15xy");
        assert!(lines.is_empty());
        assert_eq!(rest, "xy");
    }
}
