//! Escaping control characters in text that came from other processes (names,
//! argv, descriptor paths) before a human output prints it. Any user can name a
//! process or a file `\e]0;...\a` (retitles the terminal) or put newlines in its
//! argv (draws fake rows): printed raw, that is a terminal injection into whoever
//! runs `leakwatch ps`. JSON output needs none of this: serde escapes already.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character (C0 including newline, tab and ESC, DEL,
/// and C1) written as a visible escape: `\n`, `\t`, `\r`, `\x1b`, `\u{9b}`.
/// Borrowed unchanged when there is none, which is nearly always.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] of each word, joined by spaces: an argv for a human.
pub fn escape_argv(argv: &[String]) -> String {
    argv.iter().map(|a| escape(a)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 10, item 3): an argv with `ESC]0;...BEL` retitled the
    /// terminal of whoever ran `leakwatch ps`, and newlines drew fake rows.
    #[test]
    fn terminal_escapes_and_newlines_are_made_visible() {
        assert!(matches!(escape("python3 server.py"), Cow::Borrowed(_)));
        assert_eq!(escape("a\u{1b}]0;pwned\u{7}b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(escape("x\n  1 root fake"), "x\\n  1 root fake");
        assert_eq!(escape("\t\r\u{7f}"), "\\t\\r\\x7f");
        // C1: a lone CSI (U+009B) is an escape sequence to some terminals.
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("héllo ✓"), "héllo ✓");
        let argv = vec!["sh".to_owned(), "-c".to_owned(), "echo\u{1b}[2J".to_owned()];
        assert_eq!(escape_argv(&argv), "sh -c echo\\x1b[2J");
        for text in ["\u{1b}", "\n", "\u{9b}", "\u{85}"] {
            assert!(!escape(text).chars().any(char::is_control), "{text:?}");
        }
    }
}
