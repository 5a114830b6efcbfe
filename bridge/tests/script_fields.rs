//! The bridge's Lua scripts use exactly the hash field and stream field names of the protocol
//! crate (`tapgate_protocol::fields`, `tapgate_protocol::stream`): every literal field name a
//! script reads or writes is one the protocol lists for that key, and every name the protocol
//! lists for a key the scripts own is one a script uses.
//!
//! The scripts are read as text: each `redis.call(...)` (or `call(...)`, the local `decide.lua`
//! binds to it) is split into its arguments, the key argument says which key it is (`k_pass` is
//! the pass in `decide.lua`, `keys[1]` the presence hash in `clock.lua`: see the key list at
//! the top of each script), and the quoted literals
//! in field positions are the names used.

use std::collections::{BTreeMap, BTreeSet};

use tapgate_protocol::{fields, stream};

const DECIDE: &str = include_str!("../src/store/decide.lua");
const CLOCK: &str = include_str!("../src/store/clock.lua");
const REJECT: &str = include_str!("../src/store/reject.lua");

/// The keys whose field names are checked, by script and key expression.
const KEYS: [(&str, &str, &str); 9] = [
    ("decide", "k_pass", "pass"),
    ("decide", "k_sale", "sale"),
    ("decide", "k_presence", "presence"),
    ("decide", "k_device", "device counters"),
    ("decide", "k_stream", "stream"),
    ("clock", "keys[1]", "presence"),
    ("clock", "keys[3]", "clock counters"),
    ("clock", "keys[2]", "stream"),
    ("reject", "keys[3]", "device counters"),
];

/// The text of each `name(` call's argument list, balanced over parentheses and quotes.
fn calls<'a>(src: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find(name) {
        let start = at + name.len();
        // `call(` is `redis.call(` or the local bound to it, not `pcall(` or `mycall(`.
        let word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if word {
            rest = &rest[start..];
            continue;
        }
        let body = &rest[start..];
        let (mut depth, mut quote, mut end) = (1usize, None::<char>, None);
        for (i, c) in body.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(' | '{') => depth += 1,
                (None, ')' | '}') => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.expect("balanced call");
        out.push(&body[..end]);
        rest = &body[end..];
    }
    out
}

/// Splits an argument list at top-level commas.
fn args(list: &str) -> Vec<&str> {
    let (mut out, mut depth, mut quote, mut from) = (Vec::new(), 0usize, None::<char>, 0);
    for (i, c) in list.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '{') => depth += 1,
            (None, ')' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                out.push(list[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[from..].trim());
    out
}

/// The quoted literals in an expression (`'granted'`, `flagged and 'flagged' or 'cleared'`).
fn literals(expr: &str) -> Vec<String> {
    expr.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Field names used per (script, key expression), in the order written.
fn used() -> BTreeMap<(&'static str, String), Vec<String>> {
    let mut out: BTreeMap<(&'static str, String), Vec<String>> = BTreeMap::new();
    for (script, src) in [("decide", DECIDE), ("clock", CLOCK), ("reject", REJECT)] {
        let mut add = |key: &str, names: Vec<String>| {
            out.entry((script, key.to_owned()))
                .or_default()
                .extend(names);
        };
        for call in calls(src, "call(") {
            let a = args(call);
            let (Some(cmd), Some(key)) = (a.first(), a.get(1)) else {
                continue;
            };
            let rest = &a[2..];
            let names: Vec<String> = match cmd.trim_matches('\'') {
                "HSET" => rest.iter().step_by(2).flat_map(|f| literals(f)).collect(),
                "HMGET" | "HGET" | "HDEL" => rest.iter().flat_map(|f| literals(f)).collect(),
                "HINCRBY" => rest.iter().take(1).flat_map(|f| literals(f)).collect(),
                "XADD" => {
                    let star = rest.iter().position(|a| *a == "'*'").expect("XADD id");
                    let pairs = &rest[star + 1..];
                    if pairs.len() == 1 && pairs[0].starts_with("unpack(fields") {
                        // The pairs are the `fields` table built above the call.
                        let table = calls(src, "local fields = {")
                            .into_iter()
                            .next()
                            .expect("fields table");
                        args(table)
                            .iter()
                            .step_by(2)
                            .flat_map(|f| literals(f))
                            .collect()
                    } else if pairs == ["..."] {
                        // The pairs are the arguments of the script's `append(` calls.
                        calls(src, "append(")
                            .into_iter()
                            .filter(|c| *c != "...")
                            .flat_map(|c| {
                                args(c)
                                    .iter()
                                    .step_by(2)
                                    .flat_map(|f| literals(f))
                                    .collect::<Vec<_>>()
                            })
                            .collect()
                    } else {
                        pairs.iter().step_by(2).flat_map(|f| literals(f)).collect()
                    }
                }
                _ => continue,
            };
            add(key, names);
        }
        // decide.lua counts per-device fields through a helper.
        for call in calls(src, "count_device(") {
            if let Some(field) = args(call).first() {
                add("k_device", literals(field));
            }
        }
    }
    out
}

fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names.into_iter().map(str::to_owned).collect()
}

#[test]
fn scripts_use_exactly_the_protocol_field_names() {
    let used = used();
    let by_hash = |hash: &str| -> BTreeSet<String> {
        KEYS.iter()
            .filter(|(_, _, h)| *h == hash)
            .flat_map(|(script, key, _)| {
                used.get(&(*script, (*key).to_owned()))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    // Every field written now, and of the earlier layout's only those read.
    let pass = by_hash("pass");
    assert!(
        pass.is_superset(&set(fields::pass::ALL)),
        "pass hash: {pass:?}"
    );
    let known = set(fields::pass::ALL.into_iter().chain(fields::pass::EARLIER));
    assert!(pass.is_subset(&known), "pass hash: {pass:?}");
    assert_eq!(by_hash("sale"), set(fields::sale::ALL), "sale hash");
    // The bridge's Rust writes the other presence fields, through the same constants.
    assert_eq!(
        by_hash("presence"),
        set(fields::presence::CLOCK),
        "presence hash"
    );
    assert_eq!(
        by_hash("device counters"),
        set(fields::device_counters::ALL),
        "per-device counters"
    );
    assert_eq!(
        by_hash("clock counters"),
        set(fields::clock_counters::ALL),
        "clock counters"
    );
    let decide_stream = used
        .get(&("decide", "k_stream".to_owned()))
        .expect("decide appends events");
    // Its two layouts: with an amount, then without.
    let short = &stream::DECIDE_FIELDS[..stream::DECIDE_FIELDS.len() - stream::AMOUNT_FIELDS.len()];
    let layouts: Vec<&str> = stream::DECIDE_FIELDS.iter().chain(short).copied().collect();
    // (Read once for each of `append`'s two XADDs, with and without trimming.)
    assert!(
        !decide_stream.is_empty()
            && decide_stream
                .chunks(layouts.len())
                .all(|c| c == &layouts[..]),
        "decide writes the decide fields, in order, with an amount and without: {decide_stream:?}"
    );
    assert!(
        by_hash("stream").is_subset(&set(stream::FIELDS)),
        "stream fields {:?}",
        by_hash("stream")
    );
}

#[test]
fn the_reader_sees_what_it_should() {
    let list = "'HSET', K[11], 'type', p.type, 'trips', f(a, 'x'), 'issued_at', {1, 2}";
    assert_eq!(
        args(list),
        [
            "'HSET'",
            "K[11]",
            "'type'",
            "p.type",
            "'trips'",
            "f(a, 'x')",
            "'issued_at'",
            "{1, 2}"
        ]
    );
    assert_eq!(calls("a(b(c), ')') x a(d)", "a("), ["b(c), ')'", "d"]);
    assert_eq!(
        literals("flagged and 'flagged' or 'cleared'"),
        ["flagged", "cleared"]
    );
    // Every key the table names is used by its script.
    let used = used();
    for (script, key, hash) in KEYS {
        assert!(
            used.get(&(script, key.to_owned()))
                .is_some_and(|n| !n.is_empty()),
            "{script} {key} ({hash})"
        );
    }
}
