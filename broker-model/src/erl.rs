//! Erlang terms (EMQX's `acl.conf`) read by Erlang itself: `erl` runs `file:consult/1`, the call
//! EMQX makes on the file, and prints each term as tagged JSON for [`Term`].
//!
//! The syntax is Erlang's business; [`crate::acl`] takes the terms it gives.

use std::io::Write as _;
use std::process::Command;

use serde_json::Value;

use crate::error::ModelError;

/// One Erlang term, as far as `acl.conf` uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// An atom such as `allow`.
    Atom(String),
    /// A string (in Erlang, a non-empty list of printable characters).
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

/// Consults the file named by the first plain argument and prints one JSON object per term:
/// `{"atom":[codes]}`, `{"str":[codes]}`, `{"int":N}`, `{"tuple":[..]}`, `{"list":[..]}`, and
/// `{"other":[codes]}` (the term printed) for anything else. Characters are code points, so no
/// escaping is needed. A syntax error goes to standard error with its line, and exit status 1.
const CONSULT: &str = r#"
[Path] = init:get_plain_arguments(),
Codes = fun(L) -> io_lib:format("~w", [L]) end,
E = fun E(T) when is_atom(T) -> ["{\"atom\":", Codes(atom_to_list(T)), "}"];
        E(T) when is_integer(T) -> ["{\"int\":", integer_to_list(T), "}"];
        E(T) when is_tuple(T) ->
            ["{\"tuple\":[", lists:join(",", [E(X) || X <- tuple_to_list(T)]), "]}"];
        E([]) -> "{\"list\":[]}";
        E(T) when is_list(T) ->
            case io_lib:printable_unicode_list(T) of
                true -> ["{\"str\":", Codes(T), "}"];
                false -> ["{\"list\":[", lists:join(",", [E(X) || X <- T]), "]}"]
            end;
        E(T) -> ["{\"other\":", Codes(lists:flatten(io_lib:format("~tp", [T]))), "}"]
    end,
case file:consult(Path) of
    {ok, Terms} -> [io:put_chars([E(T), "\n"]) || T <- Terms], halt(0);
    {error, {Line, Mod, Reason}} ->
        io:format(standard_error, "line ~p: ~ts~n", [Line, Mod:format_error(Reason)]), halt(1);
    {error, Reason} -> io:format(standard_error, "~ts~n", [file:format_error(Reason)]), halt(1)
end.
"#;

/// The terms of `text` (the contents of `file`, named in errors), each ended by `.`, as
/// `file:consult/1` reads them.
pub fn consult(file: &str, text: &str) -> Result<Vec<Term>, ModelError> {
    let io = |source| ModelError::Io {
        file: file.to_owned(),
        source,
    };
    let mut copy = tempfile::NamedTempFile::new().map_err(io)?;
    copy.write_all(text.as_bytes()).map_err(io)?;
    let out = match Command::new("erl")
        .args(["-noshell", "-noinput", "-eval", CONSULT, "-extra"])
        .arg(copy.path())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ModelError::ErlMissing),
        Err(e) => return Err(io(e)),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let output = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let line = output
            .strip_prefix("line ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        return Err(ModelError::syntax(file, line, output.trim()));
    }
    stdout
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .map_err(|e| ModelError::syntax(file, 0, format!("erl printed {line:?}: {e}")))?;
            term(&value).map_err(|why| ModelError::syntax(file, 0, why))
        })
        .collect()
}

fn text(codes: &Value) -> Result<String, String> {
    codes
        .as_array()
        .ok_or("characters must be a list")?
        .iter()
        .map(|c| {
            c.as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .and_then(char::from_u32)
                .ok_or_else(|| format!("not a character: {c}"))
        })
        .collect()
}

fn term(value: &Value) -> Result<Term, String> {
    let Some((tag, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return Err(format!("not a tagged term: {value}"));
    };
    let items = || -> Result<Vec<Term>, String> {
        inner
            .as_array()
            .ok_or_else(|| format!("{tag} must hold a list"))?
            .iter()
            .map(term)
            .collect()
    };
    Ok(match tag.as_str() {
        "atom" => Term::Atom(text(inner)?),
        "str" => Term::Str(text(inner)?),
        "int" => Term::Int(inner.as_i64().ok_or("integer out of range")?),
        "tuple" => Term::Tuple(items()?),
        "list" => Term::List(items()?),
        _ => return Err(format!("unsupported term {}", text(inner)?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_acl_rules() {
        let terms = consult(
            "acl.conf",
            "%% c\n{allow, {username, \"bridge\"}, publish, [\"a/#\"]}.\n{deny, all}.\n{n, 7, [], 'q a', \"é\"}.\n",
        )
        .expect("valid");
        assert_eq!(terms.len(), 3);
        assert_eq!(
            terms[1],
            Term::Tuple(vec![Term::Atom("deny".into()), Term::Atom("all".into())])
        );
        assert_eq!(
            terms[2],
            Term::Tuple(vec![
                Term::Atom("n".into()),
                Term::Int(7),
                Term::List(vec![]),
                Term::Atom("q a".into()),
                Term::Str("é".into()),
            ])
        );
        let Term::Tuple(rule) = &terms[0] else {
            panic!("{:?}", terms[0]);
        };
        assert_eq!(rule[3], Term::List(vec![Term::Str("a/#".into())]));
    }

    #[test]
    fn refuses_broken_terms() {
        for bad in [
            "{allow, all}",
            "{allow, all.",
            "{allow all}.",
            "{allow, \"x}.",
            "{Allow, all}.",
            "{allow, 1.5}.",
            "{allow, <<\"bin\">>}.",
        ] {
            let result = consult("acl.conf", bad);
            assert!(
                matches!(result, Err(ModelError::Syntax { .. })),
                "{bad} should be refused: {result:?}"
            );
        }
    }
}
