//! The client's lifecycle (issue 18 item 11): subscriptions made before `run` wait for it and
//! send nothing; `shutdown` without `run` ends every stream; a subscription racing a shutdown
//! either fails at once or ends with the shutdown, never hangs.

mod common;

use common::{DEADLINE, Log, test_config};
use kvfeed::{Client, Error, Event};
use kvfeed_sim::{Cluster, ClusterConfig, Mutation};
use kvfeed_span::table::{record_key, table_span};

async fn cluster() -> Cluster {
    Cluster::start(ClusterConfig { stores: 1, ..ClusterConfig::default() }).await.unwrap()
}

/// The rest of a stream, which must end in time: its events, then the error it ended with.
async fn until_end(sub: &mut kvfeed::Subscription) -> (Vec<Event>, Option<Error>) {
    tokio::time::timeout(DEADLINE, async {
        let mut events = Vec::new();
        loop {
            match sub.recv().await {
                None => return (events, None),
                Some(Ok(event)) => events.push(event),
                Some(Err(error)) => {
                    assert!(sub.recv().await.is_none(), "the stream ends after its error");
                    return (events, Some(error));
                }
            }
        }
    })
    .await
    .expect("the stream ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_before_run_waits_for_it_and_shutdown_without_run_ends_it() {
    let cluster = cluster().await;
    let client = Client::connect(test_config(&cluster)).await.unwrap();
    let start_ts = cluster.now_ts();
    let mut sub = client.subscribe(table_span(100), start_ts).await.unwrap();
    // Round trips to PD give any work the subscription started time to reach PD and TiKV.
    let scans = cluster.pd_calls();
    for _ in 0..5 {
        client.current_ts().await.unwrap();
    }
    let after = cluster.pd_calls();
    assert_eq!(
        (after.scan_regions, after.batch_scan_regions),
        (scans.scan_regions, scans.batch_scan_regions),
        "PD is not asked for regions before run"
    );
    assert_eq!(cluster.cdc_stats(1).registers, 0, "nothing is sent to TiKV before run");
    client.shutdown();
    let (events, error) = until_end(&mut sub).await;
    assert!(events.is_empty(), "{events:?}");
    assert!(matches!(error, Some(Error::Shutdown)), "{error:?}");
    assert!(matches!(client.subscribe(table_span(100), start_ts).await, Err(Error::Shutdown)));
    // A run after the shutdown ends at once.
    tokio::time::timeout(DEADLINE, client.run()).await.expect("run ends").unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_before_run_starts_with_it() {
    let cluster = cluster().await;
    let client = Client::connect(test_config(&cluster)).await.unwrap();
    let start_ts = cluster.now_ts();
    let mut sub = client.subscribe(table_span(100), start_ts).await.unwrap();
    let runner = {
        let client = client.clone();
        tokio::spawn(async move { client.run().await })
    };
    cluster.commit_2pc(&[Mutation::put(record_key(100, 1), "row")]).unwrap();
    let mut log = Log::default();
    log.until_resolved(&mut sub, cluster.now_ts()).await;
    assert_eq!(log.rows, 1);
    client.shutdown();
    tokio::time::timeout(DEADLINE, runner).await.unwrap().unwrap().unwrap();
    cluster.shutdown().await;
}

/// Subscriptions made from other tasks while the client shuts down: each either fails at once
/// or ends with the shutdown; none is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_racing_a_shutdown_all_end() {
    let cluster = cluster().await;
    for round in 0..20u64 {
        let client = Client::connect(test_config(&cluster)).await.unwrap();
        let runner = {
            let client = client.clone();
            tokio::spawn(async move { client.run().await })
        };
        let start_ts = cluster.now_ts();
        let subscribers: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut subs = Vec::new();
                    for _ in 0..50 {
                        match client.subscribe(table_span(100), start_ts).await {
                            Ok(sub) => subs.push(sub),
                            Err(Error::Shutdown) => break,
                            Err(other) => panic!("{other:?}"),
                        }
                        tokio::task::yield_now().await;
                    }
                    subs
                })
            })
            .collect();
        for _ in 0..round % 5 {
            tokio::task::yield_now().await;
        }
        client.shutdown();
        for subscriber in subscribers {
            for mut sub in subscriber.await.unwrap() {
                let (_, error) = until_end(&mut sub).await;
                assert!(matches!(error, Some(Error::Shutdown) | None), "{error:?}");
            }
        }
        tokio::time::timeout(DEADLINE, runner).await.unwrap().unwrap().unwrap();
    }
    cluster.shutdown().await;
}
