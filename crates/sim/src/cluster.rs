//! Starting and stopping the simulated cluster: one PD (`pd.rs`) and N stores, each a tonic server on a
//! `127.0.0.1` ephemeral port, plus the per-store resolved-ts tickers.
//!
//! [`Cluster`] is the handle tests hold: addresses, the cluster id, transactions
//! ([`Cluster::prewrite`], [`Cluster::commit`], ...), resolved-ts ticks, the commit recorder and
//! (in `faults.rs`) the fault methods.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kvfeed_proto::cdcpb::change_data_server::ChangeDataServer;
use kvfeed_proto::tikvpb::tikv_server::TikvServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cdc::CdcService;
use crate::kv::KvService;
use crate::mvcc::{CommittedRow, Mutation, TxnError};
use crate::pd::{Backend, PdCalls, PdKnobs, PdMembers, ScanLayout};
use crate::region::{RegionMeta, RegionTable};
use crate::state::{CdcStats, ClusterState, Shared, StoreState, lock};
use crate::tso::Tso;

/// How to build a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The cluster id PD and the stores check.
    pub cluster_id: u64,
    /// Number of stores (ids `1..=stores`).
    pub stores: usize,
    /// Peers per region (at most `stores`).
    pub replicas: usize,
    /// Initial region boundaries as RAW keys (encoded for the region table).
    pub split_keys: Vec<Vec<u8>>,
    /// Resolved-ts interval of every store; `None`: only manual [`Cluster::tick_resolved_ts`].
    pub resolved_ts_interval: Option<Duration>,
    /// Record every committed row (for the verifier).
    pub record_commits: bool,
    /// Stores that only serve `EventFeed` (TiKV before 7.3).
    pub v1_only_stores: Vec<u64>,
    /// Pending incremental scans per store above which a register gets ServerIsBusy
    /// ("too many pending incremental scans"); TiKV's limit is 10000.
    pub max_pending_scans: usize,
    /// The GC life time of the GC worker, which runs a round every `gc_interval` (see
    /// [`Cluster::run_gc`]); `None`: no GC worker (the safe point moves only by `run_gc`).
    pub gc_life_time: Option<Duration>,
    /// How often the GC worker runs.
    pub gc_interval: Duration,
    /// PD's port on 127.0.0.1 (`None`: an ephemeral one). A fixed port lets a restarted
    /// simulator come back where clients look for it; the stores' ports stay ephemeral (clients
    /// learn them from PD).
    pub pd_port: Option<u16>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            cluster_id: 7_104_000_000_000_000_001,
            stores: 3,
            replicas: 3,
            split_keys: Vec::new(),
            resolved_ts_interval: Some(Duration::from_secs(1)),
            record_commits: true,
            v1_only_stores: Vec::new(),
            max_pending_scans: 10_000,
            gc_life_time: None,
            gc_interval: Duration::from_secs(1),
            pd_port: None,
        }
    }
}

struct StoreServer {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A running simulated cluster. Dropping it stops every server.
pub struct Cluster {
    pub(crate) shared: Arc<Shared>,
    pd_addr: SocketAddr,
    pd: PdMembers,
    store_addrs: BTreeMap<u64, SocketAddr>,
    servers: Mutex<HashMap<u64, StoreServer>>,
    tickers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("cluster_id", &self.shared.cluster_id)
            .field("pd", &self.pd_addr)
            .field("stores", &self.store_addrs)
            .finish_non_exhaustive()
    }
}

async fn bind_local() -> std::io::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0").await
}

/// Runs `round` once per `interval` (the first after one interval) on a task of its own.
fn every(interval: Duration, mut round: impl FnMut() + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.tick().await;
        loop {
            timer.tick().await;
            round();
        }
    })
}

fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    // `serve_with_incoming` leaves socket options alone: without TCP_NODELAY, large answers
    // stall on delayed ACKs.
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

impl Cluster {
    /// Starts PD and the stores and, if configured, the resolved-ts tickers.
    pub async fn start(config: ClusterConfig) -> std::io::Result<Self> {
        let stores = config.stores.max(1);
        let pd_listener = match config.pd_port {
            Some(port) => TcpListener::bind(("127.0.0.1", port)).await?,
            None => bind_local().await?,
        };
        let pd_addr = pd_listener.local_addr()?;
        let mut listeners = BTreeMap::new();
        for id in 1..=stores as u64 {
            let l = bind_local().await?;
            listeners.insert(id, (l.local_addr()?, l));
        }
        let store_ids: Vec<u64> = listeners.keys().copied().collect();
        let splits: Vec<Bytes> =
            config.split_keys.iter().map(|k| Bytes::from(kvfeed_span::key::encode(k))).collect();
        let state = ClusterState {
            tso: Tso::new(),
            mvcc: crate::mvcc::Mvcc::default(),
            regions: RegionTable::new(&store_ids, config.replicas, &splits),
            stores: listeners
                .iter()
                .map(|(id, (addr, _))| {
                    (
                        *id,
                        StoreState {
                            address: addr.to_string(),
                            up: true,
                            v1_only: config.v1_only_stores.contains(id),
                            busy_registers: 0,
                            congested_registers: 0,
                            pending_scans: 0,
                            stats: crate::state::CdcStats::default(),
                            slow_ms: Arc::new(AtomicU64::new(0)),
                            cluster_id: None,
                            requires_version: None,
                            version: crate::pd::STORE_VERSION.to_owned(),
                            wedged: false,
                        },
                    )
                })
                .collect(),
            conns: HashMap::new(),
            by_region: HashMap::new(),
            next_conn: 0,
            next_seq: 0,
            apply_index: 0,
            record: config.record_commits,
            recorded: Vec::new(),
            max_pending_scans: config.max_pending_scans,
            scan_storms: HashMap::new(),
            region_registers: HashMap::new(),
            gc: crate::gc::GcState::new(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            cluster_id: config.cluster_id,
            pd_url: format!("http://{pd_addr}"),
        });
        let mut knobs = PdKnobs::new(config.cluster_id, vec![pd_addr.to_string()]);
        knobs.batch_scan = true;
        knobs.scan_layout = ScanLayout::Both;
        let pd = PdMembers::serve(
            vec![pd_listener],
            &None,
            Arc::new(Mutex::new(knobs)),
            &Backend::Cluster(Arc::clone(&shared)),
        )?;
        let mut servers = HashMap::new();
        let mut store_addrs = BTreeMap::new();
        for (id, (addr, listener)) in listeners {
            store_addrs.insert(id, addr);
            servers.insert(id, serve_store(&shared, id, listener));
        }
        let mut tickers = Vec::new();
        if let Some(interval) = config.resolved_ts_interval {
            for &id in &store_ids {
                let shared = Arc::clone(&shared);
                tickers.push(every(interval, move || lock(&shared.state).tick_resolved(id)));
            }
        }
        if let Some(life) = config.gc_life_time {
            let shared = Arc::clone(&shared);
            let life_ms = u64::try_from(life.as_millis()).unwrap_or(u64::MAX);
            let interval = config.gc_interval.max(Duration::from_millis(1));
            // The first round runs before `start` returns.
            lock(&shared.state).run_gc(life_ms);
            tickers.push(every(interval, move || {
                lock(&shared.state).run_gc(life_ms);
            }));
        }
        Ok(Self { shared, pd_addr, pd, store_addrs, servers: Mutex::new(servers), tickers })
    }

    /// PD's address, `127.0.0.1:PORT`.
    #[must_use]
    pub fn pd_address(&self) -> String {
        self.pd_addr.to_string()
    }

    /// PD's URL, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn pd_url(&self) -> String {
        self.shared.pd_url.clone()
    }

    /// The PD members' shared knobs.
    pub(crate) fn pd_knobs(&self) -> &Arc<std::sync::Mutex<PdKnobs>> {
        self.pd.knobs()
    }

    /// Runs `f` on PD's knobs (leader, stalls, missing headers, scan layout, `BatchScanRegions`
    /// served or not, outages, call counts). Regions, stores and timestamps stay the cluster's
    /// own.
    pub fn with_pd<R>(&self, f: impl FnOnce(&mut PdKnobs) -> R) -> R {
        f(&mut kvfeed_base::lock(self.pd.knobs()))
    }

    /// The calls PD served so far.
    #[must_use]
    pub fn pd_calls(&self) -> PdCalls {
        self.with_pd(|k| k.total_calls())
    }

    /// A store's address, `127.0.0.1:PORT` (stable across restarts).
    #[must_use]
    pub fn store_address(&self, id: u64) -> Option<String> {
        self.store_addrs.get(&id).map(ToString::to_string)
    }

    /// The store ids.
    #[must_use]
    pub fn store_ids(&self) -> Vec<u64> {
        self.store_addrs.keys().copied().collect()
    }

    /// The cluster id.
    #[must_use]
    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// Stops every server and ticker; open streams end.
    pub async fn shutdown(mut self) {
        self.stop_all();
        let tasks: Vec<JoinHandle<()>> = {
            let mut servers = kvfeed_base::lock(&self.servers);
            servers.values_mut().filter_map(|s| s.task.take()).collect()
        };
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(2), &mut Box::pin(task)).await.is_err() {
                tracing::warn!("sim store did not stop in time");
            }
        }
    }

    fn stop_all(&mut self) {
        for t in &self.tickers {
            t.abort();
        }
        {
            let mut st = lock(&self.shared.state);
            let conns: Vec<u64> = st.conns.keys().copied().collect();
            for c in conns {
                st.remove_conn(c, Some(tonic::Status::unavailable("cluster shut down")));
            }
        }
        self.pd.stop_all();
        let mut servers = kvfeed_base::lock(&self.servers);
        for s in servers.values_mut() {
            if let Some(stop) = s.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    /// Runs one resolved-ts round on every store (what the ticker does each interval).
    pub fn tick_resolved_ts(&self) {
        let mut st = lock(&self.shared.state);
        let ids: Vec<u64> = st.stores.keys().copied().collect();
        for id in ids {
            st.tick_resolved(id);
        }
    }

    /// Runs one resolved-ts round on one store.
    pub fn tick_resolved_ts_on(&self, store: u64) {
        lock(&self.shared.state).tick_resolved(store);
    }

    /// A fresh timestamp from the TSO.
    #[must_use]
    pub fn now_ts(&self) -> u64 {
        lock(&self.shared.state).tso.next()
    }

    /// Moves the TSO's physical clock `ms` ahead (expires lock TTLs without waiting).
    pub fn advance_tso(&self, ms: i64) {
        lock(&self.shared.state).tso.advance(ms);
    }

    /// Prewrites a transaction (the first mutation is the primary) at a fresh start ts with
    /// `ttl_ms`; returns the start ts. Its locks hold until [`Cluster::commit`],
    /// [`Cluster::rollback`] or a lock resolution.
    pub fn prewrite(&self, mutations: &[Mutation], ttl_ms: u64) -> Result<u64, TxnError> {
        lock(&self.shared.state).prewrite(mutations, ttl_ms, false)
    }

    /// Commits every remaining lock of the transaction at a fresh commit ts.
    pub fn commit(&self, start_ts: u64) -> Result<u64, TxnError> {
        lock(&self.shared.state).commit_txn(start_ts)
    }

    /// Rolls back every remaining lock of the transaction.
    pub fn rollback(&self, start_ts: u64) -> Result<(), TxnError> {
        let mut st = lock(&self.shared.state);
        let keys = st.mvcc.locked_keys(start_ts);
        if keys.is_empty() {
            return Err(TxnError::TxnNotFound { start_ts });
        }
        st.rollback_keys(&keys, start_ts);
        Ok(())
    }

    /// Prewrites and commits a transaction; returns `(start_ts, commit_ts)`.
    pub fn commit_2pc(&self, mutations: &[Mutation]) -> Result<(u64, u64), TxnError> {
        let mut st = lock(&self.shared.state);
        let start_ts = st.prewrite(mutations, 3_000, false)?;
        let commit_ts = st.commit_txn(start_ts)?;
        Ok((start_ts, commit_ts))
    }

    /// Prewrites an async-commit transaction (the first mutation is the primary; its lock
    /// lists the others) at a fresh start ts; returns the start ts. It is committed once every
    /// key is locked: [`Cluster::commit`] commits it at the largest min commit ts of its keys,
    /// as a lock resolver would.
    pub fn prewrite_async(&self, mutations: &[Mutation], ttl_ms: u64) -> Result<u64, TxnError> {
        lock(&self.shared.state).prewrite(mutations, ttl_ms, true)
    }

    /// A fresh start ts for [`Cluster::prewrite_part`].
    #[must_use]
    pub fn begin(&self) -> u64 {
        self.now_ts()
    }

    /// Prewrites part of the transaction `all` (its first mutation is the primary) at
    /// `start_ts`: the mutations at `indices`, in one go. The others stay unwritten until a
    /// later call (a prewrite still on its way: secondaries may be written before their primary)
    /// or forever (an abandoned transaction). `async_commit` makes it an async-commit
    /// transaction.
    pub fn prewrite_part(
        &self,
        start_ts: u64,
        all: &[Mutation],
        indices: &[usize],
        ttl_ms: u64,
        async_commit: bool,
    ) -> Result<(), TxnError> {
        lock(&self.shared.state).prewrite_part(start_ts, all, indices, ttl_ms, async_commit)
    }

    /// One round of the GC worker with a GC life time of `life`: the safe point moves to now
    /// minus `life`, held back by the service safe points clients hold through PD and by the
    /// oldest lock, never back; versions below it are compacted. Returns the safe point.
    pub fn run_gc(&self, life: Duration) -> u64 {
        lock(&self.shared.state).run_gc(u64::try_from(life.as_millis()).unwrap_or(u64::MAX))
    }

    /// A GC round as if every service safe point below now minus `life` had expired (a client
    /// cut off from PD for longer than its TTL): they are dropped, the safe point moves on, and
    /// their clients find their next update refused.
    pub fn force_gc(&self, life: Duration) -> u64 {
        let life_ms = u64::try_from(life.as_millis()).unwrap_or(u64::MAX);
        lock(&self.shared.state).gc_round(life_ms, false)
    }

    /// The cluster's GC safe point (as PD's `GetGCSafePoint` answers).
    #[must_use]
    pub fn gc_safe_point(&self) -> u64 {
        lock(&self.shared.state).gc.safe_point()
    }

    /// The service safe points PD holds, by service id (the GC worker's
    /// [`GC_WORKER_SERVICE`](crate::GC_WORKER_SERVICE) included).
    #[must_use]
    pub fn service_safe_points(&self) -> Vec<(String, u64)> {
        lock(&self.shared.state).gc.services()
    }

    /// Writes a transaction in one phase (CDC sees COMMITTED rows); returns the commit ts.
    pub fn commit_1pc(&self, mutations: &[Mutation]) -> Result<u64, TxnError> {
        lock(&self.shared.state).commit_1pc(mutations)
    }

    /// Writes `mutations` (distinct keys, none locked) as one transaction that CDC subscribers
    /// are not sent (a bulk import, for snapshot benchmarks and tests); returns its commit ts.
    pub fn bulk_load(&self, mutations: impl IntoIterator<Item = Mutation>) -> u64 {
        lock(&self.shared.state).bulk_load(mutations)
    }

    /// Every committed row so far, in commit order (if recording is on).
    #[must_use]
    pub fn committed_rows(&self) -> Vec<CommittedRow> {
        lock(&self.shared.state).recorded.clone()
    }

    /// The raw keys in `[start, end)` (raw bounds, `None` unbounded) with a value at `ts`, and
    /// their values, as the simulator's MVCC holds them (what a snapshot read at `ts` sees once
    /// every lock below `ts` is settled).
    #[must_use]
    pub fn mvcc_state_at(
        &self,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        ts: u64,
    ) -> Vec<(Bytes, Bytes)> {
        let st = lock(&self.shared.state);
        st.mvcc
            .keys_in(start, end)
            .filter_map(|key| match st.mvcc.read_at(key, ts) {
                crate::mvcc::ReadAt::Value(value) => Some((key.clone(), value)),
                _ => None,
            })
            .collect()
    }

    /// Locks held now (transactions prewritten and neither committed nor rolled back).
    #[must_use]
    pub fn lock_count(&self) -> usize {
        lock(&self.shared.state).mvcc.all_locks().count()
    }

    /// The regions, in key order.
    #[must_use]
    pub fn regions(&self) -> Vec<RegionMeta> {
        lock(&self.shared.state).region_list()
    }

    /// Number of regions.
    #[must_use]
    pub fn region_count(&self) -> usize {
        lock(&self.shared.state).regions.len()
    }

    /// One region by id.
    #[must_use]
    pub fn region(&self, id: u64) -> Option<RegionMeta> {
        lock(&self.shared.state).regions.get(id).cloned()
    }

    /// The region holding the raw `key`.
    #[must_use]
    pub fn region_of_raw(&self, key: &[u8]) -> Option<RegionMeta> {
        lock(&self.shared.state).regions.locate_raw(key).cloned()
    }

    /// Live CDC registrations on `store` (all connections).
    #[must_use]
    pub fn registration_count(&self, store: u64) -> usize {
        let st = lock(&self.shared.state);
        st.conns.values().filter(|c| c.store_id == store).map(|c| c.regs.len()).sum()
    }

    /// The ChangeData counters of `store` (zero for an unknown store).
    #[must_use]
    pub fn cdc_stats(&self, store: u64) -> CdcStats {
        let st = lock(&self.shared.state);
        let live =
            st.conns.values().filter(|c| c.store_id == store).map(|c| c.regs.len() as u64).sum();
        st.stores
            .get(&store)
            .map(|s| CdcStats { live_registrations: live, ..s.stats })
            .unwrap_or_default()
    }

    /// Live registrations with `request_id`, on every store and connection (0 once a
    /// subscription using that request id has drained).
    #[must_use]
    pub fn registrations_of(&self, request_id: u64) -> usize {
        let st = lock(&self.shared.state);
        st.conns.values().map(|c| c.regs.keys().filter(|(r, _)| *r == request_id).count()).sum()
    }

    /// Extends the TTL of every lock of the transaction `start_ts` to `ttl_ms` (TiKV's
    /// `TxnHeartBeat`, for long-running transactions); returns how many locks it touched.
    pub fn txn_heartbeat(&self, start_ts: u64, ttl_ms: u64) -> usize {
        lock(&self.shared.state).mvcc.heartbeat(start_ts, ttl_ms)
    }

    /// Open CDC connections on `store`.
    #[must_use]
    pub fn connection_count(&self, store: u64) -> usize {
        lock(&self.shared.state).conns_of(store).len()
    }

    pub(crate) fn stop_server(&self, id: u64) -> Option<JoinHandle<()>> {
        let mut servers = kvfeed_base::lock(&self.servers);
        let s = servers.get_mut(&id)?;
        if let Some(stop) = s.stop.take() {
            let _ = stop.send(());
        }
        s.task.take()
    }

    pub(crate) async fn start_server(&self, id: u64) -> std::io::Result<()> {
        let addr =
            *self.store_addrs.get(&id).ok_or_else(|| std::io::Error::other("no such store"))?;
        let mut attempt = 0;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if attempt >= 100 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let server = serve_store(&self.shared, id, listener);
        kvfeed_base::lock(&self.servers).insert(id, server);
        Ok(())
    }
}

fn serve_store(shared: &Arc<Shared>, id: u64, listener: TcpListener) -> StoreServer {
    let (stop, stopped) = oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(ChangeDataServer::new(CdcService { shared: Arc::clone(shared), store_id: id }))
        .add_service(TikvServer::new(KvService { shared: Arc::clone(shared), store_id: id }));
    let task = tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        if let Err(error) = router.serve_with_incoming_shutdown(incoming(listener), stopped).await {
            tracing::warn!(%error, store = id, "sim store stopped");
        }
    });
    StoreServer { stop: Some(stop), task: Some(task) }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
