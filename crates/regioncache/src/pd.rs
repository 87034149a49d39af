//! The PD client: leader discovery, retries, timeouts and the cluster-id check, over tonic.
//!
//! [`PdClient::connect`] asks the configured endpoints for the PD members (`GetMembers`, which any
//! member answers) until one names a leader, then sends every other call to that leader. A call
//! that fails in a way that suggests the leader moved or is down (gRPC `UNAVAILABLE`, a timeout,
//! a broken connection) forgets the leader, rediscovers it through the known members and the
//! configured endpoints, and is retried with jittered exponential backoff ([`Backoff`]), up to the
//! configured number of retries.
//!
//! The cluster id is learned from the first `GetMembers` answer (or given in [`PdConfig`]) and
//! checked on every response afterwards: a different id is [`Error::ClusterIdMismatch`], never
//! retried. Header errors map to [`Error::Pd`] (and a few to more specific variants).

use core::future::Future;
use core::sync::atomic::{AtomicU8, Ordering};
use core::time::Duration;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use hashbrown::HashMap;
use kvfeed_proto::pdpb;
use kvfeed_span::Span;
use tonic::transport::{Channel, Endpoint};

use crate::convert;
use crate::error::{Error, PdErrorKind};
use crate::meta::{Region, RegionId, Store, StoreId, StoreState};
use crate::retry::{Backoff, Jitter};
use crate::tso::TsoHandle;

/// The generated PD gRPC client on a tonic channel.
pub(crate) type PdGrpc = pdpb::pd_client::PdClient<Channel>;

/// The largest message accepted from PD (a scan of many regions can be large).
const MAX_DECODING_MESSAGE_SIZE: usize = 256 << 20;

/// The HTTP/2 receive window of one PD call: a scan answer of a thousand regions (~150 KiB)
/// arrives without waiting for window updates.
const STREAM_WINDOW: u32 = 4 << 20;
/// The HTTP/2 receive window of a PD connection.
const CONNECTION_WINDOW: u32 = 8 << 20;

/// How to reach PD.
#[derive(Clone, Debug)]
pub struct PdConfig {
    /// PD endpoints, `host:port` or `http(s)://host:port`. The members PD reports are tried too.
    pub endpoints: Vec<String>,
    /// The deadline of one attempt of one call (and of one TSO round trip).
    pub timeout: Duration,
    /// The deadline of establishing one connection.
    pub connect_timeout: Duration,
    /// How failed calls are retried.
    pub backoff: Backoff,
    /// The cluster id to expect; `None` takes the id of the first PD that answers.
    pub cluster_id: Option<u64>,
    /// TLS to PD; `None` for plain text.
    pub tls: Option<TlsConfig>,
}

impl PdConfig {
    /// A configuration for `endpoints` with the defaults: 3 s per call, 3 s to connect, 10
    /// retries backing off from 100 ms to 3 s, any cluster id, no TLS.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            backoff: Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(3),
                retries: 10,
            },
            cluster_id: None,
            tls: None,
        }
    }
}

/// TLS material for PD connections, PEM-encoded. Needs the `tls` feature (on by default).
#[derive(Clone)]
pub struct TlsConfig {
    /// The CA certificate(s) that signed PD's certificate.
    pub ca_pem: Vec<u8>,
    /// The client certificate and its private key, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to verify PD's certificate against; by default the host of the endpoint.
    pub domain_name: Option<String>,
}

impl core::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("domain_name", &self.domain_name)
            .finish()
    }
}

/// A client of a PD cluster. Cheap to clone: clones share connections, the leader and the TSO
/// stream.
#[derive(Clone)]
pub struct PdClient {
    conn: Arc<Conn>,
    tso: TsoHandle,
}

impl core::fmt::Debug for PdClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PdClient")
            .field("cluster_id", &self.conn.cluster_id.get())
            .field("leader", &self.leader_addr())
            .finish()
    }
}

impl PdClient {
    /// Connects: discovers the PD leader (retrying as configured) and learns the cluster id.
    /// Must be called within a tokio runtime, which the client's TSO task then runs on.
    pub async fn connect(config: PdConfig) -> Result<Self, Error> {
        let conn = Arc::new(Conn::new(config)?);
        conn.call("GetMembers", |_, _| async { Ok(tonic::Response::new(())) }).await?;
        let tso = TsoHandle::spawn(Arc::clone(&conn));
        Ok(Self { conn, tso })
    }

    /// The cluster id (learned at connect time).
    pub fn cluster_id(&self) -> u64 {
        self.conn.cluster_id()
    }

    /// The address of the PD leader currently used, if one is known.
    pub fn leader_addr(&self) -> Option<String> {
        read(&self.conn.leader).as_ref().map(|l| l.addr.clone())
    }

    /// A fresh timestamp from PD's TSO: `physical_ms << 18 | logical`. Timestamps handed out by
    /// one client strictly increase. Concurrent requests are batched into one TSO round trip.
    pub async fn get_ts(&self) -> Result<u64, Error> {
        self.tso.get_ts().await
    }

    /// The region containing the encoded `key`, or `None` if PD knows none. An answer that does
    /// not contain `key` is [`Error::InvalidResponse`].
    pub async fn get_region(&self, key: &[u8]) -> Result<Option<Region>, Error> {
        let wanted = key;
        let key = Bytes::copy_from_slice(key);
        let resp = self
            .conn
            .call("GetRegion", move |mut client, header| {
                let request = pdpb::GetRegionRequest {
                    header: Some(header),
                    region_key: key.clone(),
                    need_buckets: false,
                };
                async move { client.get_region(request).await }
            })
            .await;
        region_response("GetRegion", resp, |region| {
            if region.contains_key(wanted) {
                Ok(())
            } else {
                Err(format!(
                    "asked for key {wanted:?}, got region {} over {:?}",
                    region.id(),
                    region.span()
                ))
            }
        })
    }

    /// The region with this id, or `None` if PD knows none. An answer with another id is
    /// [`Error::InvalidResponse`].
    pub async fn get_region_by_id(&self, id: RegionId) -> Result<Option<Region>, Error> {
        let resp = self
            .conn
            .call("GetRegionByID", move |mut client, header| {
                let request = pdpb::GetRegionByIdRequest {
                    header: Some(header),
                    region_id: id,
                    need_buckets: false,
                };
                async move { client.get_region_by_id(request).await }
            })
            .await;
        region_response("GetRegionByID", resp, |region| {
            if region.id() == id {
                Ok(())
            } else {
                Err(format!("asked for region {id}, got region {}", region.id()))
            }
        })
    }

    /// The regions overlapping `span`, in key order, at most `limit` of them (`limit` is clamped
    /// to `1..=i32::MAX`). Uses `BatchScanRegions` while PD serves it and falls back to
    /// `ScanRegions` for good once PD answers `UNIMPLEMENTED` (PD before 8.5). The list is
    /// checked: regions valid, sorted, disjoint and overlapping `span`.
    pub async fn scan_regions(&self, span: &Span, limit: usize) -> Result<Vec<Region>, Error> {
        let limit = limit.clamp(1, i32::MAX as usize);
        if self.conn.batch_scan.load(Ordering::Relaxed) != BATCH_SCAN_UNSUPPORTED {
            match self.batch_scan_regions(span, limit).await {
                Err(Error::Unimplemented { .. }) => {
                    tracing::debug!("PD does not serve BatchScanRegions, using ScanRegions");
                    self.conn.batch_scan.store(BATCH_SCAN_UNSUPPORTED, Ordering::Relaxed);
                }
                result => return result,
            }
        }
        let (start, end) = span_bytes(span);
        let resp = self
            .conn
            .call("ScanRegions", move |mut client, header| {
                let request = pdpb::ScanRegionsRequest {
                    header: Some(header),
                    start_key: start.clone(),
                    end_key: end.clone(),
                    limit: limit as i32,
                };
                async move { client.scan_regions(request).await }
            })
            .await?;
        convert::region_list(&convert::scan_response(resp), span, limit)
    }

    /// `BatchScanRegions` over one range.
    async fn batch_scan_regions(&self, span: &Span, limit: usize) -> Result<Vec<Region>, Error> {
        let (start, end) = span_bytes(span);
        let resp = self
            .conn
            .call("BatchScanRegions", move |mut client, header| {
                let request = pdpb::BatchScanRegionsRequest {
                    header: Some(header),
                    need_buckets: false,
                    ranges: vec![pdpb::KeyRange { start_key: start.clone(), end_key: end.clone() }],
                    limit: limit as i32,
                    contain_all_key_range: false,
                };
                async move { client.batch_scan_regions(request).await }
            })
            .await?;
        convert::region_list(&convert::pd_regions(resp.regions), span, limit)
    }

    /// The store with this id. A store PD does not know is [`Error::StoreNotFound`]; a
    /// tombstone is [`Error::StoreTombstone`].
    pub async fn get_store(&self, id: StoreId) -> Result<Store, Error> {
        let resp = self
            .conn
            .call("GetStore", move |mut client, header| {
                let request = pdpb::GetStoreRequest { header: Some(header), store_id: id };
                async move { client.get_store(request).await }
            })
            .await
            .map_err(|e| match e {
                Error::Pd { kind: PdErrorKind::StoreTombstone, .. } => {
                    Error::StoreTombstone { store_id: id }
                }
                Error::Pd { kind: PdErrorKind::Unknown, message, .. }
                    if message.contains("invalid store ID") =>
                {
                    Error::StoreNotFound { store_id: id }
                }
                e => e,
            })?;
        let store = convert::store(resp.store.ok_or(Error::StoreNotFound { store_id: id })?)?;
        if store.id != id {
            return Err(Error::InvalidResponse {
                method: "GetStore",
                reason: format!("asked for store {id}, got store {}", store.id),
            });
        }
        if store.state == StoreState::Tombstone {
            return Err(Error::StoreTombstone { store_id: id });
        }
        Ok(store)
    }

    /// Every store PD knows, tombstones left out when `exclude_tombstones`.
    pub async fn get_all_stores(&self, exclude_tombstones: bool) -> Result<Vec<Store>, Error> {
        let resp = self
            .conn
            .call("GetAllStores", move |mut client, header| {
                let request = pdpb::GetAllStoresRequest {
                    header: Some(header),
                    exclude_tombstone_stores: exclude_tombstones,
                };
                async move { client.get_all_stores(request).await }
            })
            .await?;
        resp.stores.into_iter().map(convert::store).collect()
    }
}

/// The region of a `GetRegion`/`GetRegionByID` answer: unset (or `REGION_NOT_FOUND`) is `None`.
/// A region that does not answer the request (`matches` is false: it does not contain the key,
/// or has another id) is [`Error::InvalidResponse`].
fn region_response(
    method: &'static str,
    resp: Result<pdpb::GetRegionResponse, Error>,
    matches: impl FnOnce(&Region) -> Result<(), String>,
) -> Result<Option<Region>, Error> {
    let region = match resp {
        Ok(resp) => match &resp.region {
            None => return Ok(None),
            Some(region) => convert::region(region, resp.leader.as_ref())?,
        },
        Err(Error::Pd { kind: PdErrorKind::RegionNotFound, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    matches(&region).map_err(|reason| Error::InvalidResponse { method, reason })?;
    Ok(Some(region))
}

/// The error for a response that lacks its header (so its cluster id cannot be checked).
pub(crate) fn missing_header(method: &'static str) -> Error {
    Error::InvalidResponse { method, reason: "no header".to_owned() }
}

/// The bounds of a span as request bytes.
fn span_bytes(span: &Span) -> (Bytes, Bytes) {
    (Bytes::copy_from_slice(span.start().as_bytes()), Bytes::copy_from_slice(span.end().as_bytes()))
}

/// `Conn::batch_scan`: not yet known whether PD serves BatchScanRegions.
const BATCH_SCAN_UNKNOWN: u8 = 0;
/// `Conn::batch_scan`: PD answered UNIMPLEMENTED.
const BATCH_SCAN_UNSUPPORTED: u8 = 1;

/// The connection state shared by a client's clones and its TSO task.
pub(crate) struct Conn {
    pub(crate) config: PdConfig,
    /// `http` or `https`.
    scheme: &'static str,
    #[cfg(feature = "tls")]
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// Set by the first `GetMembers` answer (or the configuration), never changed afterwards.
    cluster_id: OnceLock<u64>,
    /// The leader in use; `None` until discovered or after it failed.
    leader: RwLock<Option<Arc<Leader>>>,
    /// Held while discovering, so concurrent callers share one discovery.
    discovery: tokio::sync::Mutex<()>,
    /// Member addresses from the last `GetMembers` answer, tried before the configured ones.
    members: Mutex<Vec<String>>,
    /// One channel per address (tonic channels reconnect by themselves).
    channels: Mutex<HashMap<String, Channel>>,
    jitter: Jitter,
    /// Whether PD serves `BatchScanRegions` (`BATCH_SCAN_*`).
    batch_scan: AtomicU8,
}

/// The PD leader and a client connected to it.
pub(crate) struct Leader {
    pub(crate) addr: String,
    pub(crate) client: PdGrpc,
}

/// PD responses carry a header; [`Conn::call`] checks it, and refuses a response without one
/// unless the call has no response message at all ([`HasHeader::HEADERLESS`]).
pub(crate) trait HasHeader {
    /// Whether the response has no header by protocol (so a missing one is not an error).
    const HEADERLESS: bool = false;
    fn header(&self) -> Option<&pdpb::ResponseHeader>;
}

macro_rules! has_header {
    ($($t:ty),*) => {
        $(impl HasHeader for $t {
            fn header(&self) -> Option<&pdpb::ResponseHeader> {
                self.header.as_ref()
            }
        })*
    };
}

has_header!(
    pdpb::TsoResponse,
    pdpb::GetRegionResponse,
    pdpb::ScanRegionsResponse,
    pdpb::BatchScanRegionsResponse,
    pdpb::GetStoreResponse,
    pdpb::GetAllStoresResponse
);

/// A call that only needs the leader (used to discover it at connect time).
impl HasHeader for () {
    const HEADERLESS: bool = true;
    fn header(&self) -> Option<&pdpb::ResponseHeader> {
        None
    }
}

impl Conn {
    fn new(config: PdConfig) -> Result<Self, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::Config("no PD endpoint".to_owned()));
        }
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        #[cfg(feature = "tls")]
        let tls = config.tls.as_ref().map(|tls| {
            use tonic::transport::{Certificate, ClientTlsConfig, Identity};
            let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                c = c.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &tls.domain_name {
                c = c.domain_name(name.clone());
            }
            c
        });
        #[cfg(not(feature = "tls"))]
        if config.tls.is_some() {
            return Err(Error::Config("TLS needs the `tls` feature".to_owned()));
        }
        let cluster_id = OnceLock::new();
        if let Some(id) = config.cluster_id {
            let _ = cluster_id.set(id);
        }
        Ok(Self {
            config,
            scheme,
            #[cfg(feature = "tls")]
            tls,
            cluster_id,
            leader: RwLock::new(None),
            discovery: tokio::sync::Mutex::new(()),
            members: Mutex::new(Vec::new()),
            channels: Mutex::new(HashMap::new()),
            jitter: Jitter::new(),
            batch_scan: AtomicU8::new(BATCH_SCAN_UNKNOWN),
        })
    }

    /// The cluster id, 0 before the first `GetMembers` answer.
    pub(crate) fn cluster_id(&self) -> u64 {
        self.cluster_id.get().copied().unwrap_or(0)
    }

    /// The request header: our cluster id.
    pub(crate) fn header(&self) -> pdpb::RequestHeader {
        pdpb::RequestHeader { cluster_id: self.cluster_id(), ..pdpb::RequestHeader::default() }
    }

    /// The delay before retry number `retry` (1-based): none before the first (the leader may
    /// simply have moved), jittered exponential backoff after that.
    pub(crate) fn retry_delay(&self, retry: u32) -> Duration {
        if retry <= 1 {
            Duration::ZERO
        } else {
            self.config.backoff.delay(retry - 1, self.jitter.next())
        }
    }

    /// Sends a leader-only call, rediscovering the leader and retrying on transient failures,
    /// and checks the response header.
    pub(crate) async fn call<Resp, F, Fut>(
        &self,
        method: &'static str,
        mut f: F,
    ) -> Result<Resp, Error>
    where
        Resp: HasHeader,
        F: FnMut(PdGrpc, pdpb::RequestHeader) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut retry = 0;
        loop {
            let error = match self.leader().await {
                Ok(leader) => {
                    let call = f(leader.client.clone(), self.header());
                    match tokio::time::timeout(self.config.timeout, call).await {
                        Ok(Ok(resp)) => {
                            let resp = resp.into_inner();
                            match resp.header() {
                                Some(header) => self.check_header(method, header)?,
                                // The cluster-id check is required on every response.
                                None if !Resp::HEADERLESS => return Err(missing_header(method)),
                                None => {}
                            }
                            return Ok(resp);
                        }
                        Ok(Err(status)) => {
                            let error = self.status_error(method, &status);
                            if error.is_retryable() {
                                self.forget_leader(&leader);
                            }
                            error
                        }
                        Err(_) => {
                            self.forget_leader(&leader);
                            Error::Timeout { method }
                        }
                    }
                }
                Err(Error::Unavailable { message, .. }) => Error::Unavailable { method, message },
                Err(error) => error,
            };
            if !error.is_retryable() || retry >= self.config.backoff.retries {
                return Err(error);
            }
            retry += 1;
            let delay = self.retry_delay(retry);
            tracing::debug!(method, retry, ?delay, %error, "PD call failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Checks a response header: our cluster id, no error.
    pub(crate) fn check_header(
        &self,
        method: &'static str,
        header: &pdpb::ResponseHeader,
    ) -> Result<(), Error> {
        let error = header.error.as_ref().filter(|e| e.r#type != pdpb::ErrorType::Ok as i32);
        let expected = self.cluster_id();
        // PD always sets its id; tolerate a zero id only on an error header.
        if header.cluster_id != expected && !(header.cluster_id == 0 && error.is_some()) {
            return Err(Error::ClusterIdMismatch { expected, got: header.cluster_id });
        }
        match error {
            None => Ok(()),
            Some(e) => Err(Error::Pd {
                method,
                kind: convert::pd_error_kind(e.r#type),
                message: e.message.clone(),
            }),
        }
    }

    /// Maps a gRPC status to an error; transient ones are [`Error::Unavailable`].
    pub(crate) fn status_error(&self, method: &'static str, status: &tonic::Status) -> Error {
        use tonic::Code;
        let message = status.message();
        match status.code() {
            Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Internal => Error::Unavailable { method, message: status.to_string() },
            Code::FailedPrecondition if message.contains("mismatch cluster id") => {
                Error::ClusterIdMismatch {
                    expected: self.cluster_id(),
                    got: number_after(message, "need ").unwrap_or(0),
                }
            }
            Code::Unimplemented => Error::Unimplemented { method },
            code => Error::Grpc { method, code, message: message.to_owned() },
        }
    }

    /// The leader, discovering it if none is known.
    pub(crate) async fn leader(&self) -> Result<Arc<Leader>, Error> {
        if let Some(leader) = read(&self.leader).clone() {
            return Ok(leader);
        }
        let _discovering = self.discovery.lock().await;
        if let Some(leader) = read(&self.leader).clone() {
            return Ok(leader);
        }
        let leader = Arc::new(self.discover().await?);
        tracing::debug!(leader = %leader.addr, cluster_id = self.cluster_id(), "PD leader found");
        *write(&self.leader) = Some(Arc::clone(&leader));
        Ok(leader)
    }

    /// Forgets `leader` if it is still the one in use (a newer one is kept).
    pub(crate) fn forget_leader(&self, leader: &Arc<Leader>) {
        let mut current = write(&self.leader);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, leader)) {
            *current = None;
        }
    }

    /// Asks the known members, then the configured endpoints, for the leader.
    async fn discover(&self) -> Result<Leader, Error> {
        let mut candidates = lock(&self.members).clone();
        for endpoint in &self.config.endpoints {
            let addr = convert::strip_scheme(endpoint);
            if !candidates.iter().any(|c| c == addr) {
                candidates.push(addr.to_owned());
            }
        }
        let mut last = Error::Unavailable {
            method: "GetMembers",
            message: "no PD endpoint answered".to_owned(),
        };
        for addr in &candidates {
            match self.ask_member(addr).await {
                Ok(leader) => return Ok(leader),
                Err(error @ Error::ClusterIdMismatch { .. }) => return Err(error),
                Err(error) => {
                    tracing::debug!(member = %addr, %error, "PD member did not name a leader");
                    last = error;
                }
            }
        }
        Err(match last {
            Error::Unavailable { .. } | Error::Timeout { .. } => last,
            other => Error::Unavailable { method: "GetMembers", message: other.to_string() },
        })
    }

    /// Asks one member for the members and the leader, and connects to the leader.
    async fn ask_member(&self, addr: &str) -> Result<Leader, Error> {
        const METHOD: &str = "GetMembers";
        let channel = self.channel(addr).await?;
        let mut client = grpc(channel.clone());
        let request = pdpb::GetMembersRequest { header: Some(self.header()) };
        let resp = tokio::time::timeout(self.config.timeout, client.get_members(request))
            .await
            .map_err(|_| Error::Timeout { method: METHOD })?
            .map_err(|status| self.status_error(METHOD, &status))?
            .into_inner();
        let header = resp.header.as_ref().ok_or_else(|| Error::InvalidResponse {
            method: METHOD,
            reason: "no header".to_owned(),
        })?;
        if header.cluster_id == 0 {
            return Err(Error::InvalidResponse {
                method: METHOD,
                reason: "cluster id 0".to_owned(),
            });
        }
        let expected = *self.cluster_id.get_or_init(|| header.cluster_id);
        if header.cluster_id != expected {
            return Err(Error::ClusterIdMismatch { expected, got: header.cluster_id });
        }
        self.check_header(METHOD, header)?;
        let members: Vec<String> = resp
            .members
            .iter()
            .flat_map(|m| &m.client_urls)
            .map(|url| convert::strip_scheme(url).to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if !members.is_empty() {
            *lock(&self.members) = members;
        }
        let urls = resp.leader.as_ref().map_or(&[][..], |l| &l.client_urls[..]);
        let mut last =
            Error::Unavailable { method: METHOD, message: "PD has no leader".to_owned() };
        for url in urls {
            let leader_addr = convert::strip_scheme(url);
            if leader_addr == addr {
                return Ok(Leader { addr: addr.to_owned(), client });
            }
            match self.channel(leader_addr).await {
                Ok(channel) => {
                    return Ok(Leader { addr: leader_addr.to_owned(), client: grpc(channel) });
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// A channel to `addr`, connected now if none is cached.
    async fn channel(&self, addr: &str) -> Result<Channel, Error> {
        if let Some(channel) = lock(&self.channels).get(addr) {
            return Ok(channel.clone());
        }
        let channel = self.endpoint(addr)?.connect().await.map_err(|e| Error::Unavailable {
            method: "connect",
            message: format!("{addr}: {}", error_chain(&e)),
        })?;
        lock(&self.channels).insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, Error> {
        let endpoint = Endpoint::from_shared(format!("{}://{addr}", self.scheme))
            .map_err(|e| Error::Config(format!("bad PD address {addr:?}: {e}")))?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return endpoint
                .tls_config(tls.clone())
                .map_err(|e| Error::Config(format!("TLS for {addr}: {}", error_chain(&e))));
        }
        Ok(endpoint)
    }
}

/// A PD gRPC client on `channel`, accepting large messages.
fn grpc(channel: Channel) -> PdGrpc {
    PdGrpc::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
}

/// The number that follows `prefix` in `text`, e.g. PD's `need X` in a cluster-id mismatch.
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// An error and its sources, joined (tonic's transport errors hide the cause in the chain).
fn error_chain(error: &dyn core::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Locks a mutex; a poisoned one is used as is (no code panics while holding these).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Read-locks an `RwLock`, ignoring poisoning.
pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Write-locks an `RwLock`, ignoring poisoning.
pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_after_parses_pd_mismatch_messages() {
        let msg = "mismatch cluster id, need 7 but got 8";
        assert_eq!(number_after(msg, "need "), Some(7));
        assert_eq!(number_after("need ", "need "), None);
        assert_eq!(number_after("nothing", "need "), None);
        assert_eq!(number_after("need 99999999999999999999999", "need "), None);
    }
}
