//! A seeded transactional workload over TiDB record keys.
//!
//! [`Workload`] draws transactions deterministically from a `u64` seed (a [`SplitMix64`]):
//! which tables and handles, how many keys, puts or deletes, two-phase or one-phase, committed
//! or rolled back. Running it against a [`Cluster`] commits through the same paths a client's
//! writes would, so the cluster's commit recorder ([`Cluster::committed_rows`]) holds what a
//! subscriber must receive.

use std::time::Duration;

use bytes::Bytes;
use kvfeed_span::table::record_key;

use crate::cluster::Cluster;
use crate::mvcc::{Mutation, TxnError};

/// SplitMix64: a tiny, good-enough deterministic generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Shape of a workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// The seed.
    pub seed: u64,
    /// TiDB table ids written to.
    pub tables: Vec<i64>,
    /// Row handles per table (`0..keys_per_table`).
    pub keys_per_table: i64,
    /// Keys per transaction, at most.
    pub max_txn_size: usize,
    /// Percentage of deletes among mutations.
    pub delete_percent: u64,
    /// Percentage of one-phase transactions.
    pub one_pc_percent: u64,
    /// Percentage of transactions rolled back instead of committed.
    pub rollback_percent: u64,
    /// Value length in bytes.
    pub value_len: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            tables: vec![100],
            keys_per_table: 1000,
            max_txn_size: 8,
            delete_percent: 10,
            one_pc_percent: 20,
            rollback_percent: 5,
            value_len: 16,
        }
    }
}

/// What one transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Committed in two phases.
    Committed {
        /// Start ts.
        start_ts: u64,
        /// Commit ts.
        commit_ts: u64,
    },
    /// Committed in one phase.
    OnePc {
        /// Commit ts.
        commit_ts: u64,
    },
    /// Prewritten, then rolled back.
    RolledBack {
        /// Start ts.
        start_ts: u64,
    },
    /// Refused (a key was locked, e.g. by an abandoned transaction).
    Conflict,
}

/// A deterministic workload generator.
#[derive(Debug, Clone)]
pub struct Workload {
    config: WorkloadConfig,
    rng: SplitMix64,
    counter: u64,
}

impl Workload {
    /// A workload from `config`.
    #[must_use]
    pub fn new(config: WorkloadConfig) -> Self {
        Self { rng: SplitMix64::new(config.seed), config, counter: 0 }
    }

    /// Every key the workload may touch, in key order.
    #[must_use]
    pub fn key_space(&self) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self
            .config
            .tables
            .iter()
            .flat_map(|&t| (0..self.config.keys_per_table).map(move |h| record_key(t, h)))
            .collect();
        keys.sort();
        keys
    }

    /// The next transaction's mutations (distinct keys; the first is the primary).
    pub fn next_mutations(&mut self) -> Vec<Mutation> {
        let size = 1 + self.rng.below(self.config.max_txn_size.max(1) as u64) as usize;
        let mut out: Vec<Mutation> = Vec::with_capacity(size);
        for _ in 0..size {
            let t = self.config.tables[self.rng.below(self.config.tables.len() as u64) as usize];
            let h = self.rng.below(self.config.keys_per_table.max(1) as u64) as i64;
            let key = Bytes::from(record_key(t, h));
            if out.iter().any(|m| m.key == key) {
                continue;
            }
            self.counter += 1;
            if self.rng.chance(self.config.delete_percent) {
                out.push(Mutation::delete(key));
            } else {
                let mut value = format!("v{}-", self.counter).into_bytes();
                value.resize(self.config.value_len.max(value.len()), b'.');
                out.push(Mutation::put(key, value));
            }
        }
        out
    }

    /// Runs one transaction against `cluster`.
    pub fn step(&mut self, cluster: &Cluster) -> TxnOutcome {
        let mutations = self.next_mutations();
        let one_pc = self.rng.chance(self.config.one_pc_percent);
        let rollback = self.rng.chance(self.config.rollback_percent);
        run_txn(cluster, &mutations, one_pc, rollback)
    }

    /// Runs `count` transactions at about `per_second` (0: as fast as possible).
    pub async fn run(
        &mut self,
        cluster: &Cluster,
        count: usize,
        per_second: u32,
    ) -> Vec<TxnOutcome> {
        let mut out = Vec::with_capacity(count);
        let mut timer =
            (per_second > 0).then(|| tokio::time::interval(Duration::from_secs(1) / per_second));
        for _ in 0..count {
            if let Some(t) = &mut timer {
                t.tick().await;
            } else {
                tokio::task::yield_now().await;
            }
            out.push(self.step(cluster));
        }
        out
    }
}

/// Runs one transaction of `mutations` on `cluster`: in one phase, or prewritten (TTL 3 s) and
/// then committed or, with `rollback`, rolled back. A commit refused after the prewrite (a
/// resolver rolled the primary back) rolls back the locks left, as a client would.
pub(crate) fn run_txn(
    cluster: &Cluster,
    mutations: &[Mutation],
    one_pc: bool,
    rollback: bool,
) -> TxnOutcome {
    let result: Result<TxnOutcome, TxnError> = if one_pc {
        cluster.commit_1pc(mutations).map(|commit_ts| TxnOutcome::OnePc { commit_ts })
    } else {
        cluster.prewrite(mutations, 3_000).and_then(|start_ts| {
            if rollback {
                cluster.rollback(start_ts).map(|()| TxnOutcome::RolledBack { start_ts })
            } else {
                cluster
                    .commit(start_ts)
                    .map(|commit_ts| TxnOutcome::Committed { start_ts, commit_ts })
                    .inspect_err(|_| {
                        let _ = cluster.rollback(start_ts);
                    })
            }
        })
    };
    result.unwrap_or(TxnOutcome::Conflict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic() {
        let mut a = Workload::new(WorkloadConfig { seed: 42, ..WorkloadConfig::default() });
        let mut b = Workload::new(WorkloadConfig { seed: 42, ..WorkloadConfig::default() });
        for _ in 0..100 {
            assert_eq!(a.next_mutations(), b.next_mutations());
        }
        let mut r = SplitMix64::new(7);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }
}
