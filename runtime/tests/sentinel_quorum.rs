//! The Redis link asks the sentinels as a quorum, on real `redis-server` and `redis-server
//! --sentinel` processes: it uses the primary a majority names, not whatever the first sentinel in
//! the URL says; it leaves a node as soon as no majority names it, and comes back when one does;
//! and it waits for every replica a failover could promote.

use std::time::{Duration, Instant};

use tapgate_runtime::redis::RedisLink;
use tapgate_runtime::RedisUrl;
use tapgate_testkit::sentinel::{Sentinel, SentinelGroup, MASTER_NAME};
use tapgate_testkit::RedisServer;

async fn link(url: &str) -> RedisLink {
    let url = RedisUrl::parse(url).expect("url");
    RedisLink::connect(&url, None).await.expect("connect")
}

async fn set(link: &RedisLink, key: &str) -> redis::RedisResult<()> {
    let mut con = link.clone();
    redis::cmd("SET")
        .arg(key)
        .arg("1")
        .query_async(&mut con)
        .await
}

/// Waits until `ok` holds, or panics after `within` saying what did not happen.
async fn eventually(what: &str, within: Duration, mut ok: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok().await {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_is_what_a_majority_names_not_the_first_sentinel() {
    let group = tokio::task::spawn_blocking(SentinelGroup::start)
        .await
        .expect("group");
    // A sentinel of its own naming another server by the same name: first in the list, as a
    // sentinel cut off with an old primary would be.
    let stale = RedisServer::start();
    let odd = Sentinel::start(stale.port(), 1);
    let hosts: Vec<String> = std::iter::once(odd.addr())
        .chain(group.sentinels.iter().map(Sentinel::addr))
        .collect();
    let url = format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","));
    let link = link(&url).await;
    assert_eq!(
        link.address(),
        Some(format!("127.0.0.1:{}", group.primary.port())),
        "three of four sentinels name the group's primary"
    );
    set(&link, "quorum").await.expect("write");
    let on_stale = tapgate_testkit::sentinel::redis_cli(stale.port(), &["EXISTS", "quorum"]);
    assert_eq!(
        on_stale.trim(),
        "0",
        "nothing was written to the stale node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_a_node_no_majority_names_and_returns_when_one_does() {
    let group = tokio::task::spawn_blocking(SentinelGroup::start)
        .await
        .expect("group");
    let link = link(&group.url()).await;
    set(&link, "before").await.expect("write");
    // Two of three sentinels stop answering: the one left is no majority.
    group.sentinels[1].pause();
    group.sentinels[2].pause();
    let left = eventually(
        "the link to leave the primary",
        Duration::from_secs(5),
        async || link.address().is_none(),
    )
    .await;
    println!("left the primary {left:?} after the majority went silent");
    let refused = set(&link, "during").await;
    assert!(refused.is_err(), "a write without a majority: {refused:?}");
    group.sentinels[1].resume();
    group.sentinels[2].resume();
    let back = eventually("writes to resume", Duration::from_secs(10), async || {
        set(&link, "after").await.is_ok()
    })
    .await;
    println!("writing again {back:?} after the majority answered again");
    assert_eq!(
        link.address(),
        Some(format!("127.0.0.1:{}", group.primary.port()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_every_replica_a_failover_could_promote() {
    let mut group = tokio::task::spawn_blocking(|| SentinelGroup::with_replicas(2))
        .await
        .expect("group");
    let link = link(&group.url()).await;
    set(&link, "x").await.expect("write");
    assert_eq!(link.replicas_to_wait(1), 2, "both replicas are up");
    assert_eq!(link.replicas_to_wait(3), 3, "the configured floor stands");
    // A replica the sentinels see down cannot be promoted: no need to wait for it.
    group.replicas[1].stop();
    let took = eventually(
        "the wait to drop to the replica still up",
        Duration::from_secs(10),
        async || link.replicas_to_wait(1) == 1,
    )
    .await;
    println!("waiting for 1 replica {took:?} after the other stopped");
    assert_eq!(link.replicas_to_wait(0), 1);
    // Back again: it may be promoted once more, so it is waited for once more.
    group.replicas[1].restart();
    eventually(
        "the wait to count the restarted replica",
        Duration::from_secs(15),
        async || link.replicas_to_wait(1) == 2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_failover_moves_the_link_without_a_failed_command() {
    let group = tokio::task::spawn_blocking(SentinelGroup::start)
        .await
        .expect("group");
    let link = link(&group.url()).await;
    set(&link, "before").await.expect("write");
    let old = link.address();
    // The link follows every sentinel's announcements (`+switch-master`).
    eventually(
        "a subscription on every sentinel",
        Duration::from_secs(5),
        async || {
            group.sentinels.iter().all(|s| {
                tapgate_testkit::sentinel::redis_cli(s.port(), &["CLIENT", "LIST"])
                    .contains("sub=1")
            })
        },
    )
    .await;
    // The primary stays up and writable: only the sentinels' word moves it.
    let out = tapgate_testkit::sentinel::redis_cli(
        group.sentinels[0].port(),
        &["SENTINEL", "FAILOVER", MASTER_NAME],
    );
    assert!(out.contains("OK"), "{out}");
    let left = eventually(
        "the link to leave the old primary",
        Duration::from_secs(15),
        async || link.address() != old,
    )
    .await;
    println!("left the old primary {left:?} after the forced failover");
    eventually(
        "writes on the new primary",
        Duration::from_secs(10),
        async || set(&link, "after").await.is_ok(),
    )
    .await;
    assert_ne!(link.address(), old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_failover_to_the_promoted_replica() {
    let mut group = tokio::task::spawn_blocking(SentinelGroup::start)
        .await
        .expect("group");
    let link = link(&group.url()).await;
    set(&link, "before").await.expect("write");
    group.primary.stop();
    let promoted =
        tokio::task::block_in_place(|| group.wait_for_promotion(Duration::from_secs(20)));
    let took = eventually(
        "writes on the promoted replica",
        Duration::from_secs(10),
        async || set(&link, "after").await.is_ok(),
    )
    .await;
    println!("writing on the promoted replica {took:?} after the sentinels agreed");
    assert_eq!(link.address(), Some(format!("127.0.0.1:{promoted}")));
}
