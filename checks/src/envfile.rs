//! `.env` files: `NAME=value` lines, as docker compose reads them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::repo::{self, CheckError};

/// Reads `rel` (relative to the repository root) into name → value. Blank lines and `#` comments
/// are skipped; any other line must be `NAME=value` with `NAME` of `[A-Z0-9_]`, each name once.
pub fn load(rel: &str) -> Result<BTreeMap<String, String>, CheckError> {
    parse(rel, &repo::read(rel)?)
}

/// Parses the text of an env file named `rel`.
pub fn parse(rel: &str, text: &str) -> Result<BTreeMap<String, String>, CheckError> {
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let syntax = |why: String| CheckError::Syntax {
            path: PathBuf::from(rel),
            line: i + 1,
            why,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(syntax(format!("{line:?} is not NAME=value")));
        };
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(syntax(format!(
                "{name:?} is not an upper-case variable name"
            )));
        }
        if vars.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(syntax(format!("{name} is set twice")));
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let vars = parse("x", "# c\n\nA_1=x\nB=\n").expect("valid");
        assert_eq!(vars.get("A_1").map(String::as_str), Some("x"));
        assert_eq!(vars.get("B").map(String::as_str), Some(""));
        assert!(parse("x", "A=1\nA=2\n").is_err());
        assert!(parse("x", "lower=1\n").is_err());
        assert!(parse("x", "JUST_A_NAME\n").is_err());
    }
}
