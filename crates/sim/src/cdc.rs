//! The `cdcpb.ChangeData` server of one store: `EventFeed` and `EventFeedV2` with TiKV v8.1's
//! semantics (reference §8).
//!
//! Each stream is a connection: the first request fixes its feature gates (batched resolved ts
//! from 4.0.8, cluster-id validation from 5.3.0); registrations are keyed by
//! `(request_id, region_id)`. A Register is checked in TiKV's order (cluster id, kv_api, busy,
//! region on this store, duplicate, leader, epoch); an accepted one gets an incremental scan
//! (COMMITTED rows above the checkpoint, then PREWRITE rows for present locks, clipped to the
//! request's range) that runs as a separate task, so live rows interleave with it as on TiKV,
//! and ends with one INITIALIZED row. Deregister removes one region or a whole request id and
//! answers each removed region with `region_not_found`. `NotifyTxnStatus` (which crashes TiKV)
//! fails the stream with `UNIMPLEMENTED` instead.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use kvfeed_proto::cdcpb::change_data_server::ChangeData;
use kvfeed_proto::cdcpb::{
    self, ChangeDataEvent, ChangeDataRequest, ClusterIdMismatch, Compatibility, Congested,
    DuplicateRequest, Event, change_data_request, event,
};
use kvfeed_proto::errorpb;
use kvfeed_span::key::decode;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::mvcc::CommittedRow;
use crate::region::raw_in_range;
use crate::state::{
    ClusterState, Conn, Gates, ROWS_PER_EVENT, Reg, Shared, committed_row, error_event,
    initialized_row, lock, prewrite_row, region_not_found,
};

/// The only feature TiKV knows in the `features` metadata.
pub const STREAM_MULTIPLEXING: &str = "stream-multiplexing";

/// The ChangeData service of one store.
pub(crate) struct CdcService {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store_id: u64,
}

/// A parsed semver `(major, minor, patch)`; invalid or empty is `(0, 0, 0)`.
pub(crate) fn parse_version(v: &str) -> (u64, u64, u64) {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<Option<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [Some(a), Some(b), Some(c)] => (*a, *b, *c),
        _ => (0, 0, 0),
    }
}

#[tonic::async_trait]
impl ChangeData for CdcService {
    type EventFeedStream = ReceiverStream<Result<ChangeDataEvent, Status>>;
    type EventFeedV2Stream = ReceiverStream<Result<ChangeDataEvent, Status>>;

    async fn event_feed(
        &self,
        request: Request<Streaming<ChangeDataRequest>>,
    ) -> Result<Response<Self::EventFeedStream>, Status> {
        self.open(request.into_inner(), false)
    }

    async fn event_feed_v2(
        &self,
        request: Request<Streaming<ChangeDataRequest>>,
    ) -> Result<Response<Self::EventFeedV2Stream>, Status> {
        let v1_only = lock(&self.shared.state).stores.get(&self.store_id).is_none_or(|s| s.v1_only);
        if v1_only {
            return Err(Status::unimplemented(
                "unknown method EventFeedV2 for service cdcpb.ChangeData",
            ));
        }
        let mut multiplex = false;
        if let Some(value) = request.metadata().get("features") {
            let value = value.to_str().unwrap_or("\u{fffd}");
            let mut unknown = Vec::new();
            for f in value.split(',').map(str::trim) {
                if f == STREAM_MULTIPLEXING {
                    multiplex = true;
                } else {
                    unknown.push(f.to_owned());
                }
            }
            if !unknown.is_empty() {
                return Err(Status::unimplemented(format!(
                    "the features {unknown:?} are not supported"
                )));
            }
        }
        self.open(request.into_inner(), multiplex)
    }
}

impl CdcService {
    fn open(
        &self,
        stream: Streaming<ChangeDataRequest>,
        multiplex: bool,
    ) -> Result<Response<ReceiverStream<Result<ChangeDataEvent, Status>>>, Status> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::channel(64);
        let (kill, killed) = oneshot::channel();
        let (conn_id, slow) = {
            let mut st = lock(&self.shared.state);
            let slow = match st.stores.get(&self.store_id) {
                Some(s) if s.up => Arc::clone(&s.slow_ms),
                _ => return Err(Status::unavailable("store is down")),
            };
            if let Some(s) = st.stores.get_mut(&self.store_id) {
                s.stats.streams_opened += 1;
            }
            st.next_conn += 1;
            let id = st.next_conn;
            st.conns.insert(
                id,
                Conn {
                    store_id: self.store_id,
                    tx,
                    multiplex,
                    gates: None,
                    first_cluster_id: 0,
                    regs: std::collections::HashMap::new(),
                    got_deregister: false,
                    _kill: kill,
                },
            );
            (id, slow)
        };
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                let delay = slow.load(Ordering::Relaxed);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                if out_tx.send(item).await.is_err() {
                    lock(&shared.state).remove_conn(conn_id, None);
                    break;
                }
            }
        });
        let shared = Arc::clone(&self.shared);
        tokio::spawn(read_loop(shared, conn_id, stream, killed));
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }
}

async fn read_loop(
    shared: Arc<Shared>,
    conn: u64,
    mut stream: Streaming<ChangeDataRequest>,
    mut killed: oneshot::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            _ = &mut killed => return,
            m = stream.message() => m,
        };
        match message {
            Ok(Some(request)) => {
                if let Some(job) = handle(&shared, conn, request) {
                    tokio::spawn(run_scan(Arc::clone(&shared), job));
                }
            }
            // The client closed its side, or the connection broke: TiKV drops the connection
            // and everything registered on it.
            Ok(None) | Err(_) => {
                lock(&shared.state).remove_conn(conn, None);
                return;
            }
        }
    }
}

/// An accepted registration's incremental scan.
struct ScanJob {
    conn: u64,
    store_id: u64,
    request_id: u64,
    region_id: u64,
    seq: u64,
    rows: Vec<event::Row>,
}

fn handle(shared: &Shared, conn: u64, req: ChangeDataRequest) -> Option<ScanJob> {
    let mut st = lock(&shared.state);
    let c = st.conns.get_mut(&conn)?;
    if c.gates.is_none() {
        let version = parse_version(req.header.as_ref().map_or("", |h| h.ticdc_version.as_str()));
        c.gates = Some(Gates {
            batch_resolved_ts: version >= (4, 0, 8),
            validate_cluster_id: version >= (5, 3, 0),
        });
        c.first_cluster_id = req.header.as_ref().map_or(0, |h| h.cluster_id);
    }
    match req.request {
        None | Some(change_data_request::Request::Register(_)) => {
            register(&mut st, shared.cluster_id, conn, &req)
        }
        Some(change_data_request::Request::Deregister(_)) => {
            deregister(&mut st, conn, req.request_id, req.region_id);
            None
        }
        Some(change_data_request::Request::NotifyTxnStatus(_)) => {
            st.remove_conn(conn, Some(Status::unimplemented("NotifyTxnStatus is not supported")));
            None
        }
    }
}

fn deregister(st: &mut ClusterState, conn: u64, request_id: u64, region_id: u64) {
    let Some(c) = st.conns.get_mut(&conn) else { return };
    let first = !std::mem::replace(&mut c.got_deregister, true);
    if let Some(s) = st.stores.get_mut(&c.store_id) {
        s.stats.deregisters += 1;
        s.stats.streams_with_deregister += u64::from(first);
    }
    let Some(c) = st.conns.get(&conn) else { return };
    let targets: Vec<u64> = if region_id == 0 {
        c.regs.keys().filter(|(r, _)| *r == request_id).map(|(_, region)| *region).collect()
    } else {
        vec![region_id]
    };
    for region in targets {
        st.drop_reg(conn, request_id, region, region_not_found(region));
    }
}

fn register(
    st: &mut ClusterState,
    cluster_id: u64,
    conn: u64,
    req: &ChangeDataRequest,
) -> Option<ScanJob> {
    let (request_id, region_id) = (req.request_id, req.region_id);
    let c = st.conns.get(&conn)?;
    let store_id = c.store_id;
    let gates = c.gates.unwrap_or_default();
    if let Some(s) = st.stores.get_mut(&store_id) {
        s.stats.registers += 1;
    }
    *st.region_registers.entry(region_id).or_default() += 1;
    let c = st.conns.get(&conn)?;
    let max_pending_scans = st.max_pending_scans;
    let reject = |st: &ClusterState, error: cdcpb::Error| {
        st.send_events(conn, vec![error_event(region_id, request_id, error)]);
        None
    };
    let requested = req.header.as_ref().map_or(c.first_cluster_id, |h| h.cluster_id);
    let cluster_id = st.stores.get(&store_id).and_then(|s| s.cluster_id).unwrap_or(cluster_id);
    if gates.validate_cluster_id && requested != cluster_id {
        let e = ClusterIdMismatch { current: cluster_id, request: requested };
        return reject(st, cdcpb::Error { cluster_id_mismatch: Some(e), ..Default::default() });
    }
    if let Some(version) = st.stores.get(&store_id).and_then(|s| s.requires_version.clone()) {
        let e = Compatibility { required_version: version };
        return reject(st, cdcpb::Error { compatibility: Some(e), ..Default::default() });
    }
    if req.kv_api != change_data_request::KvApi::TiDb as i32 {
        let e = Compatibility { required_version: "6.2.0".to_owned() };
        return reject(st, cdcpb::Error { compatibility: Some(e), ..Default::default() });
    }
    let store = st.stores.get_mut(&store_id)?;
    if store.busy_registers > 0 || store.pending_scans >= max_pending_scans {
        store.busy_registers = store.busy_registers.saturating_sub(1);
        let e = errorpb::ServerIsBusy {
            reason: "too many pending incremental scans".to_owned(),
            ..Default::default()
        };
        return reject(st, cdcpb::Error { server_is_busy: Some(e), ..Default::default() });
    }
    if store.congested_registers > 0 {
        store.congested_registers -= 1;
        let e = Congested { region_id };
        return reject(st, cdcpb::Error { congested: Some(e), ..Default::default() });
    }
    let Some(region) = st.regions.get(region_id).filter(|r| r.peer_on(store_id).is_some()).cloned()
    else {
        return reject(st, region_not_found(region_id));
    };
    if c.regs.contains_key(&(request_id, region_id)) {
        let e = DuplicateRequest { region_id };
        return reject(st, cdcpb::Error { duplicate_request: Some(e), ..Default::default() });
    }
    if region.leader_store != store_id {
        let e = errorpb::NotLeader { region_id, leader: region.leader_proto() };
        return reject(st, cdcpb::Error { not_leader: Some(e), ..Default::default() });
    }
    if req.region_epoch.as_ref() != Some(&region.epoch()) {
        let e = errorpb::EpochNotMatch { current_regions: vec![region.to_proto()] };
        return reject(st, cdcpb::Error { epoch_not_match: Some(e), ..Default::default() });
    }
    // Observe the intersection of the region and the requested range (an invalid encoded key
    // means the whole region, as on TiKV).
    let valid = |k: &Bytes| k.is_empty() || decode(k).is_ok();
    let (mut start, mut end) = if valid(&req.start_key) && valid(&req.end_key) {
        (req.start_key.clone(), req.end_key.clone())
    } else {
        (Bytes::new(), Bytes::new())
    };
    // Keep no slice of the request frame alive: share the region's keys or copy.
    start =
        if start <= region.start { region.start.clone() } else { Bytes::copy_from_slice(&start) };
    end = if end.is_empty() || (!region.end.is_empty() && end >= region.end) {
        region.end.clone()
    } else {
        Bytes::copy_from_slice(&end)
    };
    // TiKV does not check the GC safe point: below it, the scan silently misses what GC
    // dropped. Counted, so tests can tell a client never asks.
    if req.checkpoint_ts < st.gc.safe_point()
        && let Some(s) = st.stores.get_mut(&store_id)
    {
        s.stats.registers_below_safe_point += 1;
    }
    // Snapshot: committed rows above the checkpoint, then the locks.
    let raw_start = decode(&start).ok().filter(|_| !start.is_empty());
    let raw_end = decode(&end).ok().filter(|_| !end.is_empty());
    let in_range = |k: &[u8]| raw_in_range(k, &start, &end);
    let committed: Vec<CommittedRow> = st.mvcc.scan_committed(
        raw_start.as_deref(),
        raw_end.as_deref(),
        req.checkpoint_ts,
        in_range,
    );
    // TiKV's delta scan gives a key's versions newest first: so does the simulator, so that a
    // client assuming commit order within a key during the scan is caught.
    let mut rows: Vec<event::Row> = Vec::with_capacity(committed.len());
    for same_key in committed.chunk_by(|a, b| a.key == b.key) {
        rows.extend(same_key.iter().rev().map(|r| committed_row(r, event::LogType::Committed)));
    }
    rows.extend(
        st.mvcc
            .scan_locks(raw_start.as_deref(), raw_end.as_deref())
            .filter(|(k, _)| in_range(k))
            .map(|(k, l)| prewrite_row(k, l)),
    );
    st.next_seq += 1;
    let seq = st.next_seq;
    let c = st.conns.get_mut(&conn)?;
    c.regs.insert((request_id, region_id), Reg { seq, start, end, initialized: false });
    st.by_region.entry(region_id).or_default().push((conn, request_id));
    let store = st.stores.get_mut(&store_id)?;
    if store.wedged {
        // Registered, and never scanned.
        return None;
    }
    store.pending_scans += 1;
    Some(ScanJob { conn, store_id, request_id, region_id, seq, rows })
}

/// Streams a scan in batches, yielding in between so live rows interleave, then INITIALIZED.
async fn run_scan(shared: Arc<Shared>, job: ScanJob) {
    let store_id = job.store_id;
    scan(&shared, job).await;
    if let Some(s) = lock(&shared.state).stores.get_mut(&store_id) {
        s.pending_scans = s.pending_scans.saturating_sub(1);
    }
}

async fn scan(shared: &Shared, job: ScanJob) {
    let ScanJob { conn, request_id, region_id, seq, mut rows, .. } = job;
    let alive = |st: &ClusterState| {
        st.conns
            .get(&conn)
            .and_then(|c| c.regs.get(&(request_id, region_id)))
            .is_some_and(|r| r.seq == seq)
    };
    while rows.len() > ROWS_PER_EVENT {
        let rest = rows.split_off(ROWS_PER_EVENT);
        let batch = std::mem::replace(&mut rows, rest);
        {
            let st = lock(&shared.state);
            if !alive(&st) {
                return;
            }
            st.send_events(conn, vec![scan_event(region_id, request_id, batch)]);
        }
        tokio::task::yield_now().await;
    }
    rows.push(initialized_row());
    let mut st = lock(&shared.state);
    if !alive(&st) {
        return;
    }
    st.send_events(conn, vec![scan_event(region_id, request_id, rows)]);
    if let Some(reg) =
        st.conns.get_mut(&conn).and_then(|c| c.regs.get_mut(&(request_id, region_id)))
    {
        reg.initialized = true;
    }
    let storm = st.scan_storms.get(&region_id).copied();
    match storm {
        Some(until) if tokio::time::Instant::now() < until => {
            st.drop_reg(conn, request_id, region_id, region_not_found(region_id));
        }
        Some(_) => {
            st.scan_storms.remove(&region_id);
        }
        None => {}
    }
}

fn scan_event(region_id: u64, request_id: u64, rows: Vec<event::Row>) -> Event {
    Event {
        region_id,
        request_id,
        index: 0,
        event: Some(event::Event::Entries(event::Entries { entries: rows })),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions() {
        assert_eq!(parse_version("8.1.0"), (8, 1, 0));
        assert_eq!(parse_version("v5.3.0-alpha"), (5, 3, 0));
        assert_eq!(parse_version(""), (0, 0, 0));
        assert_eq!(parse_version("x.1"), (0, 0, 0));
    }
}
