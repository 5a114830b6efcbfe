//! Start-up's one-off repair of card keys written before card ids were canonical
//! (`tapgate:card:{04ab}:…`): they, and the deny-list index's fields, move to their upper-case
//! names, so a card blocked as `04ab` is denied when read as `04AB`.

use redis::Script;
use tapgate_protocol::{keys, CardId};
use tapgate_runtime::redis::RedisLink;

use super::{no_perm, Store, StoreError};

impl Store {
    /// Moves card keys written before card ids were canonical (`tapgate:card:{04ab}:…`) to their
    /// upper-case names, and the deny-list index's fields likewise, so a card blocked as `04ab`
    /// is denied when read as `04AB`. Idempotent; run at start-up before any tap is decided.
    /// Where both names exist, the canonical key wins for the deny list and recent events (the
    /// legacy one is dropped); two passes are both kept and reported, for an operator to settle.
    ///
    /// Start-up never needs more than the bridge's own Redis user may do: what that user may
    /// not touch (`NOPERM`: the block index is the monitor's) is left as it is and reported in
    /// [`Migration::skipped`], and keys it may not list ([`Migration::unlisted`]: only the admin
    /// may `SCAN`) are not looked for; neither is an error. Decisions read
    /// only the card's own keys, which the bridge's user may move.
    pub async fn migrate_card_keys(&self) -> Result<Migration, StoreError> {
        let mut con = self.con.clone();
        let mut report = Migration::default();
        migrate_keys(&mut con, &mut report).await?;
        migrate_index_fields(&mut con, &mut report).await?;
        Ok(report)
    }
}

/// What [`Store::migrate_card_keys`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    /// Keys (and index fields) renamed to their canonical card id.
    pub moved: usize,
    /// Legacy keys dropped because the canonical one already existed.
    pub dropped: usize,
    /// Legacy pass keys left in place because the card also has a canonical pass.
    pub conflicts: Vec<String>,
    /// Keys and index fields left as they are because this Redis user may not change them
    /// (for a user that may: the Redis admin, or the monitor for the block index).
    pub skipped: Vec<String>,
    /// Card keys were not looked for: this Redis user may not list key names (`SCAN`, refused
    /// to every user but the admin, as key names hold card numbers).
    pub unlisted: bool,
}

/// Moves every card key written with a lower-case card to the canonical key
/// ([`keys::card_key`]); `report` says what moved, was dropped, conflicted or was not ours to
/// touch.
async fn migrate_keys(con: &mut RedisLink, report: &mut Migration) -> Result<(), StoreError> {
    let script = Script::new(MIGRATE_KEY);
    let mut cursor: u64 = 0;
    loop {
        let scanned: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys::CARD_KEYS)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await;
        let (next, found) = match scanned {
            Err(e) if no_perm(&e) => {
                report.unlisted = true;
                (0, Vec::new())
            }
            other => other?,
        };
        for key in found {
            let Some((legacy_card, kind)) = legacy_card_key(&key) else {
                continue;
            };
            let Ok(card) = CardId::new(legacy_card) else {
                continue;
            };
            let merge = if kind == "pass" { "keep" } else { "drop" };
            let result: Result<String, _> = script
                .key(&key)
                .key(keys::card_key(&card, kind))
                .arg(merge)
                .invoke_async(con)
                .await;
            let result = match result {
                Err(e) if no_perm(&e) => {
                    report.skipped.push(key);
                    continue;
                }
                other => other?,
            };
            match result.as_str() {
                "moved" => report.moved += 1,
                "dropped" => report.dropped += 1,
                _ => report.conflicts.push(key),
            }
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}

/// Renames every field of the blocked index written with a lower-case card to the canonical
/// card.
async fn migrate_index_fields(
    con: &mut RedisLink,
    report: &mut Migration,
) -> Result<(), StoreError> {
    let index = Script::new(MIGRATE_INDEX_FIELD);
    let mut cursor: u64 = 0;
    loop {
        let (next, pairs): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(keys::BLOCKED_INDEX)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await?;
        for field in pairs.iter().step_by(2) {
            let Ok(card) = CardId::new(field.as_str()) else {
                continue;
            };
            if card.as_str() == field {
                continue;
            }
            let moved: Result<i64, _> = index
                .key(keys::BLOCKED_INDEX)
                .arg(field)
                .arg(card.as_str())
                .invoke_async(con)
                .await;
            match moved {
                Err(e) if no_perm(&e) => report
                    .skipped
                    .push(format!("{} field {field:?}", keys::BLOCKED_INDEX)),
                other => {
                    other?;
                    report.moved += 1;
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}

/// Renames a legacy card key to its canonical name. KEYS: legacy, canonical; ARGV: what to do
/// when both exist (`keep` both, or `drop` the legacy one).
const MIGRATE_KEY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'moved' end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return 'moved'
end
if ARGV[1] == 'keep' then return 'kept' end
redis.call('DEL', KEYS[1])
return 'dropped'
";

/// Moves a deny-list index field to its canonical card id. KEYS: index; ARGV: legacy, canonical.
const MIGRATE_INDEX_FIELD: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
redis.call('HSETNX', KEYS[1], ARGV[2], v)
return redis.call('HDEL', KEYS[1], ARGV[1])
";

/// `tapgate:card:{04ab}:blocked` → `("04ab", "blocked")` when the card part is not upper case.
fn legacy_card_key(key: &str) -> Option<(&str, &str)> {
    let (card, kind) = keys::split_card_key(key)?;
    (card.bytes().any(|b| b.is_ascii_lowercase())).then_some((card, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys() {
        assert_eq!(
            legacy_card_key("tapgate:card:{04ab}:blocked"),
            Some(("04ab", "blocked"))
        );
        assert_eq!(legacy_card_key("tapgate:card:{04AB}:blocked"), None);
        assert_eq!(legacy_card_key("tapgate:card:{123}:pass"), None);
        assert_eq!(legacy_card_key("tapgate:sale:{t1}"), None);
    }
}
