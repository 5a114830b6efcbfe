//! What the dashboard reads from Redis.
//!
//! Counters from the `tapgate:counters:*` hashes (every known reason present, zero when unset;
//! products as the bridge counted them, since the catalogue is the bridge's),
//! recent history and per-minute buckets from the event stream, devices from `tapgate:devices`
//! with their presence and per-device counters, a card's pass (with its sale and whether it may
//! be voided), wallet (balance, and this service day's and week's charges against the caps),
//! deny-list entry and recent events, and the deny list itself. Every function
//! returns JSON ready to send.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::aio::ConnectionLike;
use serde_json::{json, Value};
use tapgate_protocol::{fields, keys, pass_record};
use tapgate_protocol::{
    CardId, Catalogue, Currency, DenyReason, DeviceId, DeviceKind, Event, ProductId, RejectReason,
};

use crate::format::entry_value;
use crate::stream::{self, StreamError, StreamId};
use crate::text::{escape_json, escape_untrusted};

use super::error::WebError;

impl From<StreamError> for WebError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Redis(r) => WebError::Redis(r),
            StreamError::Reply(s) => WebError::Internal(s),
        }
    }
}

type Hash = HashMap<String, String>;

fn numbers(h: &Hash, known: &[&str]) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = known.iter().map(|k| ((*k).to_owned(), 0)).collect();
    for (k, v) in h {
        if let Ok(n) = v.parse::<i64>() {
            out.insert(k.clone(), n);
        }
    }
    out
}

/// Per product: the fields of a counter hash that are product ids, with their counts. The
/// catalogue is the bridge's, so a product shows once it has been counted.
fn per_product(h: &Hash) -> BTreeMap<String, i64> {
    h.iter()
        .filter_map(|(k, v)| Some((ProductId::parse(k)?.to_string(), v.parse().ok()?)))
        .collect()
}

/// `{issued: {PRODUCT: n}, entries: {PRODUCT: n}, denied: {reason: n}, unpaid: {reason: n},
/// rejected: {reason: n}}`. Unpaid entries are riders a fail-open gate let through offline whose
/// card could not pay, by deny reason.
pub(super) async fn counters(conn: &mut impl ConnectionLike) -> Result<Value, WebError> {
    let (issued, entries, denied, unpaid, rejected): (Hash, Hash, Hash, Hash, Hash) = redis::pipe()
        .hgetall(keys::COUNTERS_ISSUED)
        .hgetall(keys::COUNTERS_ENTRIES)
        .hgetall(keys::COUNTERS_DENIED)
        .hgetall(keys::COUNTERS_UNPAID)
        .hgetall(keys::COUNTERS_REJECTED)
        .query_async(conn)
        .await?;
    let deny: Vec<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
    let reject: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
    Ok(json!({
        "issued": per_product(&issued),
        "entries": per_product(&entries),
        "denied": numbers(&denied, &deny),
        "unpaid": numbers(&unpaid, &deny),
        "rejected": numbers(&rejected, &reject),
    }))
}

/// The newest `n` events, oldest first, and the id of the newest (the feed's resume point).
pub(super) async fn history(
    conn: &mut impl ConnectionLike,
    n: usize,
) -> Result<(Vec<Value>, Option<StreamId>), WebError> {
    let entries = stream::latest(conn, None, n).await?;
    let last = entries.last().map(|e| e.id);
    Ok((entries.iter().map(entry_value).collect(), last))
}

/// Entries and denials per minute over the hour up to `now_ms`, bucketed by stream id time.
pub(super) async fn minutes(
    conn: &mut impl ConnectionLike,
    now_ms: u64,
) -> Result<Value, WebError> {
    const MINUTES: usize = 60;
    const MAX_SCAN: usize = 500_000;
    let end_minute = now_ms / 60_000;
    let start = (end_minute + 1 - MINUTES as u64) * 60_000;
    let mut entries = vec![0u64; MINUTES];
    let mut denials = vec![0u64; MINUTES];
    let mut issued = vec![0u64; MINUTES];
    let mut cursor = StreamId::at(start);
    let mut exclusive = false;
    let mut scanned = 0;
    loop {
        let page = stream::range_page(conn, cursor, exclusive, None, 1000).await?;
        for e in &page {
            let slot = usize::try_from((e.id.ms.saturating_sub(start)) / 60_000).unwrap_or(MINUTES);
            let Some(kind) = e.event.as_ref().ok().map(|ev| ev.event) else {
                continue;
            };
            let bucket = match kind {
                tapgate_protocol::EventKind::PassUsed => &mut entries,
                tapgate_protocol::EventKind::PassDenied => &mut denials,
                tapgate_protocol::EventKind::PassIssued => &mut issued,
                _ => continue,
            };
            if let Some(b) = bucket.get_mut(slot) {
                *b += 1;
            }
        }
        scanned += page.len();
        match page.last() {
            Some(last) if page.len() == 1000 && scanned < MAX_SCAN => {
                cursor = last.id;
                exclusive = true;
            }
            _ => break,
        }
    }
    Ok(json!({
        "start": start,
        "minute_ms": 60_000,
        "entries": entries,
        "denials": denials,
        "issued": issued,
    }))
}

fn escape_hash(h: Hash) -> Hash {
    h.into_iter()
        .map(|(k, v)| (escape_untrusted(&k, 64), escape_untrusted(&v, 256)))
        .collect()
}

fn num(h: &Hash, k: &str) -> Option<i64> {
    h.get(k).and_then(|v| v.parse().ok())
}

/// Most devices the dashboard lists.
pub(super) const MAX_DEVICES: usize = 5_000;

/// A device as the dashboard names it: `{kind}/{device}`.
pub(super) type DeviceKey = (DeviceKind, DeviceId);

/// The devices in the `tapgate:devices` set, valid names only, sorted, at most [`MAX_DEVICES`].
pub(super) async fn device_members(
    conn: &mut impl ConnectionLike,
) -> Result<Vec<DeviceKey>, WebError> {
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::DEVICES)
        .query_async(conn)
        .await?;
    let mut devices: Vec<DeviceKey> = members
        .iter()
        .filter_map(|m| {
            let (k, d) = m.split_once('/')?;
            Some((DeviceKind::parse(k)?, DeviceId::new(d).ok()?))
        })
        .collect();
    devices.sort();
    devices.truncate(MAX_DEVICES);
    Ok(devices)
}

/// The dashboard row of each device: presence and counters, or `None` when it has no presence
/// record (the bridge let it expire), so it is not shown.
pub(super) async fn device_rows(
    conn: &mut impl ConnectionLike,
    devices: &[DeviceKey],
) -> Result<Vec<Option<Value>>, WebError> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (kind, dev) in devices {
        pipe.hgetall(keys::device(*kind, dev))
            .hgetall(keys::device_counters(dev));
    }
    let hashes: Vec<Hash> = pipe.query_async(conn).await?;
    Ok(devices
        .iter()
        .zip(hashes.chunks(2))
        .map(|((kind, dev), h)| {
            let empty = Hash::new();
            let presence = h.first().unwrap_or(&empty);
            let counts = h.get(1).unwrap_or(&empty);
            if presence.is_empty() {
                return None;
            }
            Some(json!({
                "kind": kind,
                "device": dev,
                "online": presence.get(fields::presence::ONLINE).map(|v| v == "1"),
                "last_seen": num(presence, fields::presence::LAST_SEEN),
                "uptime_s": num(presence, fields::presence::UPTIME_S),
                "granted": num(counts, fields::device_counters::GRANTED).unwrap_or(0),
                "denied": num(counts, fields::device_counters::DENIED).unwrap_or(0),
                "issued": num(counts, fields::device_counters::ISSUED).unwrap_or(0),
                "rejected": num(counts, fields::device_counters::REJECTED).unwrap_or(0),
            }))
        })
        .collect())
}

/// Every device the bridge has seen and still has presence for: presence and per-device
/// counters, sorted by kind and name.
pub(super) async fn devices(conn: &mut impl ConnectionLike) -> Result<Value, WebError> {
    let members = device_members(conn).await?;
    let rows = device_rows(conn, &members).await?;
    Ok(Value::Array(rows.into_iter().flatten().collect()))
}

/// Parses a card number from a path into its canonical (upper-case) form, or says why not.
/// Every card key the dashboard reads or writes is built from the result.
pub(super) fn card_id(s: &str) -> Result<CardId, WebError> {
    CardId::new(s.to_ascii_uppercase()).map_err(|e| {
        WebError::BadRequest(format!(
            "invalid card number: {}",
            escape_untrusted(&e.to_string(), 200)
        ))
    })
}

/// A card's pass (with time left at `now_ms`, its sale, and whether it may be voided with a void
/// window of `void_window`), its pay-as-you-go wallet (`wallet`), deny-list entry and recent
/// events.
pub(super) async fn card(
    conn: &mut impl ConnectionLike,
    card: &CardId,
    now_ms: u64,
    void_window: Duration,
    catalogue: &Catalogue,
) -> Result<Value, WebError> {
    let (pass, wallet, blocked, recent): (Hash, Hash, Hash, Vec<String>) = redis::pipe()
        .hgetall(keys::pass(card))
        .hgetall(keys::wallet(card))
        .hgetall(keys::blocked(card))
        .lrange(
            keys::card_recent(card),
            0,
            keys::CARD_RECENT_LEN as isize - 1,
        )
        .query_async(conn)
        .await?;
    let pass = pass_view(pass, now_ms, void_window);
    let blocked = blocked_view(blocked);
    let recent = recent_events(conn, &recent).await?;
    let wallet = wallet_view(&wallet, catalogue, now_ms);
    Ok(json!({"card": card, "pass": pass, "wallet": wallet, "blocked": blocked, "recent": recent}))
}

/// What the card lookup shows of a pass record at `now_ms` (`null` when there is none): its
/// terms as sold, its time left, and whether it may be voided within `void_window`.
fn pass_view(pass: Hash, now_ms: u64, void_window: Duration) -> Value {
    let void = super::void::status(&pass, now_ms, void_window);
    // Its price as sold; a record from before prices has none.
    let (price, currency) = match pass_record::read(&pass, 0) {
        Ok(Some(s)) if s.layout != pass_record::Layout::BeforeTerms => {
            let price = i64::try_from(s.pass.terms.price).ok();
            (price, price.map(|_| s.pass.terms.currency))
        }
        _ => (None, None),
    };
    let pass = escape_hash(pass);
    if pass.is_empty() {
        return Value::Null;
    }
    let expires_at = num(&pass, fields::pass::EXPIRES_AT).filter(|e| *e > 0);
    // The store keeps `trips 0` for a pass that does not count trips, and removes one that
    // counts them with its last trip: a pass has trips left exactly when it counts them.
    json!({
        "type": pass.get(fields::pass::TYPE),
        "trips_remaining": num(&pass, fields::pass::TRIPS).filter(|n| *n > 0),
        "issued_at": num(&pass, fields::pass::ISSUED_AT),
        "expires_at": expires_at,
        "remaining_ms": expires_at.map(|e| (e - i64::try_from(now_ms).unwrap_or(i64::MAX)).max(0)),
        "price": price,
        "currency": currency,
        "price_text": price.zip(currency).map(|(p, c)| c.format(p)),
        "sold_by": pass.get(fields::pass::SOLD_BY),
        "day": pass.get(fields::pass::DAY),
        "used_at": num(&pass, fields::pass::USED_AT),
        "void": void,
    })
}

/// What the card lookup shows of a deny-list entry, `null` when the card is not blocked.
fn blocked_view(blocked: Hash) -> Value {
    let blocked = escape_hash(blocked);
    if blocked.is_empty() {
        return Value::Null;
    }
    json!({
        "reason": blocked.get(fields::blocked::REASON),
        "by": blocked.get(fields::blocked::BY),
        "at": num(&blocked, fields::blocked::AT),
    })
}

/// The card's recent events, newest first, from its list of stream ids (a list from before
/// holds the events' JSON); an event trimmed from the stream since is left out, and one that
/// cannot be read is shown as `unreadable`.
async fn recent_events(
    conn: &mut impl ConnectionLike,
    recent: &[String],
) -> Result<Vec<Value>, WebError> {
    let ids: Vec<StreamId> = recent.iter().filter_map(|r| r.parse().ok()).collect();
    let mut found: HashMap<StreamId, Result<Event, stream::Unreadable>> =
        stream::by_ids(conn, &ids)
            .await?
            .into_iter()
            .map(|e| (e.id, e.event))
            .collect();
    Ok(recent
        .iter()
        .filter_map(|r| match r.parse::<StreamId>() {
            Ok(id) => found.remove(&id).map(|e| e.map_err(|e| e.to_string())),
            Err(_) => Some(Event::from_json(r.as_bytes()).map_err(|e| e.to_string())),
        })
        .map(|e| match e {
            Ok(e) => serde_json::to_value(e).unwrap_or(Value::Null),
            Err(e) => json!({"unreadable": e}),
        })
        .map(escape_json)
        .collect())
}

/// What the card lookup shows of a wallet at `now_ms`, `null` when the card has none: the
/// balance and the totals, and under the catalogue's pay-as-you-go terms the service day and week
/// `now_ms` falls in ([`Catalogue::fare_day`]), what the card was charged in each against the
/// caps, and what its next entry would cost. Amounts are minor units of `currency` (the wallet's,
/// else the catalogue's), each with a `_text` as people read it.
pub(super) fn wallet_view(wallet: &Hash, catalogue: &Catalogue, now_ms: u64) -> Value {
    use fields::wallet as w;
    if wallet.is_empty() {
        return Value::Null;
    }
    let currency = wallet
        .get(w::CURRENCY)
        .and_then(|c| Currency::parse(c))
        .unwrap_or(catalogue.currency);
    let text = |minor: Option<i64>| minor.map(|m| currency.format(m));
    let amount = |field: &str| num(wallet, field);
    let balance = amount(w::BALANCE);
    let fare_day = catalogue.fare_day(now_ms);
    let (day, week) = (fare_day.day.to_string(), fare_day.week.to_string());
    let day_charged = amount(&w::day(&day)).unwrap_or(0);
    let week_charged = amount(&w::week(&week)).unwrap_or(0);
    let payg = catalogue.payg.as_ref();
    let cap = |c: Option<u64>| c.and_then(|c| i64::try_from(c).ok());
    let daily_cap = cap(payg.and_then(|p| p.daily_cap));
    let weekly_cap = cap(payg.and_then(|p| p.weekly_cap));
    let next_fare = payg.map(|p| {
        let used = |n: i64| u64::try_from(n).unwrap_or(0);
        i64::try_from(p.charge(used(day_charged), used(week_charged))).unwrap_or(i64::MAX)
    });
    json!({
        "balance": balance,
        "balance_text": text(balance),
        "currency": currency,
        "topped_up": amount(w::TOPPED_UP),
        "charged": amount(w::CHARGED),
        "day": day,
        "day_charged": day_charged,
        "day_charged_text": text(Some(day_charged)),
        "daily_cap": daily_cap,
        "daily_cap_text": text(daily_cap),
        "week": week,
        "week_charged": week_charged,
        "week_charged_text": text(Some(week_charged)),
        "weekly_cap": weekly_cap,
        "weekly_cap_text": text(weekly_cap),
        "fare": payg.and_then(|p| i64::try_from(p.fare).ok()),
        "next_fare": next_fare,
        "next_fare_text": text(next_fare),
    })
}

/// The deny list: `[{card, reason, by, at}]`, sorted by card.
pub(super) async fn blocked(conn: &mut impl ConnectionLike) -> Result<Value, WebError> {
    let index: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::BLOCKED_INDEX)
        .query_async(conn)
        .await?;
    let cards: Vec<(String, String, Option<CardId>)> = index
        .into_iter()
        .map(|(c, r)| {
            let id = CardId::new(c.as_str()).ok();
            (c, r, id)
        })
        .collect();
    let mut pipe = redis::pipe();
    for (_, _, id) in &cards {
        if let Some(id) = id {
            pipe.hgetall(keys::blocked(id));
        }
    }
    let details: Vec<Hash> = if pipe.cmd_iter().next().is_some() {
        pipe.query_async(conn).await?
    } else {
        Vec::new()
    };
    let mut details = details.into_iter();
    let out: Vec<Value> = cards
        .into_iter()
        .map(|(card, reason, id)| {
            let d = if id.is_some() {
                details.next().unwrap_or_default()
            } else {
                Hash::new()
            };
            let card = id
                .as_ref()
                .map_or_else(|| escape_untrusted(&card, 64), |i| i.to_string());
            json!({"card": card, "reason": escape_untrusted(&reason, 64),
                   "by": d.get("by").map(|b| escape_untrusted(b, 64)), "at": num(&d, "at")})
        })
        .collect();
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-03-02 10:00 UTC.
    const NOW: u64 = 1_772_445_600_000;

    fn wallet(fields: &[(&str, &str)]) -> Hash {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn catalogue(payg: &str) -> Catalogue {
        let text = format!(
            "currency = \"EUR\"\ntime_zone = \"UTC\"\n{payg}\n[[product]]\nid = \"DAY\"\n\
             name = \"Day pass\"\nprice = 750\nvalidity = \"service_day\"\n"
        );
        Catalogue::parse("fares.toml", &text).expect("fares")
    }

    #[test]
    fn a_wallet_shows_this_day_and_week_against_the_caps() {
        let c = catalogue("[payg]\nfare = 250\ndaily_cap = 700\nweekly_cap = 3000\n");
        let w = wallet(&[
            ("balance", "-50"),
            ("topped_up", "1000"),
            ("charged", "1050"),
            ("currency", "EUR"),
            ("day:2026-03-01", "700"),
            ("day:2026-03-02", "600"),
            ("week:2026-02-23", "350"),
            ("week:2026-03-02", "600"),
        ]);
        let v = wallet_view(&w, &c, NOW);
        assert_eq!(v["balance_text"], "-0.50 EUR");
        assert_eq!(
            (&v["day"], &v["week"]),
            (&json!("2026-03-02"), &json!("2026-03-02"))
        );
        assert_eq!(
            (&v["day_charged"], &v["week_charged"]),
            (&json!(600), &json!(600))
        );
        assert_eq!(
            (&v["daily_cap_text"], &v["weekly_cap_text"]),
            (&json!("7.00 EUR"), &json!("30.00 EUR"))
        );
        assert_eq!(
            v["next_fare"], 100,
            "the fare, cut to what is left of the day's cap"
        );
        // A new service day starts from nothing; the week goes on.
        let v = wallet_view(&w, &c, NOW + 86_400_000);
        assert_eq!(
            (&v["day_charged"], &v["week_charged"], &v["next_fare"]),
            (&json!(0), &json!(600), &json!(250))
        );
    }

    #[test]
    fn without_caps_or_pay_as_you_go_only_the_balance_shows() {
        let w = wallet(&[("balance", "1000"), ("topped_up", "1000"), ("charged", "0")]);
        let v = wallet_view(&w, &catalogue("[payg]\nfare = 250\n"), NOW);
        assert_eq!(
            (&v["daily_cap"], &v["weekly_cap"]),
            (&Value::Null, &Value::Null)
        );
        assert_eq!(v["next_fare"], 250);
        let v = wallet_view(&w, &catalogue(""), NOW);
        assert_eq!((&v["fare"], &v["next_fare"]), (&Value::Null, &Value::Null));
        assert_eq!(v["balance_text"], "10.00 EUR");
        assert_eq!(wallet_view(&Hash::new(), &catalogue(""), NOW), Value::Null);
    }
}
