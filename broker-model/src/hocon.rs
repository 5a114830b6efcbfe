//! A strict reader for the subset of HOCON that EMQX configuration files use.
//!
//! Supported: objects with `=`, `:` or `{` after the key; dotted key paths
//! (`listeners.tcp.default { ... }`); arrays; quoted strings with escapes; triple-quoted strings;
//! unquoted values (`15s`, `64KB`, `password_based`), numbers, booleans and `null`; `#` and `//`
//! comments; commas or line breaks between items; repeated keys (objects merge, other values are
//! replaced, as HOCON says); `include "file"` lines, which are recorded, not followed.
//!
//! Refused, with the line: substitutions (`${...}` outside quotes: this checker cannot know the
//! environment EMQX will have), `+=`, unbalanced brackets, a key without a value, and anything
//! else outside the subset, so a typo is never read as something it is not.

use std::collections::BTreeMap;

/// A HOCON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `{ ... }`.
    Object(BTreeMap<String, Value>),
    /// `[ ... ]`.
    Array(Vec<Value>),
    /// A quoted or unquoted string.
    String(String),
    /// An integer.
    Int(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl Value {
    /// The value at a dotted path (`a.b.c`) inside objects.
    pub fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self, |cur, part| match cur {
            Value::Object(map) => map.get(part),
            _ => None,
        })
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A parsed file: its root object and the files it includes.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub root: Value,
    /// `include "..."` targets, in order.
    pub includes: Vec<String>,
}

/// Why a text is not in the supported subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct HoconError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    includes: &'a mut Vec<String>,
}

const FORBIDDEN_UNQUOTED: &str = "$\"{}[]:=,+#`^?!@*&\\";

impl Parser<'_> {
    fn error<T>(&self, why: impl Into<String>) -> Result<T, HoconError> {
        Err(HoconError {
            line: self.line,
            why: why.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }

    fn skip_comment(&mut self) -> bool {
        if self.peek() == Some('#') || self.starts_with("//") {
            while let Some(c) = self.peek() {
                if c == '\n' {
                    break;
                }
                self.bump();
            }
            true
        } else {
            false
        }
    }

    /// Skips spaces and comments on this line; returns whether a line break or comma follows.
    fn skip_inline(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r') => {
                    self.bump();
                }
                _ if self.skip_comment() => {}
                _ => return,
            }
        }
    }

    /// Skips spaces, comments, line breaks and (if `commas`) commas.
    fn skip_separators(&mut self, commas: bool) -> bool {
        let mut separated = false;
        loop {
            self.skip_inline();
            match self.peek() {
                Some('\n') => {
                    self.bump();
                    separated = true;
                }
                Some(',') if commas => {
                    self.bump();
                    separated = true;
                }
                _ => return separated,
            }
        }
    }

    fn quoted(&mut self) -> Result<String, HoconError> {
        if self.starts_with("\"\"\"") {
            self.pos += 3;
            let mut out = String::new();
            loop {
                if self.starts_with("\"\"\"") {
                    // The closing quotes are the last three of a run.
                    let mut run = 0;
                    while self.peek_at(run) == Some('"') {
                        run += 1;
                    }
                    out.extend(std::iter::repeat_n('"', run - 3));
                    self.pos += run;
                    return Ok(out);
                }
                match self.bump() {
                    Some(c) => out.push(c),
                    None => return self.error("unterminated \"\"\" string"),
                }
            }
        }
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return self.error("unterminated string"),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(c) => out.push(c),
                            None => return self.error(format!("bad \\u escape {hex:?}")),
                        }
                    }
                    other => return self.error(format!("unknown escape \\{other:?}")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn key_path(&mut self) -> Result<Vec<String>, HoconError> {
        let mut path = Vec::new();
        loop {
            let segment = match self.peek() {
                Some('"') => self.quoted()?,
                _ => {
                    let mut s = String::new();
                    while let Some(c) = self.peek() {
                        if c.is_alphanumeric() || c == '_' || c == '-' {
                            s.push(c);
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    if s.is_empty() {
                        return match self.peek() {
                            Some(c) => self.error(format!("expected a key, found {c:?}")),
                            None => self.error("expected a key, found the end"),
                        };
                    }
                    s
                }
            };
            path.push(segment);
            if self.peek() == Some('.') {
                self.bump();
            } else {
                return Ok(path);
            }
        }
    }

    fn unquoted(&mut self) -> Result<Value, HoconError> {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c == '\n' || c == '}' || c == ']' || c == ',' || c == '#' || self.starts_with("//") {
                break;
            }
            if self.starts_with("${") {
                return self.error("substitutions (${...}) are not supported: write the value");
            }
            if FORBIDDEN_UNQUOTED.contains(c) {
                return self.error(format!("{c:?} is not allowed in an unquoted value"));
            }
            s.push(c);
            self.bump();
        }
        let s = s.trim_end().to_owned();
        if s.is_empty() {
            return self.error("expected a value");
        }
        Ok(match s.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => {
                if let Ok(i) = s.parse::<i64>() {
                    Value::Int(i)
                } else if s.contains(['.', 'e', 'E'])
                    && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
                {
                    match s.parse::<f64>() {
                        Ok(f) => Value::Float(f),
                        Err(_) => Value::String(s),
                    }
                } else {
                    Value::String(s)
                }
            }
        })
    }

    fn value(&mut self) -> Result<Value, HoconError> {
        self.skip_inline();
        match self.peek() {
            Some('{') => {
                self.bump();
                let obj = self.fields(Some('}'))?;
                Ok(obj)
            }
            Some('[') => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip_separators(true);
                    if self.peek() == Some(']') {
                        self.bump();
                        return Ok(Value::Array(items));
                    }
                    if self.peek().is_none() {
                        return self.error("missing ']'");
                    }
                    items.push(self.value()?);
                    let separated = self.skip_separators(true);
                    if !separated && self.peek() != Some(']') {
                        return match self.peek() {
                            Some(c) => self.error(format!("expected ',' or ']', found {c:?}")),
                            None => self.error("missing ']'"),
                        };
                    }
                }
            }
            Some('"') => {
                let s = self.quoted()?;
                self.skip_inline();
                match self.peek() {
                    None | Some('\n' | ',' | '}' | ']') => Ok(Value::String(s)),
                    Some(c) => self.error(format!("unexpected {c:?} after a quoted string")),
                }
            }
            None => self.error("expected a value, found the end"),
            _ => self.unquoted(),
        }
    }

    /// Fields until `close` (or the end of the text for the root).
    fn fields(&mut self, close: Option<char>) -> Result<Value, HoconError> {
        let mut map = BTreeMap::new();
        loop {
            self.skip_separators(true);
            match (self.peek(), close) {
                (None, None) => return Ok(Value::Object(map)),
                (None, Some(c)) => return self.error(format!("missing {c:?}")),
                (Some(c), Some(want)) if c == want => {
                    self.bump();
                    return Ok(Value::Object(map));
                }
                (Some('}' | ']'), _) => {
                    return self.error(format!("unexpected {:?}", self.peek().unwrap_or(' ')))
                }
                _ => {}
            }
            if self.starts_with("include") && matches!(self.peek_at(7), Some(' ' | '\t')) {
                self.pos += 7;
                self.skip_inline();
                if self.peek() != Some('"') {
                    return self.error("include needs a quoted file name");
                }
                let target = self.quoted()?;
                self.includes.push(target);
                continue;
            }
            let path = self.key_path()?;
            self.skip_inline();
            let value = match self.peek() {
                Some('{') => self.value()?,
                Some('=' | ':') => {
                    self.bump();
                    self.value()?
                }
                Some('+') => return self.error("+= is not supported"),
                Some(c) => {
                    return self.error(format!(
                        "expected '=', ':' or '{{' after {}, found {c:?}",
                        path.join(".")
                    ))
                }
                None => return self.error(format!("{} has no value", path.join("."))),
            };
            let nested = path.iter().skip(1).rev().fold(value, |v, k| {
                Value::Object(BTreeMap::from([(k.clone(), v)]))
            });
            insert(&mut map, path[0].clone(), nested);
            let separated = self.skip_separators(true);
            if !separated {
                match (self.peek(), close) {
                    (None, None) => {}
                    (Some(c), Some(want)) if c == want => {}
                    (Some(c), _) => {
                        return self.error(format!("expected a line break or ',' before {c:?}"))
                    }
                    (None, Some(want)) => return self.error(format!("missing {want:?}")),
                }
            }
        }
    }
}

/// HOCON merging: objects merge key by key, anything else replaces.
fn insert(map: &mut BTreeMap<String, Value>, key: String, value: Value) {
    match (map.get_mut(&key), value) {
        (Some(Value::Object(old)), Value::Object(new)) => {
            for (k, v) in new {
                insert(old, k, v);
            }
        }
        (_, value) => {
            map.insert(key, value);
        }
    }
}

/// Parses HOCON text.
pub fn parse(text: &str) -> Result<Document, HoconError> {
    let mut includes = Vec::new();
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        includes: &mut includes,
    };
    parser.skip_separators(false);
    let root = if parser.peek() == Some('{') {
        parser.bump();
        let root = parser.fields(Some('}'))?;
        parser.skip_separators(false);
        if let Some(c) = parser.peek() {
            return parser.error(format!("unexpected {c:?} after the root object"));
        }
        root
    } else {
        parser.fields(None)?
    };
    Ok(Document { root, includes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_emqx_subset() {
        let doc = parse(
            r#"
            ## comment
            node { name = "emqx@127.0.0.1", data_dir = "/opt/emqx/data" }
            listeners.tcp.default {
              bind = "0.0.0.0:1883"   // trailing comment
              tcp_options { nodelay = true }
            }
            listeners.tcp.default.max_connections = 100
            mqtt { max_packet_size = 64KB, ratio: 0.5 }
            authentication = [
              { mechanism = password_based, backend = built_in_database }
            ]
            actions.redis.a.parameters.command_template = ["HINCRBY", "k", "${reason}", "1"]
            rule.sql = """SELECT reason FROM "$events/client_disconnected" """
            include "/opt/emqx/etc/more.hocon"
            "quoted.key" = x
            "#,
        )
        .expect("valid");
        let r = &doc.root;
        assert_eq!(
            r.get("node.name").and_then(Value::as_str),
            Some("emqx@127.0.0.1")
        );
        assert_eq!(
            r.get("listeners.tcp.default.tcp_options.nodelay"),
            Some(&Value::Bool(true))
        );
        assert_eq!(
            r.get("listeners.tcp.default.max_connections"),
            Some(&Value::Int(100))
        );
        assert_eq!(
            r.get("listeners.tcp.default.bind").and_then(Value::as_str),
            Some("0.0.0.0:1883"),
            "dotted keys merge into the earlier object"
        );
        assert_eq!(
            r.get("mqtt.max_packet_size").and_then(Value::as_str),
            Some("64KB")
        );
        assert_eq!(r.get("mqtt.ratio"), Some(&Value::Float(0.5)));
        let Some(Value::Array(authn)) = r.get("authentication") else {
            panic!("array");
        };
        assert_eq!(
            authn[0].get("backend").and_then(Value::as_str),
            Some("built_in_database")
        );
        assert_eq!(
            r.get("actions.redis.a.parameters.command_template"),
            Some(&Value::Array(
                ["HINCRBY", "k", "${reason}", "1"]
                    .map(|s| Value::String(s.into()))
                    .to_vec()
            ))
        );
        assert_eq!(
            r.get("rule.sql").and_then(Value::as_str),
            Some(r#"SELECT reason FROM "$events/client_disconnected" "#)
        );
        assert_eq!(doc.includes, ["/opt/emqx/etc/more.hocon"]);
        let Value::Object(root) = r else {
            panic!("object")
        };
        assert!(root.contains_key("quoted.key"));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for (bad, why) in [
            ("a {\n b = 1\n", "missing"),
            ("a = [1, 2\n", "missing ']'"),
            ("a = {b = 1}}\n", "before '}'"),
            ("a = ${b}\n", "substitutions"),
            ("a += 1\n", "+="),
            ("a\n", "expected '=', ':' or '{' after a"),
            ("a", "a has no value"),
            ("a = \"x\" y\n", "after a quoted string"),
            ("a = \"x\n", "unterminated"),
            ("a = 1 b = 2\n", "not allowed"),
            ("= 1\n", "expected a key"),
            ("include x\n", "quoted file name"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.why.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn later_values_replace_and_objects_merge() {
        let doc = parse("a { x = 1, y = 2 }\na { y = 3 }\nb = 1\nb = 2\n").expect("valid");
        assert_eq!(doc.root.get("a.x"), Some(&Value::Int(1)));
        assert_eq!(doc.root.get("a.y"), Some(&Value::Int(3)));
        assert_eq!(doc.root.get("b"), Some(&Value::Int(2)));
    }
}
