//! How `demo` and `sim serve` lay out the simulated cluster: tables, keys and region splits.

use kvfeed_sim::{ClusterConfig, TidbConfig, TidbWorkload, Workload, WorkloadConfig};
use kvfeed_span::table::{record_key, record_prefix};

use crate::Failure;

/// The first table id; tables are `FIRST_TABLE..FIRST_TABLE + tables`.
pub(crate) const FIRST_TABLE: i64 = 100;
/// Row handles per table.
pub(crate) const KEYS_PER_TABLE: i64 = 1000;

/// Refuses sizes of 0 (they used to be clamped to 1 in silence).
pub(crate) fn check_sizes(stores: usize, regions: usize, tables: usize) -> Result<(), Failure> {
    for (flag, value) in [("--stores", stores), ("--regions", regions), ("--tables", tables)] {
        if value == 0 {
            return Err(Failure::usage(format!("{flag} must be at least 1")));
        }
    }
    Ok(())
}

/// The tables of a layout.
pub(crate) fn tables(count: usize) -> Vec<i64> {
    (0..count.max(1) as i64).map(|i| FIRST_TABLE + i).collect()
}

/// Split keys giving about `regions` regions over the tables (at least one per table): each
/// table starts a region, and its handles are cut evenly into its share (beyond
/// `KEYS_PER_TABLE` regions per table, one handle per region).
pub(crate) fn split_keys(regions: usize, tables: &[i64]) -> Vec<Vec<u8>> {
    let count = tables.len();
    let mut keys = Vec::new();
    for (i, &table) in tables.iter().enumerate() {
        let share = (regions / count + usize::from(i < regions % count)).max(1) as i64;
        keys.push(record_prefix(table));
        let handles = KEYS_PER_TABLE.max(share);
        for k in 1..share {
            let handle = k * handles / share;
            keys.push(record_key(table, handle));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The simulated cluster of a layout (resolved ts every 500 ms).
pub(crate) fn cluster_config(stores: usize, regions: usize, tables: &[i64]) -> ClusterConfig {
    let stores = stores.max(1);
    ClusterConfig {
        stores,
        replicas: stores.min(3),
        split_keys: split_keys(regions, tables),
        resolved_ts_interval: Some(std::time::Duration::from_millis(500)),
        ..ClusterConfig::default()
    }
}

/// The seeded workload over the tables, writing values of `value_len` bytes.
pub(crate) fn workload(seed: u64, tables: &[i64], value_len: usize) -> Workload {
    Workload::new(WorkloadConfig {
        seed,
        tables: tables.to_vec(),
        keys_per_table: KEYS_PER_TABLE,
        value_len,
        ..WorkloadConfig::default()
    })
}

/// The seeded TiDB workload over the tables (`demo.t0`, .. in table order), a DDL job in about
/// every `ddl_every` transactions.
pub(crate) fn tidb_workload(seed: u64, tables: &[i64], ddl_every: u64) -> TidbWorkload {
    TidbWorkload::new(TidbConfig {
        seed,
        table_ids: tables.to_vec(),
        keys_per_table: KEYS_PER_TABLE,
        ddl_every,
        ..TidbConfig::default()
    })
}

/// The workload's default value length.
pub(crate) const VALUE_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_spread_over_the_tables() {
        let tables = tables(4);
        assert_eq!(tables, [100, 101, 102, 103]);
        let keys = split_keys(16, &tables);
        assert_eq!(keys.len(), 16, "4 table starts + 3 cuts in each table");
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(split_keys(2, &tables).len(), 4, "at least one region per table");
        assert_eq!(split_keys(5000, &tables[..1]).len(), 5000, "one handle per region");
    }
}
