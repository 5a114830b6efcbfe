//! Redis Sentinel asked as a quorum: the primary is the node a majority of the configured
//! sentinels names, never what the first one to answer says.
//!
//! [`choose`] is the rule, without I/O: it takes what each sentinel answered (or that it did not)
//! and returns the primary a majority names together with the replicas any answering sentinel
//! still sees up. [`Sentinels`] asks every sentinel at once, each within [`ASK_TIMEOUT`], and
//! applies it; [`Sentinels::on_switch`] wakes a link when a sentinel announces a new primary.
//! The majority is of the sentinels configured, not of those that answered: a sentinel cut off
//! with an old primary names it still, and on its own it is no majority.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushKind, RedisResult};
use tokio::sync::Notify;

/// How long one sentinel may take to connect or to answer before it counts as unreachable.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis node as the sentinels announce it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeAddr {
    /// Host or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// `host` and `port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What one sentinel answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentinelAnswer {
    /// The primary it names (none while it knows of none).
    pub primary: Option<NodeAddr>,
    /// Replicas of that primary it could promote: a sentinel never promotes one it sees down
    /// (`s_down`) or cannot reach (`disconnected`), nor, here, an old primary that still says it
    /// is one (until Sentinel turns it into a replica, about 8 s after it is back, it holds none
    /// of the new primary's writes and cannot acknowledge a `WAIT`).
    pub replicas_up: Vec<NodeAddr>,
}

/// The primary a majority of the sentinels names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// The primary.
    pub primary: NodeAddr,
    /// Sentinels that named it.
    pub named_by: usize,
    /// Sentinels configured.
    pub sentinels: usize,
    /// Distinct replicas (other than the primary) that at least one answering sentinel sees up:
    /// any of them may be the one a failover promotes.
    pub replicas_up: usize,
}

/// No node is named by a majority of the sentinels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no primary is named by a majority ({need} of {sentinels}) of the sentinels: {named}, \
     {unreachable} unreachable"
)]
pub struct NoQuorum {
    /// Sentinels configured.
    pub sentinels: usize,
    /// Votes needed.
    pub need: usize,
    /// Sentinels that did not answer.
    pub unreachable: usize,
    /// What the others named, e.g. `10.0.0.1:6379 by 1, none by 1`.
    pub named: String,
}

/// The rule: `answers` holds one entry per configured sentinel, `None` for one that did not
/// answer. The primary is the node more than half of all entries name.
pub fn choose(answers: &[Option<SentinelAnswer>]) -> Result<Quorum, NoQuorum> {
    let sentinels = answers.len();
    let need = sentinels / 2 + 1;
    let mut votes: BTreeMap<Option<&NodeAddr>, usize> = BTreeMap::new();
    for answer in answers.iter().flatten() {
        *votes.entry(answer.primary.as_ref()).or_default() += 1;
    }
    let winner = votes
        .iter()
        .find(|(node, n)| node.is_some() && **n >= need)
        .and_then(|(node, n)| node.map(|p| (p.clone(), *n)));
    let Some((primary, named_by)) = winner else {
        let named: Vec<String> = votes
            .iter()
            .map(|(node, n)| match node {
                Some(p) => format!("{p} by {n}"),
                None => format!("none by {n}"),
            })
            .collect();
        return Err(NoQuorum {
            sentinels,
            need,
            unreachable: answers.iter().filter(|a| a.is_none()).count(),
            named: if named.is_empty() {
                "none answered".into()
            } else {
                named.join(", ")
            },
        });
    };
    let replicas_up = answers
        .iter()
        .flatten()
        .flat_map(|a| a.replicas_up.iter())
        .filter(|r| **r != primary)
        .collect::<BTreeSet<_>>()
        .len();
    Ok(Quorum {
        primary,
        named_by,
        sentinels,
        replicas_up,
    })
}

/// `SENTINEL get-master-addr-by-name` (host and port, or nil) and `SENTINEL replicas` (one map of
/// fields per replica).
type Reply = (Option<(String, String)>, Vec<HashMap<String, String>>);

/// One sentinel and the connection to it, opened when first needed and dropped on any error.
struct Slot {
    url: String,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

/// The sentinels watching one primary name. Cheap to clone.
#[derive(Clone)]
pub struct Sentinels {
    slots: Arc<[Slot]>,
    name: Arc<str>,
}

impl Sentinels {
    /// Sentinels at `urls` (`redis://host:port`) that know the primary as `name`.
    pub fn new(urls: &[String], name: &str) -> Self {
        Self {
            slots: urls
                .iter()
                .map(|url| Slot {
                    url: url.clone(),
                    connection: tokio::sync::Mutex::new(None),
                })
                .collect(),
            name: name.into(),
        }
    }

    /// How many sentinels are configured.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Asks every sentinel at once; each entry is `None` when that sentinel did not answer
    /// within [`ASK_TIMEOUT`].
    pub async fn ask(&self) -> Vec<Option<SentinelAnswer>> {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..self.slots.len() {
            let me = self.clone();
            tasks.spawn(async move { (i, me.ask_one(i).await) });
        }
        let mut answers = vec![None; self.slots.len()];
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, answer)) = done {
                answers[i] = answer;
            }
        }
        answers
    }

    /// Asks every sentinel and applies [`choose`].
    pub async fn quorum(&self) -> Result<Quorum, NoQuorum> {
        choose(&self.ask().await)
    }

    /// Wakes `wake` whenever a sentinel announces a new primary (`+switch-master`), so that a
    /// link asks the quorum at once rather than at its next check. One task per sentinel, which
    /// reconnects a second after its connection is lost; the tasks end once `wake` is dropped.
    pub fn on_switch(&self, wake: Weak<Notify>) {
        for slot in self.slots.iter() {
            let url = format!("{}/?protocol=resp3", slot.url.trim_end_matches('/'));
            tokio::spawn(follow_switches(url, wake.clone()));
        }
    }

    async fn ask_one(&self, i: usize) -> Option<SentinelAnswer> {
        let slot = &self.slots[i];
        let mut guard = slot.connection.lock().await;
        let result = tokio::time::timeout(ASK_TIMEOUT * 2, async {
            let mut con = match guard.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = open(&slot.url).await?;
                    *guard = Some(c.clone());
                    c
                }
            };
            let (primary, replicas): Reply = redis::pipe()
                .cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&*self.name)
                .cmd("SENTINEL")
                .arg("replicas")
                .arg(&*self.name)
                .query_async(&mut con)
                .await?;
            RedisResult::Ok(answer(primary, &replicas))
        })
        .await;
        match result {
            Ok(Ok(a)) => Some(a),
            Ok(Err(e)) => {
                tracing::debug!(sentinel = %slot.url, error = %e, "Sentinel did not answer");
                *guard = None;
                None
            }
            Err(_) => {
                tracing::debug!(sentinel = %slot.url, "Sentinel did not answer in time");
                *guard = None;
                None
            }
        }
    }
}

/// Subscribes to `+switch-master` on the sentinel at `url` (RESP3) and wakes `wake` on each
/// announcement, until `wake` is gone.
async fn follow_switches(url: String, wake: Weak<Notify>) {
    /// How often a quiet subscription checks whether it is still wanted.
    const STILL_WANTED: Duration = Duration::from_secs(5);
    while wake.strong_count() > 0 {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(ASK_TIMEOUT))
            .set_response_timeout(Some(ASK_TIMEOUT))
            .set_push_sender(tx);
        let subscribed = async {
            let mut con = Client::open(url.as_str())?
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            con.subscribe("+switch-master").await?;
            RedisResult::Ok(con)
        }
        .await;
        match subscribed {
            // The connection is held while announcements come.
            Ok(_connection) => loop {
                let push = tokio::select! {
                    push = rx.recv() => push,
                    _ = tokio::time::sleep(STILL_WANTED) => {
                        if wake.strong_count() == 0 {
                            return;
                        }
                        continue;
                    }
                };
                match push {
                    Some(p) if p.kind == PushKind::Message => match wake.upgrade() {
                        Some(w) => {
                            tracing::debug!(sentinel = %url, "A sentinel announced a new primary");
                            w.notify_one();
                        }
                        None => return,
                    },
                    Some(p) if p.kind == PushKind::Disconnection => break,
                    Some(_) => {}
                    None => break,
                }
            },
            Err(e) => {
                tracing::debug!(sentinel = %url, error = %e, "Cannot follow the sentinel's announcements")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn open(url: &str) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ASK_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT));
    Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Reads `SENTINEL get-master-addr-by-name` and `SENTINEL replicas` answers.
fn answer(
    primary: Option<(String, String)>,
    replicas: &[HashMap<String, String>],
) -> SentinelAnswer {
    let primary = primary.and_then(|(host, port)| Some(NodeAddr::new(host, port.parse().ok()?)));
    let replicas_up = replicas
        .iter()
        .filter(|r| {
            let flags = r.get("flags").map(String::as_str).unwrap_or_default();
            let role = r.get("role-reported").map(String::as_str);
            !flags
                .split(',')
                .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
                && role != Some("master")
        })
        .filter_map(|r| {
            let host = r.get("ip")?;
            let port = r.get("port")?.parse().ok()?;
            Some(NodeAddr::new(host.clone(), port))
        })
        .collect();
    SentinelAnswer {
        primary,
        replicas_up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> NodeAddr {
        NodeAddr::new("10.0.0.1", port)
    }

    fn names(port: u16, replicas: &[u16]) -> Option<SentinelAnswer> {
        Some(SentinelAnswer {
            primary: Some(node(port)),
            replicas_up: replicas.iter().map(|p| node(*p)).collect(),
        })
    }

    #[test]
    fn the_majority_wins_whoever_answers_first() {
        let q = choose(&[names(1, &[2, 3]), names(2, &[3]), names(2, &[3])]).expect("quorum");
        assert_eq!(q.primary, node(2));
        assert_eq!(q.named_by, 2);
        // Node 1 is not counted as a replica of 2 by anyone; 3 is.
        assert_eq!(q.replicas_up, 1);
    }

    #[test]
    fn an_old_primary_named_by_a_minority_is_never_chosen() {
        // The two sentinels with the majority have not decided yet; the cut-off one names 1.
        let e = choose(&[names(1, &[2]), None, None]).expect_err("no quorum");
        assert_eq!((e.need, e.unreachable), (2, 2));
        assert!(e.to_string().contains("10.0.0.1:1 by 1"), "{e}");
        let e = choose(&[names(1, &[]), names(2, &[]), None]).expect_err("split vote");
        assert!(e.to_string().contains("1 unreachable"), "{e}");
    }

    #[test]
    fn the_majority_is_of_the_sentinels_configured_not_of_those_answering() {
        // One of three answers and names a primary: not enough, even though it is unanimous.
        assert!(choose(&[None, names(1, &[]), None]).is_err());
        // Two of four is not a majority either.
        assert!(choose(&[names(1, &[]), names(1, &[]), None, None]).is_err());
        assert!(choose(&[names(1, &[]), names(1, &[]), names(1, &[]), None]).is_ok());
        assert!(choose(&[]).is_err());
    }

    #[test]
    fn a_sentinel_knowing_no_primary_does_not_vote_for_one() {
        let none = Some(SentinelAnswer::default());
        assert!(choose(&[none.clone(), none.clone(), names(1, &[])]).is_err());
        assert!(choose(&[none, names(1, &[]), names(1, &[])]).is_ok());
    }

    #[test]
    fn replicas_any_sentinel_sees_up_all_count() {
        // The cut-off sentinel still sees replica 2 up; the others see 3. A failover may promote
        // either, so a confirmation must wait for both.
        let q = choose(&[names(1, &[2]), names(1, &[3]), names(1, &[3])]).expect("quorum");
        assert_eq!(q.replicas_up, 2);
    }

    #[test]
    fn reads_sentinel_replies_and_leaves_out_replicas_flagged_down() {
        let replica = |port: &str, flags: &str| {
            HashMap::from([
                ("ip".to_owned(), "10.0.0.1".to_owned()),
                ("port".to_owned(), port.to_owned()),
                ("flags".to_owned(), flags.to_owned()),
                ("role-reported".to_owned(), "slave".to_owned()),
            ])
        };
        let mut returning = replica("6", "slave");
        returning.insert("role-reported".to_owned(), "master".to_owned());
        let a = answer(
            Some(("10.0.0.1".into(), "1".into())),
            &[
                replica("2", "slave"),
                replica("3", "s_down,slave"),
                replica("4", "slave,disconnected"),
                replica("5", "o_down,slave"),
                returning,
            ],
        );
        assert_eq!(a.primary, Some(node(1)));
        assert_eq!(a.replicas_up, [node(2)]);
        assert_eq!(answer(None, &[]), SentinelAnswer::default());
    }
}
