//! Region cache and PD client benchmarks, each group with a baseline measured in the same run:
//!
//! - `regioncache/lookup_by_key` at 1k / 100k / 1M regions: `RegionCache::region_at`, beside a
//!   `BTreeMap<Vec<u8>, u64>` of start keys that needs an owned key per query (as client-rust's
//!   and the Go client's caches do) plus a `std` `HashMap` for the region;
//! - `regioncache/lookup_by_id` at the same sizes: `RegionCache::get`, beside a `std` `HashMap`;
//! - `regioncache/load_100k`: loading 100k regions (1024 per call, the default) from an
//!   in-process PD (`kvfeed-sim`'s `ScriptedPd`) over gRPC on 127.0.0.1 through `PdRegionSource` (decode, validation and cache
//!   inserts included) and through `PdClient::scan_regions` alone, beside decoding the same
//!   `ScanRegionsResponse` frames with prost and nothing else.
//!
//! Every structure is built once per size, outside the timed loops.

use core::hint::black_box;
use std::collections::{BTreeMap, HashMap};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kvfeed_benches::{criterion_config as config, row_key, scatter};
use kvfeed_proto::pdpb;
use kvfeed_regioncache::{
    DEFAULT_SCAN_LIMIT, PdClient, PdConfig, PdRegionSource, Peer, Region, RegionCache, RegionEpoch,
};
use kvfeed_sim::scripted::{ScriptedPd, split_regions};
use kvfeed_span::{EncodedKey, Span};
use prost::Message as _;

const SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];
/// Rows per region: region `i` covers rows `[i * ROWS, (i + 1) * ROWS)` of table 1.
const ROWS: u64 = 10;
/// How many distinct keys a lookup benchmark cycles through.
const PROBES: usize = 4096;
/// Regions loaded through PD.
const LOADED: u64 = 100_000;

/// The split keys of `n` regions (the first starts at minus infinity, the last ends at plus
/// infinity).
fn splits(n: u64) -> Vec<EncodedKey> {
    (1..n).map(|i| row_key(i * ROWS)).collect()
}

/// `n` regions over table 1 with three voters each.
fn regions(n: u64) -> Vec<Region> {
    let bounds: Vec<EncodedKey> = core::iter::once(EncodedKey::default())
        .chain(splits(n))
        .chain(core::iter::once(EncodedKey::default()))
        .collect();
    bounds
        .windows(2)
        .zip(1..)
        .map(|(pair, id)| {
            let span = Span::new(pair[0].clone(), pair[1].clone()).expect("ascending bounds");
            let peers = (1..=3).map(|s| Peer::voter(id * 10 + s, s)).collect();
            Region::new(id, span, RegionEpoch::new(1, 1), peers, Some(id * 10 + 1))
                .expect("valid region")
        })
        .collect()
}

fn lookups(c: &mut Criterion) {
    let mut by_key = c.benchmark_group("regioncache/lookup_by_key");
    by_key.throughput(Throughput::Elements(1));
    let mut built = Vec::new();
    for n in SIZES {
        let regions = regions(n);
        let mut cache = RegionCache::new();
        for region in regions.iter().cloned() {
            cache.insert(region);
        }
        let mut starts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut std_by_id: HashMap<u64, Region> = HashMap::new();
        for region in regions {
            starts.insert(region.start().to_vec(), region.id());
            std_by_id.insert(region.id(), region);
        }
        let probes: Vec<EncodedKey> =
            (0..PROBES as u64).map(|i| row_key(scatter(i, n) * ROWS + ROWS / 2)).collect();
        let mut i = 0;
        by_key.bench_with_input(BenchmarkId::new("region_cache", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % PROBES;
                black_box(cache.region_at(black_box(probes[i].as_bytes())).map(Region::id))
            })
        });
        by_key.bench_with_input(BenchmarkId::new("btreemap_owned_key", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % PROBES;
                let key = black_box(probes[i].as_bytes()).to_vec();
                let found = starts.range(..=key).next_back().and_then(|(_, id)| std_by_id.get(id));
                black_box(found.filter(|r| r.contains_key(probes[i].as_bytes())).map(Region::id))
            })
        });
        built.push((n, cache, std_by_id));
    }
    by_key.finish();

    let mut by_id = c.benchmark_group("regioncache/lookup_by_id");
    by_id.throughput(Throughput::Elements(1));
    for (n, cache, std_by_id) in &built {
        let probes: Vec<u64> = (0..PROBES as u64).map(|i| scatter(i, *n) + 1).collect();
        let mut i = 0;
        by_id.bench_with_input(BenchmarkId::new("region_cache", n), n, |b, _| {
            b.iter(|| {
                i = (i + 1) % PROBES;
                black_box(cache.get(black_box(probes[i])).map(Region::epoch))
            })
        });
        by_id.bench_with_input(BenchmarkId::new("std_hashmap", n), n, |b, _| {
            b.iter(|| {
                i = (i + 1) % PROBES;
                black_box(std_by_id.get(&black_box(probes[i])).map(Region::epoch))
            })
        });
    }
    by_id.finish();
}

/// Loads the whole key space through `source`, `DEFAULT_SCAN_LIMIT` regions per call.
async fn load_all(source: &PdRegionSource) -> usize {
    let mut span = Span::full();
    let mut loaded = 0;
    loop {
        let batch = source.load_regions(&span, DEFAULT_SCAN_LIMIT).await.expect("load");
        loaded += batch.regions.len();
        match batch.resume {
            Some(next) => span = Span::new(next, span.end().clone()).expect("resume below end"),
            None => return loaded,
        }
    }
}

/// Scans the whole key space with the PD client alone.
async fn scan_all(pd: &PdClient) -> usize {
    let mut span = Span::full();
    let mut loaded = 0;
    loop {
        let regions = pd.scan_regions(&span, DEFAULT_SCAN_LIMIT).await.expect("scan");
        loaded += regions.len();
        let last_end = regions.last().map(|r| r.end().clone()).unwrap_or_default();
        if regions.len() < DEFAULT_SCAN_LIMIT || last_end.is_empty() {
            return loaded;
        }
        span = Span::new(last_end, span.end().clone()).expect("resume below end");
    }
}

fn load(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pd_regions = split_regions(&splits(LOADED), &[1, 2, 3]);
    // The frames PD sends for the same scans, for the decode-only baseline.
    let frames: Vec<Vec<u8>> = pd_regions
        .chunks(DEFAULT_SCAN_LIMIT)
        .map(|chunk| {
            pdpb::ScanRegionsResponse {
                header: Some(pdpb::ResponseHeader { cluster_id: 1, error: None }),
                regions: chunk.to_vec(),
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    let (fake, pd) = runtime.block_on(async {
        let fake = ScriptedPd::start(1, 1).await.expect("scripted PD");
        fake.set_regions(pd_regions);
        let pd = PdClient::connect(PdConfig::new(fake.urls())).await.expect("connect");
        (fake, pd)
    });

    let mut group = c.benchmark_group("regioncache/load_100k");
    group.throughput(Throughput::Elements(LOADED));
    group.bench_function("pd_region_source", |b| {
        b.iter_batched(
            || PdRegionSource::new(pd.clone()),
            |source| {
                assert_eq!(runtime.block_on(load_all(&source)), LOADED as usize);
                source
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("pd_client_scan_only", |b| {
        b.iter(|| assert_eq!(runtime.block_on(scan_all(&pd)), LOADED as usize))
    });
    group.bench_function("prost_decode_only", |b| {
        b.iter(|| {
            let mut decoded = 0;
            for frame in &frames {
                let resp =
                    pdpb::ScanRegionsResponse::decode(black_box(&frame[..])).expect("decode");
                decoded += resp.regions.len();
            }
            assert_eq!(decoded, LOADED as usize);
        })
    });
    group.finish();
    drop(fake);
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookups, load
}
criterion_main!(benches);
