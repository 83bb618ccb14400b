//! User text (a path, an `id`, an option's value, a config file's key) as
//! it may appear in an error line: on one line, without control characters
//! that a terminal would act on, and short enough to read.

/// The most characters of one piece of user text an error line shows.
pub const MAX_SHOWN: usize = 200;

/// `text` for an error line: control characters (newlines, escape
/// sequences, ...) escaped as Rust escapes them (`\n`, `\u{1b}`), and a
/// text longer than [`MAX_SHOWN`] characters cut with an ellipsis and its
/// original length, so that a 100 kB value cannot flood the terminal.
pub fn shown(text: &str) -> String {
    one_line(text, MAX_SHOWN)
}

/// A whole line for the terminal: control characters escaped, and cut at
/// `max` characters. The last line of defence for messages built from
/// text that did not go through [`shown`].
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().take(max) {
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    let count = text.chars().count();
    if count > max {
        out.push_str(&format!("... ({count} characters)"));
    }
    out
}

/// Unicode's bidirectional controls, which reorder what a terminal shows
/// (and so can make an error line lie about a path).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_left_alone() {
        assert_eq!(shown("disk0"), "disk0");
        assert_eq!(shown("/tmp/ümlaut image.img"), "/tmp/ümlaut image.img");
        assert_eq!(shown(""), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(shown("tab\there\r"), "tab\\there\\r");
        assert_eq!(shown("\u{9b}"), "\\u{9b}", "C1 controls (CSI) too");
        assert_eq!(shown("a\u{202e}b"), "a\\u{202e}b", "bidi overrides too");
    }

    #[test]
    fn long_text_is_cut_with_its_length() {
        let long = "x".repeat(100_000);
        let s = shown(&long);
        assert_eq!(s, format!("{}... (100000 characters)", "x".repeat(MAX_SHOWN)));
        assert_eq!(shown(&"y".repeat(MAX_SHOWN)), "y".repeat(MAX_SHOWN));
    }

    #[test]
    fn a_whole_line_is_cut_and_escaped() {
        assert_eq!(one_line("a\u{1b}b", 10), "a\\u{1b}b");
        assert_eq!(one_line("abcdef", 3), "abc... (6 characters)");
    }
}
