//! Key and span math benchmarks, each group with a naive baseline measured in the same run:
//!
//! - `span/encode`, `span/decode`: the memcomparable codec per key, beside a plain copy of the same
//!   bytes and a byte-at-a-time codec;
//! - `span/cmp_raw_with_encoded`: comparing a raw key with an encoded one, beside encoding first;
//! - `span/intersect`: `Span::intersect`, beside a naive intersection over `Option<Vec<u8>>` bounds.
//!
//! Inputs are built once, outside the timed loops. (The range lock's piece index has its own
//! benchmarks in `rangelock.rs`.)

use core::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kvfeed_benches::{criterion_config as config, row_key, scatter};
use kvfeed_span::key::{self, cmp_raw_with_encoded};
use kvfeed_span::{EncodedKey, Span, table};

/// How many distinct keys a lookup benchmark cycles through (enough to defeat the branch
/// predictor, few enough to stay in cache as inputs).
const PROBES: usize = 4096;

/// The raw record key of row `i` of table 1 (19 bytes, as [`row_key`] encodes).
fn raw_row_key(i: u64) -> Vec<u8> {
    table::record_key(1, i as i64)
}

/// A byte-at-a-time memcomparable encoder: the baseline for `key::encode`.
fn naive_encode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let left = raw.len() - at;
        for j in 0..8 {
            out.push(if j < left { raw[at + j] } else { 0 });
        }
        if left >= 8 {
            out.push(0xFF);
            at += 8;
        } else {
            out.push(0xFF - (8 - left) as u8);
            return out;
        }
    }
}

/// A byte-at-a-time memcomparable decoder (no validation of the padding): the baseline for
/// `key::decode`.
fn naive_decode(encoded: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for group in encoded.chunks(9) {
        let marker = *group.get(8)?;
        let pad = usize::from(0xFF - marker);
        for &b in &group[..8 - pad.min(8)] {
            out.push(b);
        }
        if pad > 0 {
            return Some(out);
        }
    }
    None
}

fn codec(c: &mut Criterion) {
    let keys: [(&str, Vec<u8>); 2] =
        [("row_key_19B", raw_row_key(123_456_789)), ("64B", (0..64).collect())];
    let mut group = c.benchmark_group("span/encode");
    group.throughput(Throughput::Elements(1));
    for (name, raw) in &keys {
        let mut buf = Vec::with_capacity(128);
        group.bench_with_input(BenchmarkId::new("kvfeed_encode_into", name), raw, |b, raw| {
            b.iter(|| {
                buf.clear();
                key::encode_into(black_box(raw), &mut buf);
                black_box(buf.len())
            });
        });
        group.bench_with_input(BenchmarkId::new("kvfeed_encode", name), raw, |b, raw| {
            b.iter(|| key::encode(black_box(raw)));
        });
        group.bench_with_input(BenchmarkId::new("baseline_to_vec", name), raw, |b, raw| {
            b.iter(|| black_box(raw.as_slice()).to_vec());
        });
        group.bench_with_input(BenchmarkId::new("baseline_naive_encode", name), raw, |b, raw| {
            b.iter(|| naive_encode(black_box(raw)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("span/decode");
    group.throughput(Throughput::Elements(1));
    for (name, raw) in &keys {
        let encoded = key::encode(raw);
        assert_eq!(naive_decode(&encoded).as_ref(), Some(raw));
        group.bench_with_input(BenchmarkId::new("kvfeed_decode", name), &encoded, |b, enc| {
            b.iter(|| key::decode(black_box(enc)));
        });
        group.bench_with_input(BenchmarkId::new("baseline_to_vec", name), &encoded, |b, enc| {
            b.iter(|| black_box(enc.as_slice()).to_vec());
        });
        group.bench_with_input(
            BenchmarkId::new("baseline_naive_decode", name),
            &encoded,
            |b, enc| {
                b.iter(|| naive_decode(black_box(enc)));
            },
        );
    }
    group.finish();
}

fn cmp_raw(c: &mut Criterion) {
    // Raw row keys against encoded row keys of the same table: a long shared prefix, as in a
    // range filter on the event path.
    let raws: Vec<Vec<u8>> = (0..PROBES as u64).map(|i| raw_row_key(scatter(i, 1 << 40))).collect();
    let bound = row_key(1 << 39);
    let mut group = c.benchmark_group("span/cmp_raw_with_encoded");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("kvfeed_cmp_raw_with_encoded", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            cmp_raw_with_encoded(black_box(&raws[i]), black_box(bound.as_bytes()))
        });
    });
    group.bench_function("baseline_encode_then_cmp", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            key::encode(black_box(&raws[i])).as_slice().cmp(black_box(bound.as_bytes()))
        });
    });
    group.finish();
}

/// Naive span bounds: `None` for an unbounded end.
type NaiveSpan = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A naive intersection over optional bounds (`None` start is minus infinity, `None` end plus
/// infinity).
fn naive_intersect(a: &NaiveSpan, b: &NaiveSpan) -> Option<NaiveSpan> {
    let start = match (&a.0, &b.0) {
        (None, other) | (other, None) => other.clone(),
        (Some(x), Some(y)) => Some(x.max(y).clone()),
    };
    let end = match (&a.1, &b.1) {
        (None, other) | (other, None) => other.clone(),
        (Some(x), Some(y)) => Some(x.min(y).clone()),
    };
    match (&start, &end) {
        (Some(s), Some(e)) if s >= e => None,
        _ => Some((start, end)),
    }
}

fn naive_span(span: &Span) -> NaiveSpan {
    let bound = |k: &EncodedKey| (!k.is_empty()).then(|| k.as_bytes().to_vec());
    (bound(span.start()), bound(span.end()))
}

fn intersect(c: &mut Criterion) {
    let table = table::table_span(8616);
    let cases = [
        ("overlapping", table.clone(), Span::new(row_key(10), EncodedKey::default()).unwrap()),
        ("nested", table.clone(), table::table_span(8616)),
        ("disjoint", table, table::table_span(8617)),
    ];
    let mut group = c.benchmark_group("span/intersect");
    for (name, a, b) in &cases {
        let (na, nb) = (naive_span(a), naive_span(b));
        assert_eq!(a.intersect(b).ok().map(|s| naive_span(&s)), naive_intersect(&na, &nb));
        group.bench_function(BenchmarkId::new("kvfeed_intersect", name), |bench| {
            bench.iter(|| black_box(a).intersect(black_box(b)));
        });
        group.bench_function(BenchmarkId::new("baseline_naive_intersect", name), |bench| {
            bench.iter(|| naive_intersect(black_box(&na), black_box(&nb)));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = codec, cmp_raw, intersect
}
criterion_main!(benches);
