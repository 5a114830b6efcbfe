//! Untrusted text made safe to show.
//!
//! Device-supplied strings (an unknown field name, a pass name, a topic) end up in refusal
//! details, events, log lines and operators' terminals. [`escape_untrusted`] turns every
//! character that could move a cursor, recolour a terminal, set a window title or reorder text
//! into a visible escape such as `\u{1b}`, and caps the length, so the text can be shown as data.

/// Whether `c` must not reach a terminal or a log line as itself: C0 controls, DEL, C1 controls,
/// the Unicode bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) and
/// the line and paragraph separators (U+2028, U+2029).
pub const fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// Escapes control and bidi characters of `s` as `\u{…}` and keeps at most `max_chars` characters
/// of the result, ending with `…` when cut. Other text, backslashes included, is kept as it is, so
/// text that was already escaped (a `{:?}` of a string) reads the same.
pub fn escape_untrusted(s: &str, max_chars: usize) -> String {
    let piece = |c: char| -> String {
        if is_unsafe(c) {
            format!("\\u{{{:x}}}", u32::from(c))
        } else {
            String::from(c)
        }
    };
    let mut out = String::new();
    let mut used = 0usize;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let p = piece(c);
        let len = p.chars().count();
        let last = chars.peek().is_none();
        // The last piece may use the whole budget; any other must leave room for the ellipsis.
        let budget = if last {
            max_chars
        } else {
            max_chars.saturating_sub(1)
        };
        if used + len > budget {
            if max_chars > 0 {
                out.push('…');
            }
            return out;
        }
        used += len;
        out.push_str(&p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_controls_and_bidi() {
        assert_eq!(
            escape_untrusted("a\u{1b}]0;x\u{7}b", 100),
            "a\\u{1b}]0;x\\u{7}b"
        );
        assert_eq!(escape_untrusted("\u{202e}gnp.exe", 100), "\\u{202e}gnp.exe");
        assert_eq!(escape_untrusted("\u{9b}31m", 100), "\\u{9b}31m");
        assert_eq!(
            escape_untrusted("\u{7f}\n\r\t", 100),
            "\\u{7f}\\u{a}\\u{d}\\u{9}"
        );
        for c in [
            '\u{61c}', '\u{200e}', '\u{200f}', '\u{2066}', '\u{2069}', '\u{202a}',
        ] {
            assert!(!escape_untrusted(&c.to_string(), 100).contains(c), "{c:?}");
        }
        assert_eq!(
            escape_untrusted("a\\u{1b}", 100),
            "a\\u{1b}",
            "already escaped"
        );
        assert_eq!(escape_untrusted("plain é ok", 100), "plain é ok");
    }

    #[test]
    fn caps_length() {
        assert_eq!(escape_untrusted("abcdef", 6), "abcdef");
        assert_eq!(escape_untrusted("abcdefg", 6), "abcde…");
        assert_eq!(escape_untrusted("", 6), "");
        assert_eq!(escape_untrusted("\u{1b}\u{1b}", 10), "\\u{1b}…");
    }

    proptest! {
        #[test]
        fn never_leaks_unsafe_and_stays_short(s in any::<String>(), max in 1usize..80) {
            let e = escape_untrusted(&s, max);
            prop_assert!(!e.chars().any(is_unsafe), "{:?}", e);
            prop_assert!(e.chars().count() <= max, "{:?}", e);
            if s.chars().count() <= max && !s.chars().any(is_unsafe) {
                prop_assert_eq!(e, s);
            }
        }
    }
}
