//! Lock resolution over gRPC: for a region whose resolved ts is held back by locks, scan its
//! locks below a target ts (`KvScanLock`), ask each transaction's primary for its fate
//! (`KvCheckTxnStatus`, rolling back expired ones), and settle the region's locks of finished
//! transactions (`KvResolveLock`). Tasks come from [`LockResolveQueue`]: bounded, merged per
//! region, at most once per cooldown; one task runs at a time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use kvfeed_proto::kvrpcpb::{CheckTxnStatusRequest, Context, ResolveLockRequest, ScanLockRequest};
use kvfeed_proto::metapb;
use kvfeed_proto::tikvpb::tikv_client::TikvClient;
use kvfeed_regioncache::{Region, RpcContext};
use kvfeed_span::EncodedKey;
use tokio::sync::Notify;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::client::{Inner, lock};
use crate::config::Config;
use crate::error::Error;
use crate::resolve_lock::{Admission, LockResolveQueue, ResolveTask};

/// Locks asked for per `KvScanLock` call.
const SCAN_LIMIT: u32 = 1024;
/// Attempts per region (each region error reloads the region and tries again).
const ATTEMPTS: usize = 8;

/// Why resolving a region's locks stopped short.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error(transparent)]
    Pd(#[from] kvfeed_regioncache::Error),
    #[error("gRPC: {0}")]
    Grpc(#[from] tonic::Status),
    #[error("invalid store address {0}")]
    Address(String),
    #[error("TiKV refused: {0}")]
    Key(String),
    #[error("region errors persisted")]
    GaveUp,
}

/// The lock resolver: its queue and its connections to the stores.
pub(crate) struct LockResolver {
    queue: Mutex<LockResolveQueue>,
    wake: Notify,
    clients: Mutex<HashMap<String, TikvClient<Channel>>>,
    tls: Option<ClientTlsConfig>,
    timeout: Duration,
    /// When each queued region was first requested (the `wait` duration metric).
    queued_at: Mutex<HashMap<u64, Instant>>,
}

/// The fate of a transaction, from its primary lock.
enum TxnStatus {
    /// Still running: leave its locks alone.
    Alive,
    /// Committed at this ts.
    Committed(u64),
    /// Rolled back (or its lock expired and was rolled back now).
    RolledBack,
}

impl LockResolver {
    pub(crate) fn new(config: &Config) -> Result<Self, Error> {
        let tls = match &config.tls {
            Some(tls) => Some(
                crate::client::transport_tls(tls)
                    .load()
                    .map_err(|error| Error::Config(error.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            queue: Mutex::new(LockResolveQueue::new(
                config.lock_resolve_queue,
                config.lock_resolve_cooldown,
            )),
            wake: Notify::new(),
            clients: Mutex::default(),
            tls,
            timeout: config.timeout,
            queued_at: Mutex::default(),
        })
    }

    /// Asks for the region's locks below `target_ts` to be resolved. Returns whether a task is
    /// queued for it now.
    pub(crate) fn request(&self, now: Duration, region_id: u64, target_ts: u64) -> bool {
        let admission = lock(&self.queue).request(now, region_id, target_ts);
        match admission {
            Admission::Queued => {
                lock(&self.queued_at).insert(region_id, Instant::now());
                self.wake.notify_one();
                true
            }
            Admission::Merged => true,
            Admission::CoolingDown | Admission::Full => false,
        }
    }

    pub(crate) fn forget_old(&self, now: Duration) {
        lock(&self.queue).forget_old(now);
    }

    /// The resolver's loop: one task at a time, in request order.
    pub(crate) async fn run(inner: Arc<Inner>) {
        let this = &inner.resolver;
        loop {
            let task = lock(&this.queue).next(inner.now());
            let Some(task) = task else {
                this.wake.notified().await;
                continue;
            };
            if let Some(at) = lock(&this.queued_at).remove(&task.region_id) {
                inner
                    .metrics
                    .lock_resolve_duration
                    .with_label_values(&["wait"])
                    .observe(at.elapsed().as_secs_f64());
            }
            let started = Instant::now();
            match this.resolve_region(&inner, task).await {
                Ok(resolved) => tracing::info!(
                    region = task.region_id,
                    target_ts = task.target_ts,
                    resolved,
                    "locks resolved"
                ),
                Err(error) => tracing::warn!(
                    region = task.region_id,
                    target_ts = task.target_ts,
                    %error,
                    "resolving locks failed"
                ),
            }
            inner
                .metrics
                .lock_resolve_duration
                .with_label_values(&["run"])
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// Resolves the region's locks below the task's target; returns how many transactions
    /// were settled.
    async fn resolve_region(
        &self,
        inner: &Inner,
        task: ResolveTask,
    ) -> Result<usize, ResolveError> {
        let mut start_key = Bytes::new();
        let mut settled = 0;
        // Attempts count region errors only: a region with many locks takes many pages.
        let mut attempts = 0;
        while attempts < ATTEMPTS {
            attempts += 1;
            let Some(region) = inner.source.region_by_id(task.region_id).await? else {
                return Ok(settled); // The region is gone (merged): nothing to do here.
            };
            let Some(ctx) = inner.source.rpc_context(region.ver_id()).await? else {
                inner.source.invalidate(region.ver_id());
                continue;
            };
            let mut client = self.client(&ctx.address)?;
            let response = client
                .kv_scan_lock(ScanLockRequest {
                    context: Some(context(&region, &ctx)),
                    max_version: task.target_ts,
                    start_key: start_key.clone(),
                    limit: SCAN_LIMIT,
                    end_key: Bytes::new(),
                })
                .await?
                .into_inner();
            if response.region_error.is_some() {
                inner.source.invalidate(region.ver_id());
                continue;
            }
            refused(response.error)?;
            let full = response.locks.len() >= SCAN_LIMIT as usize;
            let next_key = response.locks.last().map(|lock| {
                let mut key = lock.key.to_vec();
                key.push(0);
                Bytes::from(key)
            });
            // One status check per transaction, one resolve per transaction in this region.
            let txns: BTreeMap<u64, Bytes> = response
                .locks
                .into_iter()
                .map(|lock| (lock.lock_version, lock.primary_lock))
                .collect();
            let mut region_failed = false;
            for (start_ts, primary) in txns {
                let commit_ts = match self.check_txn(inner, &primary, start_ts).await? {
                    TxnStatus::Alive => continue,
                    TxnStatus::Committed(commit_ts) => commit_ts,
                    TxnStatus::RolledBack => 0,
                };
                let response = client
                    .kv_resolve_lock(ResolveLockRequest {
                        context: Some(context(&region, &ctx)),
                        start_version: start_ts,
                        commit_version: commit_ts,
                        ..ResolveLockRequest::default()
                    })
                    .await?
                    .into_inner();
                if response.region_error.is_some() {
                    region_failed = true;
                    break;
                }
                refused(response.error)?;
                settled += 1;
            }
            if region_failed {
                inner.source.invalidate(region.ver_id());
                continue;
            }
            match next_key {
                Some(key) if full => {
                    start_key = key;
                    attempts = 0;
                }
                _ => return Ok(settled),
            }
        }
        Err(ResolveError::GaveUp)
    }

    /// Asks the transaction's primary what became of it, rolling it back if its lock expired.
    async fn check_txn(
        &self,
        inner: &Inner,
        primary: &Bytes,
        start_ts: u64,
    ) -> Result<TxnStatus, ResolveError> {
        let current_ts = inner.source.pd().get_ts().await?;
        let encoded = EncodedKey::encode(primary);
        for _ in 0..ATTEMPTS {
            let Some(region) = inner.source.region_at(encoded.as_bytes()).await? else {
                return Err(ResolveError::GaveUp);
            };
            let Some(ctx) = inner.source.rpc_context(region.ver_id()).await? else {
                inner.source.invalidate(region.ver_id());
                continue;
            };
            let response = self
                .client(&ctx.address)?
                .kv_check_txn_status(CheckTxnStatusRequest {
                    context: Some(context(&region, &ctx)),
                    primary_key: primary.clone(),
                    lock_ts: start_ts,
                    caller_start_ts: 0,
                    current_ts,
                    rollback_if_not_exist: true,
                    ..CheckTxnStatusRequest::default()
                })
                .await?
                .into_inner();
            if response.region_error.is_some() {
                inner.source.invalidate(region.ver_id());
                continue;
            }
            refused(response.error)?;
            return Ok(if response.commit_version > 0 {
                TxnStatus::Committed(response.commit_version)
            } else if response.lock_ttl > 0 {
                TxnStatus::Alive
            } else {
                TxnStatus::RolledBack
            });
        }
        Err(ResolveError::GaveUp)
    }

    /// A client of the store at `address` (connections are made lazily and kept).
    fn client(&self, address: &str) -> Result<TikvClient<Channel>, ResolveError> {
        let mut clients = lock(&self.clients);
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|_| ResolveError::Address(address.to_owned()))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|_| ResolveError::Address(address.to_owned()))?;
        }
        let client = TikvClient::new(endpoint.connect_lazy());
        clients.insert(address.to_owned(), client.clone());
        Ok(client)
    }
}

/// A key error TiKV answered with, as an error.
fn refused(error: Option<kvfeed_proto::kvrpcpb::KeyError>) -> Result<(), ResolveError> {
    error.map_or(Ok(()), |error| Err(ResolveError::Key(format!("{error:?}"))))
}

/// The request context naming a region version and the peer asked.
fn context(region: &Region, ctx: &RpcContext) -> Context {
    let epoch = region.epoch();
    Context {
        region_id: region.id(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: epoch.conf_ver,
            version: epoch.version,
        }),
        peer: Some(metapb::Peer {
            id: ctx.peer.id,
            store_id: ctx.peer.store_id,
            ..metapb::Peer::default()
        }),
        ..Context::default()
    }
}
