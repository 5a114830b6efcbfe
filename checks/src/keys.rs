//! Every Redis key a dashboard may name.
//!
//! The bridge and the monitor write the keys in [`tapgate_protocol::keys`]; the EMQX rule engine
//! (emqx/etc/tapgate-rules.hocon) writes the four client-event counters in `keys::EMQX_KEYS`. A dashboard query
//! that names any other key shows nothing, silently, so [`match_key`] refuses it.
//!
//! Keys with a per-device or per-card part are turned into patterns by building the real key
//! with the protocol's own functions from a sentinel id, then replacing the sentinel with a hole
//! (`{device}`, `{card}`, `{id}`). A hole matches either a dashboard variable (`$gate`,
//! `${gate}`, `[[gate]]`) or a literal that is a valid id of that kind.

use tapgate_protocol::ids::{CardId, DeviceId, DeviceKind, MessageId};
use tapgate_protocol::keys::{self, EMQX_KEYS};

const DEVICE_SENTINEL: &str = "SENTINELDEVICE";
const CARD_SENTINEL: &str = "SENTINELCARD";
const ID_SENTINEL: &str = "SENTINELID";
const DAY_SENTINEL: &str = "SENTINELDAY";

/// What a hole in a key pattern stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hole {
    /// A device id.
    Device,
    /// A card number.
    Card,
    /// A device message id.
    Id,
    /// A service day, `YYYY-MM-DD`.
    Day,
}

impl Hole {
    fn name(self) -> &'static str {
        match self {
            Hole::Device => "{device}",
            Hole::Card => "{card}",
            Hole::Id => "{id}",
            Hole::Day => "{day}",
        }
    }

    fn accepts(self, literal: &str) -> bool {
        match self {
            Hole::Device => DeviceId::new(literal).is_ok(),
            Hole::Card => CardId::new(literal).is_ok(),
            Hole::Id => MessageId::new(literal).is_ok(),
            Hole::Day => {
                let b = literal.as_bytes();
                b.len() == 10
                    && b.iter().enumerate().all(|(i, c)| {
                        if i == 4 || i == 7 {
                            *c == b'-'
                        } else {
                            c.is_ascii_digit()
                        }
                    })
            }
        }
    }
}

/// One part of a documented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text that must appear as is.
    Text(String),
    /// A per-device, per-card or per-message part.
    Hole(Hole),
}

/// A documented key: fixed text and holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern {
    /// Its parts, in order.
    pub parts: Vec<Part>,
}

impl KeyPattern {
    fn from_built(key: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = key;
        let sentinels = [
            (DEVICE_SENTINEL, Hole::Device),
            (CARD_SENTINEL, Hole::Card),
            (ID_SENTINEL, Hole::Id),
            (DAY_SENTINEL, Hole::Day),
        ];
        loop {
            let next = sentinels
                .iter()
                .filter_map(|(s, h)| rest.find(s).map(|at| (at, *s, *h)))
                .min_by_key(|(at, _, _)| *at);
            match next {
                Some((at, sentinel, hole)) => {
                    if at > 0 {
                        parts.push(Part::Text(rest[..at].to_owned()));
                    }
                    parts.push(Part::Hole(hole));
                    rest = &rest[at + sentinel.len()..];
                }
                None => {
                    if !rest.is_empty() {
                        parts.push(Part::Text(rest.to_owned()));
                    }
                    return Self { parts };
                }
            }
        }
    }
}

impl std::fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => f.write_str(t)?,
                Part::Hole(h) => f.write_str(h.name())?,
            }
        }
        Ok(())
    }
}

/// Every documented key: the protocol's keys and [`EMQX_KEYS`].
pub fn documented() -> Vec<KeyPattern> {
    let (Ok(device), Ok(card), Ok(id)) = (
        DeviceId::new(DEVICE_SENTINEL),
        CardId::new(CARD_SENTINEL),
        MessageId::new(ID_SENTINEL),
    ) else {
        return Vec::new();
    };
    let mut built: Vec<String> = [
        keys::COUNTERS_ISSUED,
        keys::COUNTERS_ENTRIES,
        keys::COUNTERS_DENIED,
        keys::COUNTERS_REJECTED,
        keys::EVENTS_STREAM,
        keys::BLOCKED_INDEX,
        keys::DEVICES,
    ]
    .iter()
    .map(|k| (*k).to_owned())
    .collect();
    built.extend([
        keys::device_counters(&device),
        keys::pass(&card),
        keys::blocked(&card),
        keys::card_recent(&card),
        keys::sale(&device),
        keys::revenue(DAY_SENTINEL),
    ]);
    for kind in DeviceKind::ALL {
        built.push(keys::seen(kind, &device, &id));
        built.push(keys::device(kind, &device));
    }
    built.extend(EMQX_KEYS.iter().map(|k| (*k).to_owned()));
    built.iter().map(|k| KeyPattern::from_built(k)).collect()
}

/// A piece of a key as a dashboard writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Char(char),
    Variable,
}

/// Splits a dashboard key into characters and Grafana variables (`$name`, `${name}`,
/// `${name:format}`, `[[name]]`).
fn pieces(key: &str) -> Vec<Piece> {
    let chars: Vec<char> = key.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && chars.get(i + 1) == Some(&'{') {
            if let Some(end) = chars[i..].iter().position(|c| *c == '}') {
                out.push(Piece::Variable);
                i += end + 1;
                continue;
            }
        }
        if c == '$' && chars.get(i + 1).is_some_and(|c| ident(*c)) {
            i += 1;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            out.push(Piece::Variable);
            continue;
        }
        if c == '[' && chars.get(i + 1) == Some(&'[') {
            if let Some(end) = chars[i..].windows(2).position(|w| w == [']', ']']) {
                out.push(Piece::Variable);
                i += end + 2;
                continue;
            }
        }
        out.push(Piece::Char(c));
        i += 1;
    }
    out
}

fn matches(parts: &[Part], pieces: &[Piece]) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return pieces.is_empty();
    };
    match first {
        Part::Text(text) => {
            let n = text.chars().count();
            pieces.len() >= n
                && text.chars().zip(pieces).all(|(c, p)| *p == Piece::Char(c))
                && matches(rest, &pieces[n..])
        }
        Part::Hole(hole) => {
            if pieces.first() == Some(&Piece::Variable) && matches(rest, &pieces[1..]) {
                return true;
            }
            // A literal id: the longest run of plain characters that the hole accepts.
            let mut literal = String::new();
            for (i, p) in pieces.iter().enumerate() {
                let Piece::Char(c) = p else { break };
                literal.push(*c);
                if hole.accepts(&literal) && matches(rest, &pieces[i + 1..]) {
                    return true;
                }
            }
            false
        }
    }
}

/// The documented key pattern that `key` (as written in a dashboard, possibly with Grafana
/// variables) names, or `None` if it names no documented key.
pub fn match_key<'a>(key: &str, documented: &'a [KeyPattern]) -> Option<&'a KeyPattern> {
    let pieces = pieces(key);
    documented.iter().find(|p| matches(&p.parts, &pieces))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_come_from_the_protocol() {
        let names: Vec<String> = documented().iter().map(|p| p.to_string()).collect();
        for expected in [
            "tapgate:counters:issued",
            "tapgate:counters:device:{device}",
            "tapgate:device:gate:{device}",
            "tapgate:device:terminal:{device}",
            "tapgate:card:{{card}}:pass",
            "tapgate:seen:{gate:{device}}:{id}",
            "tapgate:emqx:dropped_topics",
            "tapgate:revenue:{day}",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
    }

    #[test]
    fn matches_literals_and_variables() {
        let doc = documented();
        for ok in [
            "tapgate:counters:issued",
            "tapgate:counters:device:$gate",
            "tapgate:counters:device:${gate}",
            "tapgate:counters:device:${gate:raw}",
            "tapgate:counters:device:[[gate]]",
            "tapgate:counters:device:g-1",
            "tapgate:device:gate:$gate",
            "tapgate:card:{0412AB}:pass",
            "tapgate:card:{$card}:recent",
            "tapgate:emqx:authz",
        ] {
            assert!(match_key(ok, &doc).is_some(), "{ok} should match");
        }
        for bad in [
            "tapgate:counters:issue",
            "tapgate:counters:issued:x",
            "tapgate:counters:device:",
            "tapgate:counters:device:g/1",
            "tapgate:device:bus:$gate",
            "tapgate:card:0412AB:pass",
            "tapgate:counters:$what",
            "tapgate:emqx:disconnect",
            "$key",
            "",
        ] {
            assert!(match_key(bad, &doc).is_none(), "{bad} should not match");
        }
    }
}
