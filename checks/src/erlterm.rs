//! A small reader for Erlang terms, enough for EMQX's `acl.conf`.
//!
//! It reads a sequence of terms each ended by `.`: atoms (`allow`, `'quoted'`), strings
//! (`"..."` with `\` escapes), integers, tuples `{...}` and lists `[...]`; `%` starts a comment
//! to the end of the line. Anything else is refused with its line number.

use std::path::PathBuf;

use crate::repo::CheckError;

/// One Erlang term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// An atom such as `allow`.
    Atom(String),
    /// A double-quoted string.
    Str(String),
    /// An integer.
    Int(i64),
    /// `{A, B, ...}`.
    Tuple(Vec<Term>),
    /// `[A, B, ...]`.
    List(Vec<Term>),
}

impl Term {
    /// The atom's name, if this is an atom.
    pub fn atom(&self) -> Option<&str> {
        match self {
            Term::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// The string, if this is a string.
    pub fn str(&self) -> Option<&str> {
        match self {
            Term::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct Reader<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    path: &'a str,
}

impl Reader<'_> {
    fn error(&self, why: impl Into<String>) -> CheckError {
        CheckError::Syntax {
            path: PathBuf::from(self.path),
            line: self.line,
            why: why.into(),
        }
    }

    fn skip_blank(&mut self) {
        while let Some(&c) = self.chars.peek() {
            if c == '\n' {
                self.line += 1;
                self.chars.next();
            } else if c.is_whitespace() {
                self.chars.next();
            } else if c == '%' {
                while let Some(&c) = self.chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.chars.next();
                }
            } else {
                return;
            }
        }
    }

    fn expect(&mut self, want: char) -> Result<(), CheckError> {
        self.skip_blank();
        match self.chars.next() {
            Some(c) if c == want => Ok(()),
            Some(c) => Err(self.error(format!("expected {want:?}, found {c:?}"))),
            None => Err(self.error(format!("expected {want:?}, found the end of the file"))),
        }
    }

    fn quoted(&mut self, quote: char) -> Result<String, CheckError> {
        let mut out = String::new();
        loop {
            match self.chars.next() {
                None => return Err(self.error("unterminated quoted text")),
                Some('\n') => return Err(self.error("line break inside quoted text")),
                Some('\\') => match self.chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c @ ('\\' | '"' | '\'')) => out.push(c),
                    other => return Err(self.error(format!("unknown escape \\{other:?}"))),
                },
                Some(c) if c == quote => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn sequence(&mut self, close: char) -> Result<Vec<Term>, CheckError> {
        let mut items = Vec::new();
        self.skip_blank();
        if self.chars.peek() == Some(&close) {
            self.chars.next();
            return Ok(items);
        }
        loop {
            items.push(self.term()?);
            self.skip_blank();
            match self.chars.next() {
                Some(',') => continue,
                Some(c) if c == close => return Ok(items),
                Some(c) => {
                    return Err(self.error(format!("expected ',' or {close:?}, found {c:?}")))
                }
                None => return Err(self.error(format!("missing {close:?}"))),
            }
        }
    }

    fn term(&mut self) -> Result<Term, CheckError> {
        self.skip_blank();
        let Some(&c) = self.chars.peek() else {
            return Err(self.error("expected a term, found the end of the file"));
        };
        match c {
            '{' => {
                self.chars.next();
                Ok(Term::Tuple(self.sequence('}')?))
            }
            '[' => {
                self.chars.next();
                Ok(Term::List(self.sequence(']')?))
            }
            '"' => {
                self.chars.next();
                Ok(Term::Str(self.quoted('"')?))
            }
            '\'' => {
                self.chars.next();
                Ok(Term::Atom(self.quoted('\'')?))
            }
            c if c.is_ascii_lowercase() => {
                let mut atom = String::new();
                while let Some(&c) = self.chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '@' {
                        atom.push(c);
                        self.chars.next();
                    } else {
                        break;
                    }
                }
                Ok(Term::Atom(atom))
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut digits = String::new();
                digits.push(c);
                self.chars.next();
                while let Some(&c) = self.chars.peek() {
                    if c.is_ascii_digit() {
                        digits.push(c);
                        self.chars.next();
                    } else {
                        break;
                    }
                }
                digits
                    .parse()
                    .map(Term::Int)
                    .map_err(|_| self.error(format!("{digits:?} is not an integer")))
            }
            other => Err(self.error(format!("unexpected {other:?}"))),
        }
    }
}

/// Reads every term in `text` (a file named `path`, for errors), each ended by `.`.
pub fn parse(path: &str, text: &str) -> Result<Vec<Term>, CheckError> {
    let mut reader = Reader {
        chars: text.chars().peekable(),
        line: 1,
        path,
    };
    let mut terms = Vec::new();
    loop {
        reader.skip_blank();
        if reader.chars.peek().is_none() {
            return Ok(terms);
        }
        terms.push(reader.term()?);
        reader.expect('.')?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_acl_rules() {
        let terms = parse(
            "acl.conf",
            "%% c\n{allow, {username, \"bridge\"}, publish, [\"a/#\"]}.\n{deny, all}.\n",
        )
        .expect("valid");
        assert_eq!(terms.len(), 2);
        assert_eq!(
            terms[1],
            Term::Tuple(vec![Term::Atom("deny".into()), Term::Atom("all".into())])
        );
    }

    #[test]
    fn refuses_broken_terms() {
        for bad in [
            "{allow, all}",
            "{allow, all.",
            "{allow all}.",
            "[\"a\" \"b\"].",
            "{allow, \"x}.",
            "{Allow, all}.",
        ] {
            assert!(parse("acl.conf", bad).is_err(), "{bad}");
        }
    }
}
