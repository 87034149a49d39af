//! The cluster's shared state and the event plumbing every server and fault goes through.
//!
//! One `std::sync::Mutex<ClusterState>` holds the TSO, the MVCC data, the region table, the
//! stores and every CDC connection with its registrations. Critical sections are short and never
//! span an `.await`: outgoing events go into each connection's unbounded channel, and a per-
//! connection forwarder task moves them to the gRPC response (delaying them on a slow store).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kvfeed_proto::cdcpb::{self, ChangeDataEvent, Event, ResolvedTs, event};
use kvfeed_proto::errorpb;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::gc::GcState;
use crate::mvcc::{CommittedRow, Lock, LockSpec, Mutation, Mvcc, Op, TxnError};
use crate::region::{RegionMeta, RegionTable, raw_in_range};
use crate::tso::{Tso, compose, physical_of};

/// What a connection's forwarder sends to the client.
pub(crate) type Outgoing = Result<ChangeDataEvent, Status>;

/// Rows per `Entries` event of an incremental scan.
pub(crate) const ROWS_PER_EVENT: usize = 64;

/// Live rows of one apply are cut into `Entries` events of at most this many bytes of keys and
/// values (one row may be larger) or [`LIVE_ROWS_PER_EVENT`] rows, in TiKV's shape: the COMMIT
/// rows of a large transaction, which carry no value, come hundreds to an event.
const LIVE_EVENT_BYTES: usize = 1 << 20;

/// The most rows of one live `Entries` event.
const LIVE_ROWS_PER_EVENT: usize = 1024;

/// Cuts `rows` into runs of at most [`LIVE_EVENT_BYTES`] (at least one row each) and
/// [`LIVE_ROWS_PER_EVENT`] rows.
fn live_chunks(rows: &[event::Row]) -> impl Iterator<Item = &[event::Row]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut len = 0;
        while len < rest.len() && len < LIVE_ROWS_PER_EVENT {
            let row = &rest[len];
            let size = row.key.len() + row.value.len() + row.old_value.len();
            if len > 0 && bytes + size > LIVE_EVENT_BYTES {
                break;
            }
            bytes += size;
            len += 1;
        }
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        Some(chunk)
    })
}

/// Events per `ChangeDataEvent` message.
pub(crate) const EVENTS_PER_MESSAGE: usize = 128;

/// Locks the state, ignoring poisoning (a panicked test thread must not wedge the servers).
pub(crate) fn lock(state: &Mutex<ClusterState>) -> MutexGuard<'_, ClusterState> {
    kvfeed_base::lock(state)
}

/// Everything the servers share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<ClusterState>,
    pub(crate) cluster_id: u64,
    pub(crate) pd_url: String,
}

/// Counters of one store's ChangeData service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CdcStats {
    /// Streams opened (`EventFeed` and `EventFeedV2`).
    pub streams_opened: u64,
    /// Streams opened that received at least one Deregister.
    pub streams_with_deregister: u64,
    /// Register requests received (accepted or not).
    pub registers: u64,
    /// Deregister requests received.
    pub deregisters: u64,
    /// Registrations live now.
    pub live_registrations: u64,
    /// Register requests accepted with a checkpoint ts below the GC safe point (served from
    /// what GC left, as TiKV does: changes may be missing).
    pub registers_below_safe_point: u64,
    /// Snapshot reads (`KvGet`, `KvScan`, `KvBatchGet`) refused because their ts was below the
    /// GC safe point.
    pub reads_below_safe_point: u64,
}

/// One store as the servers see it.
#[derive(Debug)]
pub(crate) struct StoreState {
    pub(crate) stats: CdcStats,
    pub(crate) address: String,
    pub(crate) up: bool,
    pub(crate) v1_only: bool,
    pub(crate) busy_registers: u32,
    pub(crate) congested_registers: u32,
    /// Incremental scans registered and not yet finished.
    pub(crate) pending_scans: usize,
    /// Delay in ms before each outgoing CDC message.
    pub(crate) slow_ms: Arc<AtomicU64>,
    /// The cluster id this store checks requests against, when it differs from the cluster's
    /// (a store of another cluster behind this PD).
    pub(crate) cluster_id: Option<u64>,
    /// Answer every register with `Compatibility` naming this version (a store that needs a
    /// newer client).
    pub(crate) requires_version: Option<String>,
    /// The TiKV version PD reports for the store.
    pub(crate) version: String,
    /// Accept registers and never scan (a wedged store).
    pub(crate) wedged: bool,
}

/// Feature gates of a connection, from its first request's version.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gates {
    pub(crate) batch_resolved_ts: bool,
    pub(crate) validate_cluster_id: bool,
}

/// One registration `(request_id, region_id)` on a connection.
#[derive(Debug)]
pub(crate) struct Reg {
    pub(crate) seq: u64,
    pub(crate) start: Bytes,
    pub(crate) end: Bytes,
    pub(crate) initialized: bool,
}

/// One CDC stream.
pub(crate) struct Conn {
    pub(crate) store_id: u64,
    pub(crate) tx: mpsc::UnboundedSender<Outgoing>,
    pub(crate) multiplex: bool,
    pub(crate) gates: Option<Gates>,
    pub(crate) first_cluster_id: u64,
    pub(crate) regs: HashMap<(u64, u64), Reg>,
    pub(crate) got_deregister: bool,
    /// Dropped with the connection: ends its reader task.
    pub(crate) _kill: oneshot::Sender<()>,
}

/// The whole simulated cluster.
pub(crate) struct ClusterState {
    pub(crate) tso: Tso,
    pub(crate) mvcc: Mvcc,
    pub(crate) regions: RegionTable,
    pub(crate) stores: BTreeMap<u64, StoreState>,
    pub(crate) conns: HashMap<u64, Conn>,
    /// Registrations by region: `(conn, request_id)`.
    pub(crate) by_region: HashMap<u64, Vec<(u64, u64)>>,
    pub(crate) next_conn: u64,
    pub(crate) next_seq: u64,
    pub(crate) apply_index: u64,
    pub(crate) record: bool,
    pub(crate) recorded: Vec<CommittedRow>,
    /// Pending incremental scans per store above which registers get ServerIsBusy.
    pub(crate) max_pending_scans: usize,
    /// Regions whose registrations are dropped with `RegionNotFound` right after their
    /// incremental scan ends, until the deadline (TiKV v8.1 reporting its memory-quota trouble).
    pub(crate) scan_storms: HashMap<u64, tokio::time::Instant>,
    /// Register requests received, by region (accepted or not).
    pub(crate) region_registers: HashMap<u64, u64>,
    /// PD's GC safe points.
    pub(crate) gc: GcState,
}

/// A region-level CDC error.
pub(crate) fn region_not_found(region_id: u64) -> cdcpb::Error {
    cdcpb::Error {
        region_not_found: Some(errorpb::RegionNotFound { region_id }),
        ..cdcpb::Error::default()
    }
}

pub(crate) fn error_event(region_id: u64, request_id: u64, error: cdcpb::Error) -> Event {
    Event { region_id, request_id, index: 0, event: Some(event::Event::Error(error)) }
}

fn entries_event(region_id: u64, request_id: u64, index: u64, rows: Vec<event::Row>) -> Event {
    Event {
        region_id,
        request_id,
        index,
        event: Some(event::Event::Entries(event::Entries { entries: rows })),
    }
}

fn op_type(op: Op) -> i32 {
    match op {
        Op::Put => event::row::OpType::Put as i32,
        Op::Delete => event::row::OpType::Delete as i32,
    }
}

pub(crate) fn prewrite_row(key: &Bytes, lock: &Lock) -> event::Row {
    event::Row {
        start_ts: lock.start_ts,
        r#type: event::LogType::Prewrite as i32,
        op_type: op_type(lock.op),
        key: key.clone(),
        value: lock.value.clone(),
        old_value: lock.old_value.clone().unwrap_or_default(),
        ..event::Row::default()
    }
}

pub(crate) fn committed_row(row: &CommittedRow, log_type: event::LogType) -> event::Row {
    let short = log_type == event::LogType::Committed || row.value.len() <= 255;
    event::Row {
        start_ts: row.start_ts,
        commit_ts: row.commit_ts,
        r#type: log_type as i32,
        op_type: op_type(row.op),
        key: row.key.clone(),
        value: if short { row.value.clone() } else { Bytes::new() },
        old_value: if log_type == event::LogType::Committed {
            row.old_value.clone().unwrap_or_default()
        } else {
            Bytes::new()
        },
        ..event::Row::default()
    }
}

fn rollback_row(key: &Bytes, start_ts: u64) -> event::Row {
    event::Row {
        start_ts,
        r#type: event::LogType::Rollback as i32,
        op_type: event::row::OpType::Unknown as i32,
        key: key.clone(),
        ..event::Row::default()
    }
}

pub(crate) fn initialized_row() -> event::Row {
    event::Row { r#type: event::LogType::Initialized as i32, ..event::Row::default() }
}

impl ClusterState {
    /// Sends `events` on connection `conn` (dropped silently if it is gone).
    pub(crate) fn send_events(&self, conn: u64, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.tx.send(Ok(ChangeDataEvent { events, resolved_ts: None }));
        }
    }

    /// Sends a batched resolved ts on `conn`.
    pub(crate) fn send_resolved(&self, conn: u64, resolved: ResolvedTs) {
        if let Some(c) = self.conns.get(&conn) {
            let _ =
                c.tx.send(Ok(ChangeDataEvent { events: Vec::new(), resolved_ts: Some(resolved) }));
        }
    }

    /// Live rows of one region, as events for every registration whose range holds the row
    /// key, added to `out` by connection.
    fn region_events(
        &mut self,
        region_id: u64,
        rows: &[event::Row],
        out: &mut BTreeMap<u64, Vec<Event>>,
    ) {
        let Some(subs) = self.by_region.get(&region_id) else { return };
        self.apply_index += 1;
        let index = self.apply_index;
        for &(conn, request_id) in subs {
            let Some(c) = self.conns.get(&conn) else { continue };
            let Some(reg) = c.regs.get(&(request_id, region_id)) else { continue };
            let mine: Vec<event::Row> = rows
                .iter()
                .filter(|r| raw_in_range(&r.key, &reg.start, &reg.end))
                .cloned()
                .collect();
            out.entry(conn).or_default().extend(
                live_chunks(&mine)
                    .map(|chunk| entries_event(region_id, request_id, index, chunk.to_vec())),
            );
        }
    }

    /// Groups rows by the region holding their key and sends them, all events of one apply
    /// packed into one `ChangeDataEvent` per connection.
    fn emit(&mut self, rows: Vec<event::Row>) {
        let mut by_region: BTreeMap<u64, Vec<event::Row>> = BTreeMap::new();
        for row in rows {
            if let Some(r) = self.regions.locate_raw(&row.key) {
                by_region.entry(r.id).or_default().push(row);
            }
        }
        let mut out = BTreeMap::new();
        for (region, rows) in by_region {
            self.region_events(region, &rows, &mut out);
        }
        for (conn, events) in out {
            for chunk in events.chunks(EVENTS_PER_MESSAGE) {
                self.send_events(conn, chunk.to_vec());
            }
        }
    }

    /// Removes one registration and sends it `error`.
    pub(crate) fn drop_reg(
        &mut self,
        conn: u64,
        request_id: u64,
        region_id: u64,
        error: cdcpb::Error,
    ) {
        let removed =
            self.conns.get_mut(&conn).and_then(|c| c.regs.remove(&(request_id, region_id)));
        if removed.is_some() {
            self.unindex(region_id, conn, request_id);
            self.send_events(conn, vec![error_event(region_id, request_id, error)]);
        }
    }

    fn unindex(&mut self, region_id: u64, conn: u64, request_id: u64) {
        if let Some(set) = self.by_region.get_mut(&region_id) {
            set.retain(|s| *s != (conn, request_id));
            if set.is_empty() {
                self.by_region.remove(&region_id);
            }
        }
    }

    /// Sends `error` to every registration of a region (all request ids, all connections) and
    /// removes them, as TiKV does when a region's delegate stops.
    pub(crate) fn drop_region(&mut self, region_id: u64, error: &cdcpb::Error) {
        let subs: Vec<(u64, u64)> =
            self.by_region.get(&region_id).map(|s| s.to_vec()).unwrap_or_default();
        for (conn, request_id) in subs {
            self.drop_reg(conn, request_id, region_id, error.clone());
        }
    }

    /// Closes a connection: its registrations go, the stream ends (with `status` if given).
    pub(crate) fn remove_conn(&mut self, conn: u64, status: Option<Status>) {
        let Some(c) = self.conns.remove(&conn) else { return };
        for &(request_id, region_id) in c.regs.keys() {
            self.unindex(region_id, conn, request_id);
        }
        if let Some(status) = status {
            let _ = c.tx.send(Err(status));
        }
    }

    /// The connections served by `store`.
    pub(crate) fn conns_of(&self, store: u64) -> Vec<u64> {
        self.conns.iter().filter(|(_, c)| c.store_id == store).map(|(id, _)| *id).collect()
    }

    // ----- transactions ---------------------------------------------------------------------

    /// Prewrites a whole transaction (an async-commit one with `async_commit`) at a fresh start
    /// ts; live PREWRITE rows go out.
    pub(crate) fn prewrite(
        &mut self,
        mutations: &[Mutation],
        ttl_ms: u64,
        async_commit: bool,
    ) -> Result<u64, TxnError> {
        let start_ts = self.tso.next();
        let all: Vec<usize> = (0..mutations.len()).collect();
        self.prewrite_part(start_ts, mutations, &all, ttl_ms, async_commit)?;
        Ok(start_ts)
    }

    /// Prewrites the mutations of the transaction `all` (its first is the primary) at
    /// `indices`, at `start_ts`: the rest stays unwritten (a prewrite still on its way, or one
    /// that never comes). With `async_commit`, the locks carry a fresh min commit ts and the
    /// primary's lock lists every other key. Live PREWRITE rows go out.
    pub(crate) fn prewrite_part(
        &mut self,
        start_ts: u64,
        all: &[Mutation],
        indices: &[usize],
        ttl_ms: u64,
        async_commit: bool,
    ) -> Result<(), TxnError> {
        let primary = all.first().ok_or(TxnError::Empty)?.key.clone();
        let part: Vec<Mutation> = indices.iter().filter_map(|&i| all.get(i).cloned()).collect();
        let async_commit = async_commit.then(|| {
            let secondaries = all[1..].iter().map(|m| m.key.clone()).collect();
            (self.tso.next(), secondaries)
        });
        let spec = LockSpec { primary, ttl_ms, txn_size: all.len() as u64, async_commit };
        let locks = self.mvcc.prewrite_keys(&spec, &part, start_ts)?;
        let rows = locks.iter().map(|(k, l)| prewrite_row(k, l)).collect();
        self.emit(rows);
        Ok(())
    }

    /// Commits `keys` of `start_ts` at `commit_ts`; live COMMIT rows go out and the rows are
    /// recorded. Returns how many keys committed.
    pub(crate) fn commit_keys(&mut self, keys: &[Bytes], start_ts: u64, commit_ts: u64) -> usize {
        let mut rows = Vec::new();
        for key in keys {
            if let Some(row) = self.mvcc.commit_key(key, start_ts, commit_ts) {
                rows.push(committed_row(&row, event::LogType::Commit));
                if self.record {
                    self.recorded.push(row);
                }
            }
        }
        let n = rows.len();
        self.emit(rows);
        n
    }

    /// Rolls back `keys` of `start_ts`; live ROLLBACK rows go out for the locks removed.
    pub(crate) fn rollback_keys(&mut self, keys: &[Bytes], start_ts: u64) -> usize {
        let rows: Vec<event::Row> = keys
            .iter()
            .filter(|k| self.mvcc.rollback_key(k, start_ts))
            .map(|k| rollback_row(k, start_ts))
            .collect();
        let n = rows.len();
        self.emit(rows);
        n
    }

    /// Commits every lock of the transaction: a normal one at a fresh commit ts, if its primary
    /// is still locked; an async-commit one at the largest min commit ts of its keys, if every
    /// key is still locked (or at the commit ts a resolver already chose for some of them).
    pub(crate) fn commit_txn(&mut self, start_ts: u64) -> Result<u64, TxnError> {
        let keys = self.mvcc.locked_keys(start_ts);
        let Some(first) = keys.first().and_then(|k| self.mvcc.lock(k)).cloned() else {
            return Err(TxnError::TxnNotFound { start_ts });
        };
        let primary = self.mvcc.lock(&first.primary).filter(|p| p.start_ts == start_ts).cloned();
        let commit_ts = if first.async_commit {
            let decided = self.mvcc.commit_ts_of(&first.primary, start_ts).or_else(|| {
                primary.as_ref().and_then(|p| {
                    p.secondaries.iter().find_map(|k| self.mvcc.commit_ts_of(k, start_ts))
                })
            });
            match (decided, &primary) {
                (Some(commit_ts), _) => commit_ts,
                (None, Some(p)) if keys.len() as u64 == p.txn_size => keys
                    .iter()
                    .filter_map(|k| self.mvcc.lock(k))
                    .map(|l| l.min_commit_ts)
                    .max()
                    .unwrap_or(p.min_commit_ts),
                _ => return Err(TxnError::TxnNotFound { start_ts }),
            }
        } else {
            // The primary decides: once a resolver rolled it back, the transaction cannot
            // commit.
            if primary.is_none() {
                return Err(TxnError::TxnNotFound { start_ts });
            }
            self.tso.next()
        };
        self.commit_keys(&keys, start_ts, commit_ts);
        Ok(commit_ts)
    }

    /// Writes `mutations` as one transaction that CDC does not see (as a physical import
    /// ingests files under TiKV's change stream); recorded like any commit. Returns its commit
    /// ts.
    pub(crate) fn bulk_load(&mut self, mutations: impl IntoIterator<Item = Mutation>) -> u64 {
        let start_ts = self.tso.next();
        let commit_ts = self.tso.next();
        for m in mutations {
            let row = self.mvcc.write_version(m.key, m.op, m.value, start_ts, commit_ts);
            if self.record {
                self.recorded.push(row);
            }
        }
        commit_ts
    }

    /// Writes a transaction in one phase (rows go out as COMMITTED).
    pub(crate) fn commit_1pc(&mut self, mutations: &[Mutation]) -> Result<u64, TxnError> {
        if mutations.is_empty() {
            return Err(TxnError::Empty);
        }
        let start_ts = self.tso.next();
        for m in mutations {
            if let Some(l) = self.mvcc.lock(&m.key) {
                return Err(TxnError::Locked { key: m.key.clone(), lock_ts: l.start_ts });
            }
        }
        let commit_ts = self.tso.next();
        let mut rows = Vec::new();
        for m in mutations {
            let row =
                self.mvcc.write_version(m.key.clone(), m.op, m.value.clone(), start_ts, commit_ts);
            rows.push(committed_row(&row, event::LogType::Committed));
            if self.record {
                self.recorded.push(row);
            }
        }
        self.emit(rows);
        Ok(commit_ts)
    }

    // ----- GC -------------------------------------------------------------------------------

    /// Seconds of the TSO's physical clock (PD's clock for service safe-point TTLs).
    pub(crate) fn now_secs(&mut self) -> i64 {
        physical_of(self.tso.next()) / 1000
    }

    /// One round of the GC worker with a GC life time of `life_ms`: the safe point moves to
    /// now minus the life time, held back by the service safe points and by the oldest lock (as
    /// TiDB's GC worker, which resolves the locks below its safe point before it advances,
    /// waits for them), and the versions below it are compacted. Returns the safe point.
    pub(crate) fn run_gc(&mut self, life_ms: u64) -> u64 {
        self.gc_round(life_ms, true)
    }

    /// [`ClusterState::run_gc`], honouring the service safe points or not (a forced round).
    pub(crate) fn gc_round(&mut self, life_ms: u64, honour_services: bool) -> u64 {
        let now = self.tso.next();
        let now_secs = physical_of(now) / 1000;
        let life = i64::try_from(life_ms).unwrap_or(i64::MAX);
        let mut candidate = compose(physical_of(now).saturating_sub(life).max(0), 0);
        if let Some(oldest) = self.mvcc.all_locks().map(|(_, l)| l.start_ts).min() {
            candidate = candidate.min(oldest.saturating_sub(1));
        }
        let safe_point = if honour_services {
            self.gc.advance(candidate, now_secs)
        } else {
            self.gc.force(candidate)
        };
        self.mvcc.compact(safe_point);
        safe_point
    }

    // ----- resolved ts ----------------------------------------------------------------------

    /// One resolved-ts round on `store`: TSO, min lock per region, batches per connection.
    pub(crate) fn tick_resolved(&mut self, store: u64) {
        if !self.stores.get(&store).is_some_and(|s| s.up) {
            return;
        }
        let conns = self.conns_of(store);
        if conns.is_empty() {
            return;
        }
        let now = self.tso.next();
        let mut min_lock: HashMap<u64, u64> = HashMap::new();
        for (key, lock) in self.mvcc.all_locks() {
            if let Some(r) = self.regions.locate_raw(key) {
                let e = min_lock.entry(r.id).or_insert(u64::MAX);
                *e = (*e).min(lock.start_ts);
            }
        }
        for conn in conns {
            let Some(c) = self.conns.get(&conn) else { continue };
            let gates = c.gates.unwrap_or_default();
            // request id -> region -> ts
            let mut groups: BTreeMap<u64, HashMap<u64, u64>> = BTreeMap::new();
            let mut per_region = Vec::new();
            for (&(request_id, region_id), reg) in &c.regs {
                if !reg.initialized {
                    continue;
                }
                if self.regions.get(region_id).is_none_or(|r| r.leader_store != store) {
                    continue;
                }
                let ts = min_lock.get(&region_id).map_or(now, |&l| l.min(now));
                if !gates.batch_resolved_ts {
                    per_region.push(Event {
                        region_id,
                        request_id,
                        index: 0,
                        event: Some(event::Event::ResolvedTs(ts)),
                    });
                    continue;
                }
                let key = if c.multiplex { request_id } else { 0 };
                let e = groups.entry(key).or_default().entry(region_id).or_insert(ts);
                *e = (*e).min(ts);
            }
            per_region.sort_by_key(|e| (e.request_id, e.region_id));
            for chunk in per_region.chunks(1024) {
                self.send_events(conn, chunk.to_vec());
            }
            for (request_id, regions) in groups {
                let mut sorted: Vec<(u64, u64)> =
                    regions.into_iter().map(|(r, ts)| (ts, r)).collect();
                sorted.sort_unstable();
                let mut at = 0;
                let mut size = 8;
                while at < sorted.len() {
                    let group = &sorted[at..(at + size).min(sorted.len())];
                    self.send_resolved(
                        conn,
                        ResolvedTs {
                            regions: group.iter().map(|&(_, r)| r).collect(),
                            ts: group[0].0,
                            request_id,
                        },
                    );
                    at += group.len();
                    size = size.saturating_mul(4);
                }
            }
        }
    }

    /// The regions (cloned) in key order.
    pub(crate) fn region_list(&self) -> Vec<RegionMeta> {
        self.regions.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value_len: usize) -> event::Row {
        event::Row {
            key: b"k".to_vec().into(),
            value: vec![0; value_len].into(),
            ..Default::default()
        }
    }

    #[test]
    fn live_rows_are_cut_by_bytes_and_by_count() {
        let lens = |rows: &[event::Row]| live_chunks(rows).map(<[_]>::len).collect::<Vec<_>>();
        // Commit rows (no value) come up to the row limit per event.
        let commits: Vec<_> = (0..2500).map(|_| row(0)).collect();
        assert_eq!(lens(&commits), [1024, 1024, 452]);
        // 300 KiB values: three fit in 1 MiB.
        let prewrites: Vec<_> = (0..7).map(|_| row(300 << 10)).collect();
        assert_eq!(lens(&prewrites), [3, 3, 1]);
        // A row larger than the limit is an event of its own.
        assert_eq!(lens(&[row(2 << 20), row(1)]), [1, 1]);
        assert_eq!(lens(&[]), Vec::<usize>::new());
    }
}
