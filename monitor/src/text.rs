//! Untrusted text made safe to show.
//!
//! Anything a device, a card reader or a login form sends may hold terminal escape sequences,
//! newlines or Unicode bidi controls that reorder what an operator reads. [`escape_untrusted`]
//! turns every such character into a visible `\u{…}` escape and caps the length, so the result
//! is one inert line in a terminal, a log or a page. Every device-supplied string the monitor
//! shows or prints goes through it; [`escape_json`] applies it to every string in a JSON value.
//! The escaping is the protocol crate's, the same as the bridge's: it leaves backslashes alone,
//! so text the bridge already escaped reads the same after a second pass.

pub(crate) use tapgate_protocol::text::escape_untrusted;
#[cfg(test)]
pub(crate) use tapgate_protocol::text::is_unsafe;

/// Most characters of any one untrusted string shown or printed by the monitor.
pub(crate) const MAX_TEXT: usize = 512;

/// `v` with [`escape_untrusted`] applied to every string in it (keys included).
pub(crate) fn escape_json(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(escape_untrusted(&s, MAX_TEXT)),
        Value::Array(items) => Value::Array(items.into_iter().map(escape_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (escape_untrusted(&k, MAX_TEXT), escape_json(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped() {
        assert_eq!(escape_untrusted("plain text é", 100), "plain text é");
        assert_eq!(escape_untrusted("a\x1b[2Jb", 100), "a\\u{1b}[2Jb");
        assert_eq!(
            escape_untrusted("x\u{85}y\u{9b}z", 100),
            "x\\u{85}y\\u{9b}z"
        );
        assert_eq!(escape_untrusted("\x7f", 100), "\\u{7f}");
        assert_eq!(escape_untrusted("abc\u{202E}fed", 100), "abc\\u{202e}fed");
        assert_eq!(
            escape_untrusted("\u{2066}\u{061C}", 100),
            "\\u{2066}\\u{61c}"
        );
        let once = escape_untrusted("a\x1bb", 100);
        assert_eq!(
            escape_untrusted(&once, 100),
            once,
            "escaping twice changes nothing"
        );
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(escape_untrusted("abcdef", 6), "abcdef");
        assert_eq!(escape_untrusted("abcdefg", 6), "abcde…");
        assert_eq!(escape_untrusted("\x1b\x1b", 8), "\\u{1b}…");
        assert_eq!(escape_untrusted("anything", 0), "");
    }

    #[test]
    fn json_strings_and_keys_are_escaped() {
        let v = serde_json::json!({"a\u{9b}": ["\u{202e}x", 1, {"b": "\x7f"}]});
        assert_eq!(
            escape_json(v),
            serde_json::json!({"a\\u{9b}": ["\\u{202e}x", 1, {"b": "\\u{7f}"}]})
        );
    }

    proptest::proptest! {
        #[test]
        fn output_is_inert_and_bounded(s in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}a]*", max in 1usize..200) {
            let out = escape_untrusted(&s, max);
            proptest::prop_assert!(!out.chars().any(is_unsafe), "{:?}", out);
            proptest::prop_assert!(out.chars().count() <= max, "{} > {}", out.chars().count(), max);
        }

        #[test]
        fn safe_short_text_is_unchanged(s in "[a-zA-Z0-9 .,:;()é-]{0,50}") {
            proptest::prop_assert_eq!(escape_untrusted(&s, 100), s);
        }
    }
}
