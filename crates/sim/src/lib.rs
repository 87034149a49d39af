//! A simulated TiKV cluster speaking the real protocol: one PD and N stores as tonic servers on
//! `127.0.0.1` ephemeral ports, holding MVCC data, regions with epochs and leaders, and serving
//! `pdpb.PD`, `cdcpb.ChangeData` (`EventFeed`, `EventFeedV2`) and the `tikvpb.Tikv` lock APIs
//! with TiKV v8.1's semantics as seen through gRPC.
//!
//! - [`Cluster`] starts and stops it, runs transactions and resolved-ts ticks, and injects
//!   faults (split, merge, leader transfer, store stop/restart, stream reset, busy, congested,
//!   slow store, V1-only store, abandoned locks), on demand or from a seeded [`FaultSchedule`].
//! - [`Workload`] generates a deterministic transactional workload from a seed;
//!   [`TidbWorkload`] one that writes TiDB's encodings (meta keys, rows in formats v2 and v1,
//!   DDL jobs) and [`verify_tidb`] checks a decoding watcher against it.
//! - [`scripted::ScriptedPd`] serves the same PD without a cluster: regions, stores and TSO a
//!   test scripts, several members, and the misbehaviour of [`PdKnobs`] (also settable on a
//!   cluster's PD through [`Cluster::with_pd`]).
//! - [`verify()`] checks a subscriber's event log against the recorded commits
//!   ([`verify_up_to`]: of a subscription read only up to a resolved ts), and
//!   [`Report::first_violation`] says what it found wrong first.
//!
//! Behaviour worth knowing (details in each module):
//!
//! - One PD member (the leader, serving `BatchScanRegions` and both `ScanRegions` layouts) and stores `1..=N`; every region has a peer on `replicas`
//!   stores, leaders spread round-robin. Region ids and peer ids come from one allocator.
//! - Splits keep the id on the right half (TiKV's `right-derive-when-split`), both halves get
//!   `version + 1`; merges extend the target with `version = max + 1`.
//! - Resolved ts is `min(TSO, oldest lock start_ts in the region)`, only for initialized
//!   registrations on the region's leader, sorted and sent in groups of 8, 32, 128, ...
//! - Live COMMIT rows carry the value only when it is short (<= 255 bytes) and never the old
//!   value; clients take both from the PREWRITE, as with TiKV.
//! - Stopping a store fails its streams and moves its leaders to live peers at once (an
//!   election, without the timeout); PD keeps listing the store as Up.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kvfeed_sim::{Cluster, ClusterConfig, Mutation};
//! let cluster = Cluster::start(ClusterConfig::default()).await?;
//! let key = kvfeed_span::table::record_key(100, 1);
//! let (start_ts, commit_ts) = cluster.commit_2pc(&[Mutation::put(key, "v")]).unwrap();
//! assert!(start_ts < commit_ts);
//! println!("PD at {}", cluster.pd_address());
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
// Items not reachable from the crate root say so (`pub(crate)`).
#![warn(unreachable_pub)]

/// Compiles the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod cdc;
mod cluster;
mod faults;
mod gc;
mod kv;
mod mvcc;
mod pd;
mod read;
mod region;
pub mod scripted;
mod state;
mod tidb;
mod tikv_context;
mod tso;
mod verify;
mod workload;

pub use cdc::STREAM_MULTIPLEXING;
pub use cluster::{Cluster, ClusterConfig};
pub use faults::{Fault, FaultError, FaultSchedule};
pub use gc::GC_WORKER_SERVICE;
pub use mvcc::{CommittedRow, Lock, Mutation, Op, TxnError};
#[cfg(feature = "tls")]
pub use pd::ServerTls;
pub use pd::{PdCalls, PdKnobs, ScanLayout, ScriptedData};
pub use region::{PeerMeta, RegionError, RegionMeta};
pub use state::CdcStats;
pub use tidb::{TIDB_DB, TidbConfig, TidbReport, TidbStep, TidbWorkload, verify_tidb};
pub use tso::{LOGICAL_BITS, compose, physical_of};
pub use verify::{
    FeedEvent, Report, RowEvent, SnapshotReport, state_at, verify, verify_snapshot, verify_up_to,
};
pub use workload::{SplitMix64, TxnOutcome, Workload, WorkloadConfig};
