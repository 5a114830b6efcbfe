//! The dashboard on Redis Sentinel: it finds the primary through the sentinels and, after the
//! primary is killed (-9) and a replica promoted, keeps serving the operator without a restart.

mod support;

use std::time::{Duration, Instant};

use support::{get, login, Dashboard, ALICE};
use tapgate_testkit::SentinelGroup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_failover_without_a_restart() {
    let group = SentinelGroup::with_replicas(1);
    // A counter the dashboard should show, written on the primary and replicated.
    let primary = group.primary.port();
    let wrote = tapgate_testkit::sentinel::redis_cli(
        primary,
        &[
            "HINCRBY",
            tapgate_protocol::keys::COUNTERS_ENTRIES,
            "TEN_TRIP",
            "7",
        ],
    );
    assert_eq!(wrote.trim(), "7");
    let _ = tapgate_testkit::sentinel::redis_cli(primary, &["WAIT", "1", "5000"]);

    let dash = Dashboard::start(support::config(&group.url())).await;
    let alice = login(dash.addr, ALICE).await;
    let counters = get(dash.addr, &alice, "/api/counters").await;
    assert_eq!(counters.status, 200);
    assert_eq!(counters.json()["entries"]["TEN_TRIP"], 7);

    let mut group = group;
    let promoted = tokio::task::spawn_blocking(move || {
        group.primary.stop(); // SIGKILL
        let p = group.wait_for_promotion(Duration::from_secs(30));
        (group, p)
    })
    .await
    .expect("failover");
    let (_group, new_primary) = promoted;
    assert_ne!(new_primary, primary);

    // The same session keeps working once the dashboard has found the new primary.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = get(dash.addr, &alice, "/api/counters").await;
        if r.status == 200 {
            assert_eq!(r.json()["entries"]["TEN_TRIP"], 7);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from the new primary within 15 s: {}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    dash.stop().await;
}
