//! Range lock benchmarks at 1k / 100k / 1M contiguous locked ranges, each beside a faithful
//! model of TiCDC's Go range lock (`kvfeed_benches::go_rangelock`: degree-16 B-trees, the range-ts
//! map updated per region, a walk for the minimum) measured in the same run, with our 27-byte
//! TiDB record keys (`go_model`) and with the 10-byte keys of the Go benchmarks
//! (`go_model_10b`).
//!
//! Besides criterion's groups it prints, once per size, the time to lock every range from empty
//! and the resident memory per locked range (with and without the key bytes).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use kvfeed_benches::alloc_counter::{CountingAllocator, live_bytes};
use kvfeed_benches::go_rangelock::{GoRangeLock, LockEntry, LockResult};
use kvfeed_benches::{criterion_config as config, row_key, scatter};
use kvfeed_rangelock::{LockOutcome, RangeLock};
use kvfeed_span::{EncodedKey, Span};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];

/// The sizes to run: [`SIZES`], or those listed in `RANGELOCK_SIZES` (`1000000`, `1000,100000`).
fn sizes() -> Vec<u64> {
    match std::env::var("RANGELOCK_SIZES") {
        Ok(list) => {
            list.split(',').map(|n| n.trim().parse().expect("RANGELOCK_SIZES: numbers")).collect()
        }
        Err(_) => SIZES.to_vec(),
    }
}
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

/// The Go model's ranges: plain byte keys, the span `[first start, last end)` itself.
struct GoRanges {
    bounds: Vec<(Vec<u8>, Vec<u8>)>,
}

impl GoRanges {
    /// Our 27-byte record keys (the span ends at a key past the last).
    fn record_keys(n: u64) -> Self {
        let key = |i: u64| row_key(i).as_bytes().to_vec();
        Self { bounds: (0..n).map(|i| (key(i), key(i + 1))).collect() }
    }

    /// The Go benchmarks' 10-byte keys.
    fn ten_bytes(n: u64) -> Self {
        let key = |i: u64| format!("{i:010}").into_bytes();
        Self { bounds: (0..n).map(|i| (key(i), key(i + 1))).collect() }
    }

    fn span(&self) -> (&[u8], &[u8]) {
        let first = &self.bounds[0].0;
        let last = &self.bounds[self.bounds.len() - 1].1;
        (first, last)
    }

    /// A lock with every range locked, and the state each region's holder keeps.
    fn lock(&self) -> (GoRangeLock, Vec<Arc<LockEntry>>) {
        let (start, end) = self.span();
        let mut lock = GoRangeLock::new(start, end, 1);
        let states = self
            .bounds
            .iter()
            .enumerate()
            .map(|(i, (start, end))| match lock.lock(start, end, i as u64, 1) {
                LockResult::Success(entry) => entry,
                _ => panic!("free range"),
            })
            .collect();
        (lock, states)
    }
}

fn report_build(n: u64, ranges: &[Span], go: &GoRanges) {
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
    let model = go.lock();
    let model_time = started.elapsed();
    let model_heap = live_bytes() - before;
    // Where the allocator put consecutive entries (the walk for the resolved ts reads one
    // after another): the median distance between neighbours.
    let mut gaps: Vec<u64> = model
        .1
        .windows(2)
        .map(|w| (Arc::as_ptr(&w[1]) as u64).abs_diff(Arc::as_ptr(&w[0]) as u64))
        .collect();
    gaps.sort_unstable();
    let gap = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    println!(
        "rangelock/build/{n}: kvfeed {:.3}s ({:.3}s with capacity reserved), {:.0} heap B/range \
         (keys of {:.0} B stored inline) | go_model {:.3}s, {:.0} heap B/range (the states \
         included), consecutive entries {gap} B apart (median)",
        kvfeed_time.as_secs_f64(),
        sized_time.as_secs_f64(),
        kvfeed_heap as f64 / n as f64,
        key_bytes as f64 / n as f64,
        model_time.as_secs_f64(),
        model_heap as f64 / n as f64,
    );
    // Where kvfeed's bytes are, by part, per range (as allocated; the counting allocator's
    // figure above is the same bytes, measured from outside).
    let memory = lock.memory();
    let per = |bytes: usize| bytes as f64 / n as f64;
    println!(
        "rangelock/memory/{n}: {:.1} B/range = piece leaves {:.1} + piece inner {:.1} + key \
         handles {:.1} + key bytes {:.1} + slots {:.1} + owners {:.1} + min tree {:.1} + region \
         index {:.1} + other {:.1}",
        per(memory.total()),
        per(memory.piece_leaves),
        per(memory.piece_inner),
        per(memory.key_handles),
        per(memory.key_bytes),
        per(memory.slots),
        per(memory.owners),
        per(memory.min_tree),
        per(memory.region_index),
        per(memory.other),
    );
    black_box((lock, model));
}

fn benches(c: &mut Criterion) {
    for n in sizes() {
        let ranges = ranges(n);
        let go = [("go_model", GoRanges::record_keys(n)), ("go_model_10b", GoRanges::ten_bytes(n))];
        report_build(n, &ranges, &go[0].1);
        let mut lock = kvfeed_lock(&ranges);
        let mut models: Vec<_> = go.iter().map(|(name, keys)| (*name, keys, keys.lock())).collect();
        // The version each region holds its range at, ours and each model's.
        let mut versions = vec![1u64; n as usize];
        let mut model_versions = vec![vec![1u64; n as usize]; models.len()];

        let mut group = c.benchmark_group("rangelock/resolved_ts");
        if n >= 1_000_000 {
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::new("kvfeed", n), |b| {
            b.iter(|| black_box(lock.resolved_ts()))
        });
        for (name, _, (model, _)) in &models {
            group.bench_function(BenchmarkId::new(*name, n), |b| {
                b.iter(|| black_box(model.resolved_ts()))
            });
        }
        group.finish();

        // One resolved-ts batch of 10k regions: consecutive ones (the Go benchmark's), and
        // strided over the whole span. kvfeed by region id and through the handles a worker
        // keeps, each with the subscription's resolved ts read after the batch; the Go model's
        // bare advance (a compare-and-swap through the state each worker holds, no minimum).
        let handles: Vec<_> = (0..n).map(|r| lock.handle(r).expect("locked")).collect();
        let batch = BATCH.min(n);
        let stride = n / batch;
        for (group_name, strided) in [("advance_batch_10k", false), ("advance_strided_10k", true)] {
            let mut group = c.benchmark_group(format!("rangelock/{group_name}"));
            // No division per region (it would cost more than the advance): consecutive
            // regions wrap around by subtraction, strided ones stay below `n` by construction.
            let regions = move |round: u64| {
                let (first, offset) = ((round * batch) % n, round % stride);
                (0..batch).map(move |k| {
                    if strided {
                        k * stride + offset
                    } else {
                        let r = first + k;
                        if r >= n { r - n } else { r }
                    }
                })
            };
            let mut ts = lock.resolved_ts();
            let mut round = 0;
            group.bench_function(BenchmarkId::new("kvfeed", n), |b| {
                b.iter(|| {
                    ts += 1;
                    round += 1;
                    black_box(lock.advance_batch(regions(round), ts));
                    black_box(lock.resolved_ts())
                });
            });
            group.bench_function(BenchmarkId::new("kvfeed_handles", n), |b| {
                b.iter(|| {
                    ts += 1;
                    round += 1;
                    let batch = regions(round).map(|r| handles[r as usize]);
                    black_box(lock.advance_handles(batch, ts));
                    black_box(lock.resolved_ts())
                });
            });
            for (name, _, (_, states)) in &models {
                let mut round = 0;
                group.bench_function(BenchmarkId::new(format!("{name}_bare"), n), |b| {
                    b.iter(|| {
                        ts += 1;
                        round += 1;
                        for r in regions(round) {
                            states[r as usize].state().advance(ts);
                        }
                    });
                });
            }
            group.finish();
        }

        let mut group = c.benchmark_group("rangelock/stats");
        if n >= 1_000_000 {
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::new("kvfeed", n), |b| b.iter(|| black_box(lock.stats())));
        let (_, _, (model, _)) = &models[0];
        group.bench_function(BenchmarkId::new("go_model", n), |b| {
            b.iter(|| black_box(model.slowest_fastest()))
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
        // Lock and unlock one range, a different one each time (scattered over the span), and
        // the same range again and again. Last: the groups above ran on freshly built locks, as
        // the Go benchmarks do (scattered re-locks scatter the Go model's entries in memory).
        for (group_name, same) in [("lock_unlock_pair", false), ("same_range_pair", true)] {
            let mut group = c.benchmark_group(format!("rangelock/{group_name}"));
            let pick = |step: u64| if same { n / 2 } else { scatter(step, n) } as usize;
            let mut step = 0;
            group.bench_function(BenchmarkId::new("kvfeed", n), |b| {
                b.iter(|| {
                    step += 1;
                    let i = pick(step);
                    let range = &ranges[i];
                    let unlocked = lock.unlock(range, i as u64, versions[i], None).expect("locked");
                    let _ = black_box(unlocked);
                    versions[i] += 1;
                    let outcome = lock.lock(range, i as u64, versions[i]).expect("inside the span");
                    let _ = black_box(outcome);
                });
            });
            for ((name, keys, (model, states)), versions) in
                models.iter_mut().zip(&mut model_versions)
            {
                let mut step = 0;
                group.bench_function(BenchmarkId::new(*name, n), |b| {
                    b.iter(|| {
                        step += 1;
                        let i = pick(step);
                        let (start, end) = &keys.bounds[i];
                        model.unlock(start, end, i as u64, versions[i]);
                        versions[i] += 1;
                        match model.lock(start, end, i as u64, versions[i]) {
                            LockResult::Success(entry) => states[i] = entry,
                            _ => panic!("free range"),
                        }
                    });
                });
            }
            group.finish();
            // Re-locked ranges are uninitialized; initialize them again.
            for i in 0..n {
                lock.mark_initialized(i);
            }
        }

        lock.check_invariants().expect("invariants hold after the benchmarks");
        assert_eq!(lock.len() as u64, n);
        for (_, _, (model, _)) in &models {
            assert_eq!(model.len() as u64, n);
        }
    }

    // Locking a million ranges from empty, as a criterion measurement too.
    let n = 1_000_000;
    let ranges = ranges(n);
    let go = [("go_model", GoRanges::record_keys(n)), ("go_model_10b", GoRanges::ten_bytes(n))];
    let mut group = c.benchmark_group("rangelock/lock_1m_from_empty");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("kvfeed", |b| {
        b.iter_batched(|| (), |()| black_box(kvfeed_lock(&ranges)), BatchSize::PerIteration)
    });
    for (name, keys) in &go {
        group.bench_function(*name, |b| {
            b.iter_batched(|| (), |()| black_box(keys.lock()), BatchSize::PerIteration)
        });
    }
    group.finish();
}

criterion_group! {
    name = rangelock;
    config = config();
    targets = benches
}
criterion_main!(rangelock);
