//! Snapshot reads through the simulator over loopback: a snapshot is the span's state at its ts
//! (against the commit history and the simulator's MVCC) under small pages, splits, merges,
//! leader moves and locks met during the read; an interrupted snapshot resumes from its cursor;
//! a ts below the GC safe point is refused, and the safe point is held at the ts while the
//! snapshot runs; point reads see the same state.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{DEADLINE, Harness, TICK, start_with, workload};
use kvfeed::{Error, Snapshot, SnapshotRow};
use kvfeed_sim::{ClusterConfig, Mutation, state_at, verify_snapshot};
use kvfeed_span::table::{record_key, table_span};

const TABLE: i64 = 100;

async fn cluster(stores: usize, splits: &[i64], page: u32) -> Harness {
    start_with(
        ClusterConfig {
            stores,
            split_keys: splits.iter().map(|&h| record_key(TABLE, h)).collect(),
            resolved_ts_interval: Some(TICK),
            ..ClusterConfig::default()
        },
        |config| {
            config.snapshot_page_size = page;
            config.gc_refresh = Duration::from_millis(50);
        },
    )
    .await
}

async fn next(snapshot: &mut Snapshot) -> Option<SnapshotRow> {
    let row = tokio::time::timeout(DEADLINE, snapshot.recv()).await.expect("a row or the end");
    row.map(|row| row.expect("the snapshot reads"))
}

async fn drain(snapshot: &mut Snapshot, rows: &mut Vec<(Bytes, Bytes)>) {
    while let Some(row) = next(snapshot).await {
        rows.push((row.key, row.value));
    }
}

fn check(h: &Harness, ts: u64, rows: &[(Bytes, Bytes)]) {
    let span = table_span(TABLE);
    let report = verify_snapshot(&h.cluster.committed_rows(), &span, ts, rows);
    assert!(report.ok(), "{report:?}");
    assert!(report.rows > 0, "the snapshot is not empty");
    let (start, end) = (record_key(TABLE, i64::MIN), record_key(TABLE + 1, i64::MIN));
    let mvcc = h.cluster.mvcc_state_at(Some(&start), Some(&end), ts);
    assert_eq!(rows, &mvcc[..], "the simulator's MVCC at the ts agrees");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_the_state_at_its_ts_and_later_writes_are_not_in_it() {
    let h = cluster(3, &[20, 40, 60, 80], 7).await;
    workload(1, 100).run(&h.cluster, 400, 0).await;
    let ts = h.cluster.now_ts();
    workload(2, 100).run(&h.cluster, 200, 0).await;
    let mut snapshot = h.client.snapshot(table_span(TABLE), ts).await.expect("snapshot");
    let mut rows = Vec::new();
    drain(&mut snapshot, &mut rows).await;
    check(&h, ts, &rows);
    let progress = snapshot.progress();
    assert_eq!(progress.rows, rows.len() as u64);
    assert_eq!((progress.parts_done, progress.parts_known), (5, 5), "one part per region");
    assert_ne!(rows, state_at(&h.cluster.committed_rows(), &table_span(TABLE), h.cluster.now_ts()));
    h.stop().await;
}

/// The topology changes under the read (splits, a merge, leader moves) and locks sit in its
/// way: an abandoned transaction (rolled back once its TTL expired) and a live one, committed
/// after the ts while the read may be waiting on it. Every key is read once, as of the ts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_leader_moves_and_locks_during_the_read_change_nothing() {
    let h = cluster(3, &[50], 5).await;
    workload(3, 100).run(&h.cluster, 400, 0).await;
    let abandoned = h.cluster.abandon_lock(&record_key(TABLE, 30), 100).expect("lock");
    let live = h
        .cluster
        .prewrite(&[Mutation::put(record_key(TABLE, 90), "live")], 60_000)
        .expect("prewrite");
    let ts = h.cluster.now_ts();
    assert!(abandoned < ts && live < ts);
    let mut snapshot = h.client.snapshot(table_span(TABLE), ts).await.expect("snapshot");
    let mut rows = Vec::new();
    for round in 0..6 {
        for _ in 0..8 {
            if let Some(row) = next(&mut snapshot).await {
                rows.push((row.key, row.value));
            }
        }
        let regions = h.cluster.regions();
        match round {
            0 => {
                let right = regions.last().expect("a region").id;
                h.cluster.split_region(right, &record_key(TABLE, 75)).expect("split");
            }
            1 => {
                let first = &regions[0];
                let other = first.peers.iter().find(|p| p.store_id != first.leader_store);
                let store = other.expect("three replicas").store_id;
                h.cluster.transfer_leader(first.id, store).expect("leader move");
            }
            2 => {
                let left = regions[0].id;
                h.cluster.split_region(left, &record_key(TABLE, 10)).expect("split");
            }
            3 => h.cluster.merge_regions(regions[1].id, regions[2].id).map(drop).expect("merge"),
            4 => {
                // Committed after the ts: the snapshot reads the value before it.
                h.cluster.commit(live).expect("commit the live transaction");
            }
            _ => {}
        }
    }
    drain(&mut snapshot, &mut rows).await;
    check(&h, ts, &rows);
    // The abandoned lock was rolled back by the read (nothing else reads that key).
    assert_eq!(h.cluster.lock_count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_snapshot_resumes_from_its_cursor() {
    let h = cluster(2, &[25, 50, 75], 4).await;
    workload(4, 100).run(&h.cluster, 300, 0).await;
    let ts = h.cluster.now_ts();
    let span = table_span(TABLE);
    let mut rows = Vec::new();
    let mut snapshot = h.client.snapshot(span.clone(), ts).await.expect("snapshot");
    for _ in 0..30 {
        let row = next(&mut snapshot).await.expect("30 rows");
        rows.push((row.key, row.value));
    }
    let cursor = snapshot.cursor().expect("rows were delivered").clone();
    assert_eq!(cursor.last_key(), &rows[29].0);
    drop(snapshot);
    workload(5, 100).run(&h.cluster, 100, 0).await;
    let mut rest = h.client.resume_snapshot(span.clone(), ts, &cursor).await.expect("resume");
    drain(&mut rest, &mut rows).await;
    check(&h, ts, &rows);
    // A cursor at the last key leaves nothing.
    let last = kvfeed::SnapshotCursor::after(record_key(TABLE + 1, i64::MIN));
    let mut empty = h.client.resume_snapshot(span, ts, &last).await.expect("resume");
    assert!(next(&mut empty).await.is_none());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gc_safe_point_is_held_at_the_ts_and_a_ts_below_it_is_refused() {
    let h = cluster(1, &[], 2).await;
    workload(6, 50).run(&h.cluster, 100, 0).await;
    let old_ts = h.cluster.now_ts();
    h.cluster.advance_tso(10);
    let ts = h.cluster.now_ts();
    workload(7, 50).run(&h.cluster, 100, 0).await;
    let mut snapshot = h.client.snapshot(table_span(TABLE), ts).await.expect("snapshot");
    let first = next(&mut snapshot).await.expect("a row");
    // GC with no life time while the snapshot runs stops at its ts.
    h.cluster.advance_tso(10);
    let safe_point = h.cluster.run_gc(Duration::ZERO);
    assert!(safe_point <= ts, "GC passed the snapshot: {safe_point} > {ts}");
    assert!(safe_point > old_ts);
    let mut rows = vec![(first.key, first.value)];
    drain(&mut snapshot, &mut rows).await;
    check(&h, ts, &rows);
    let reads_refused: u64 =
        h.cluster.store_ids().iter().map(|&s| h.cluster.cdc_stats(s).reads_below_safe_point).sum();
    assert_eq!(reads_refused, 0);
    match h.client.snapshot(table_span(TABLE), old_ts).await {
        Err(Error::StartTsBelowGcSafePoint { start_ts, .. }) => assert_eq!(start_ts, old_ts),
        other => panic!("expected StartTsBelowGcSafePoint, got {other:?}"),
    }
    assert!(matches!(
        h.client.get(&record_key(TABLE, 1), old_ts).await,
        Err(Error::StartTsBelowGcSafePoint { .. })
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_reads_see_the_state_at_their_ts() {
    let h = cluster(2, &[50], 16).await;
    workload(8, 100).run(&h.cluster, 300, 0).await;
    h.cluster.abandon_lock(&record_key(TABLE, 7), 100).expect("lock");
    let ts = h.cluster.now_ts();
    workload(9, 100).run(&h.cluster, 100, 0).await;
    let expected = state_at(&h.cluster.committed_rows(), &table_span(TABLE), ts);
    let keys: Vec<Bytes> =
        (0..100).rev().map(|handle| Bytes::from(record_key(TABLE, handle))).collect();
    let found = h.client.batch_get(&keys, ts).await.expect("batch get");
    let mut found: Vec<(Bytes, Bytes)> =
        found.into_iter().map(|row| (row.key, row.value)).collect();
    // In the order asked (descending); sorted, the state at the ts.
    assert!(found.windows(2).all(|pair| pair[0].0 > pair[1].0));
    found.sort();
    assert_eq!(found, expected);
    for (key, value) in expected.iter().take(10) {
        assert_eq!(h.client.get(key, ts).await.expect("get").as_ref(), Some(value));
    }
    let never = record_key(TABLE, 1_000);
    assert_eq!(h.client.get(&never, ts).await.expect("get"), None);
    assert_eq!(h.cluster.lock_count(), 0, "the lock met was resolved");
    h.stop().await;
}
