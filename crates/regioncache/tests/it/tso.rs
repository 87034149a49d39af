//! The TSO client: monotonic under concurrency, batched, across leader changes, and refusing a
//! TSO that goes backwards.

use std::collections::HashSet;

use kvfeed_regioncache::{Error, LOGICAL_BITS};
use kvfeed_sim::scripted::ScriptedPd;

use crate::{CLUSTER, connect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tso_is_monotonic_under_concurrency() {
    const TASKS: usize = 32;
    const EACH: usize = 50;
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let pd = connect(&fake).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let pd = pd.clone();
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(EACH);
                for _ in 0..EACH {
                    seen.push(pd.get_ts().await.unwrap());
                }
                seen
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        let seen = task.await.unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "not increasing: {seen:?}");
        all.extend(seen);
    }
    assert_eq!(all.len(), TASKS * EACH, "a timestamp was handed out twice");
    let requests = fake.calls(0).tso_requests;
    assert!((1..=(TASKS * EACH) as u64).contains(&requests), "{requests} TSO requests");
    assert_eq!(fake.calls(0).tso_streams, 1, "one stream serves every request");
}

#[tokio::test]
async fn concurrent_requests_are_batched() {
    const CALLERS: usize = 100;
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let pd = connect(&fake).await;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let pd = pd.clone();
            tokio::spawn(async move { pd.get_ts().await.unwrap() })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.unwrap());
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), CALLERS);
    let requests = fake.calls(0).tso_requests;
    assert!(requests < CALLERS as u64 / 10, "{requests} TSO requests for {CALLERS} callers");
    // The physical part is the scripted PD's clock, in the high bits.
    assert_eq!(all[0] >> LOGICAL_BITS, 1 << 40);
}

#[tokio::test]
async fn tso_follows_a_leader_change() {
    let fake = ScriptedPd::start(2, CLUSTER).await.unwrap();
    let pd = connect(&fake).await;
    let before = pd.get_ts().await.unwrap();
    fake.set_leader(Some(1));
    let after = pd.get_ts().await.unwrap();
    assert!(after > before);
    assert_eq!(fake.calls(1).tso_streams, 1);
    assert_eq!(fake.calls(0).not_leader, 1, "the old stream was refused once");
}

#[tokio::test]
async fn tso_never_goes_backwards() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let pd = connect(&fake).await;
    let first = pd.get_ts().await.unwrap();
    // PD's clock jumps back (a misconfigured failover).
    fake.with_data(|d| d.tso = (d.tso.0 - 10, 0));
    let error = pd.get_ts().await.unwrap_err();
    assert!(matches!(error, Error::TsoNotMonotonic { last, .. } if last == first), "{error:?}");
    fake.with_data(|d| d.tso = (d.tso.0 + 20, 0));
    assert!(pd.get_ts().await.unwrap() > first);
}

#[tokio::test]
async fn tso_at_the_end_of_time_does_not_panic() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let pd = connect(&fake).await;
    fake.with_data(|d| d.tso = ((1 << 46) - 1, (1 << 18) - 2));
    assert_eq!(pd.get_ts().await.unwrap(), u64::MAX);
    // The next batch would need a physical time past 46 bits: refused, not wrapped.
    let error = pd.get_ts().await.unwrap_err();
    assert!(matches!(error, Error::InvalidResponse { method: "Tso", .. }), "{error:?}");
}
