//! Range lock benchmarks at 1k / 100k / 1M contiguous locked ranges, each beside the original's
//! algorithm (B-tree of entries, full scan for the minimum) measured in the same run.
//!
//! Besides criterion's groups it prints, once per size, the time to lock every range from empty
//! and the resident memory per locked range (with and without the key bytes).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use kvfeed_benches::alloc_counter::{CountingAllocator, live_bytes};
use kvfeed_benches::original_rangelock::OriginalRangeLock;
use kvfeed_benches::{criterion_config as config, row_key, scatter};
use kvfeed_rangelock::{LockOutcome, RangeLock};
use kvfeed_span::{EncodedKey, Span};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];
const BATCH: u64 = 10_000;

/// The bounds of range `i` of `n`: `[key(i), key(i + 1))`, unbounded at both ends of the space.
fn bounds(i: u64, n: u64) -> (EncodedKey, EncodedKey) {
    let start = if i == 0 { EncodedKey::default() } else { row_key(i) };
    let end = if i + 1 == n { EncodedKey::default() } else { row_key(i + 1) };
    (start, end)
}

fn ranges(n: u64) -> Vec<Span> {
    (0..n)
        .map(|i| {
            let (start, end) = bounds(i, n);
            Span::new(start, end).expect("adjacent keys")
        })
        .collect()
}

/// A lock with `n` contiguous ranges, region `i` holding range `i`, all initialized.
fn kvfeed_lock(ranges: &[Span]) -> RangeLock {
    let mut lock = RangeLock::new(Span::full(), 1);
    for (i, range) in ranges.iter().enumerate() {
        let outcome = lock.lock(range, i as u64, 1).expect("inside the span");
        assert!(matches!(outcome, LockOutcome::Locked { .. }));
        lock.mark_initialized(i as u64);
    }
    lock
}

fn original_lock(ranges: &[Span]) -> OriginalRangeLock {
    let mut lock = OriginalRangeLock::new(1);
    for (i, range) in ranges.iter().enumerate() {
        lock.lock(range.start().as_bytes(), range.end().as_bytes(), i as u64, 1);
    }
    lock
}

fn report_build(n: u64, ranges: &[Span]) {
    let key_bytes: usize = ranges.iter().map(|r| r.start().as_bytes().len()).sum();
    let before = live_bytes();
    let started = Instant::now();
    let lock = kvfeed_lock(ranges);
    let kvfeed_time = started.elapsed();
    let kvfeed_heap = live_bytes() - before;
    let started = Instant::now();
    let mut sized = RangeLock::with_capacity(Span::full(), 1, n as usize);
    for (i, range) in ranges.iter().enumerate() {
        let _ = sized.lock(range, i as u64, 1).expect("inside the span");
    }
    let sized_time = started.elapsed();
    drop(sized);
    let before = live_bytes();
    let started = Instant::now();
    let original = original_lock(ranges);
    let original_time = started.elapsed();
    let original_heap = live_bytes() - before;
    println!(
        "rangelock/build/{n}: kvfeed {:.3}s ({:.3}s with capacity reserved), {:.0} heap B/range \
         (keys of {:.0} B stored inline) | original {:.3}s, {:.0} heap B/range",
        kvfeed_time.as_secs_f64(),
        sized_time.as_secs_f64(),
        kvfeed_heap as f64 / n as f64,
        key_bytes as f64 / n as f64,
        original_time.as_secs_f64(),
        original_heap as f64 / n as f64,
    );
    black_box((lock, original));
}

fn benches(c: &mut Criterion) {
    for n in SIZES {
        let ranges = ranges(n);
        report_build(n, &ranges);
        let mut lock = kvfeed_lock(&ranges);
        let mut original = original_lock(&ranges);

        let mut group = c.benchmark_group("rangelock/lock_unlock_pair");
        let mut versions = vec![1u64; n as usize];
        let mut step = 0;
        group.bench_function(BenchmarkId::new("kvfeed", n), |b| {
            b.iter(|| {
                step += 1;
                let i = scatter(step, n) as usize;
                let range = &ranges[i];
                let unlocked = lock.unlock(range, i as u64, versions[i], None).expect("locked");
                let _ = black_box(unlocked);
                versions[i] += 1;
                let _ =
                    black_box(lock.lock(range, i as u64, versions[i]).expect("inside the span"));
            });
        });
        let mut step = 0;
        let mut original_versions = vec![1u64; n as usize];
        group.bench_function(BenchmarkId::new("original", n), |b| {
            b.iter(|| {
                step += 1;
                let i = scatter(step, n) as usize;
                let range = &ranges[i];
                original.unlock(range.start().as_bytes(), i as u64, original_versions[i]);
                original_versions[i] += 1;
                let bounds = (range.start().as_bytes(), range.end().as_bytes());
                black_box(original.lock(bounds.0, bounds.1, i as u64, original_versions[i]));
            });
        });
        group.finish();
        // The benchmark above re-locks ranges as uninitialized; initialize them again.
        for i in 0..n {
            lock.mark_initialized(i);
        }

        let mut group = c.benchmark_group("rangelock/resolved_ts");
        group.bench_function(BenchmarkId::new("kvfeed", n), |b| {
            b.iter(|| black_box(lock.resolved_ts()))
        });
        group.bench_function(BenchmarkId::new("original", n), |b| {
            b.iter(|| black_box(original.resolved_ts()))
        });
        group.finish();

        let mut group = c.benchmark_group("rangelock/advance_batch_10k");
        let batch = BATCH.min(n);
        let mut ts = 10;
        let mut round = 0;
        group.bench_function(BenchmarkId::new("kvfeed", n), |b| {
            b.iter(|| {
                ts += 1;
                round += 1;
                let first = (round * batch) % n;
                let regions = (first..first + batch).map(|r| r % n);
                black_box(lock.advance_batch(regions, ts));
            });
        });
        let handles: Vec<_> = (0..n).map(|r| lock.handle(r).expect("locked")).collect();
        let mut round = 0;
        group.bench_function(BenchmarkId::new("kvfeed_handles", n), |b| {
            b.iter(|| {
                ts += 1;
                round += 1;
                let first = (round * batch) % n;
                let batch = (first..first + batch).map(|r| handles[(r % n) as usize]);
                black_box(lock.advance_handles(batch, ts));
            });
        });
        let mut ts = 10;
        let mut round = 0;
        group.bench_function(BenchmarkId::new("original", n), |b| {
            b.iter(|| {
                ts += 1;
                round += 1;
                let first = (round * batch) % n;
                for r in (first..first + batch).map(|r| r % n) {
                    original.advance(r, ts);
                }
            });
        });
        group.finish();

        let mut group = c.benchmark_group("rangelock/stats");
        if n >= 1_000_000 {
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::new("kvfeed", n), |b| b.iter(|| black_box(lock.stats())));
        group.bench_function(BenchmarkId::new("original", n), |b| {
            b.iter(|| black_box(original.slowest_fastest()))
        });
        group.finish();
        // Lagging regions (the lock-resolution trigger and the slow-region report): all but one
        // region in 10,000 resolved past the target. The min-tree search against the walk over
        // every locked range the client did before.
        let target = u64::MAX / 2;
        let mut lagging_lock = lock.clone();
        lagging_lock.advance_batch((0..n).filter(|r| r % 10_000 != 0), target);
        let lagging = n.div_ceil(10_000) as usize;
        assert_eq!(lagging_lock.lagging(target, usize::MAX).regions.len(), lagging);
        let mut group = c.benchmark_group("rangelock/lagging_1_in_10k");
        if n >= 1_000_000 {
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::new("kvfeed_min_tree", n), |b| {
            b.iter(|| black_box(lagging_lock.lagging(black_box(target), 4096)))
        });
        group.bench_function(BenchmarkId::new("walk", n), |b| {
            b.iter(|| {
                black_box(
                    lagging_lock
                        .locked()
                        .filter(|r| r.initialized && r.resolved_ts < black_box(target))
                        .map(|r| r.region_id)
                        .collect::<Vec<_>>(),
                )
            })
        });
        group.bench_function(BenchmarkId::new("kvfeed_slowest", n), |b| {
            b.iter(|| black_box(lagging_lock.slowest()))
        });
        group.finish();
        drop(lagging_lock);
        lock.check_invariants().expect("invariants hold after the benchmarks");
        assert_eq!(lock.len() as u64, n);
        assert_eq!(original.len() as u64, n);
    }

    // Locking a million ranges from empty, as a criterion measurement too.
    let ranges = ranges(1_000_000);
    let mut group = c.benchmark_group("rangelock/lock_1m_from_empty");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("kvfeed", |b| {
        b.iter_batched(|| (), |()| black_box(kvfeed_lock(&ranges)), BatchSize::PerIteration)
    });
    group.bench_function("original", |b| {
        b.iter_batched(|| (), |()| black_box(original_lock(&ranges)), BatchSize::PerIteration)
    });
    group.finish();
}

criterion_group! {
    name = rangelock;
    config = config();
    targets = benches
}
criterion_main!(rangelock);
