//! The connection to PD shared by a client's clones and its TSO task: leader discovery, retries,
//! timeouts and the cluster-id check, over tonic.
//!
//! [`Conn::call`] sends a call to the PD leader, discovering it first if none is known: the
//! configured endpoints (and the members PD reported) are asked `GetMembers`, which any member
//! answers, until one names a leader. A call that fails in a way that suggests the leader moved
//! or is down (gRPC `UNAVAILABLE`, a timeout, a broken connection) forgets the leader and is
//! retried with jittered exponential backoff, up to the configured number of retries.
//!
//! The cluster id is learned from the first `GetMembers` answer (or given in the configuration)
//! and checked on every response afterwards: a different id is [`Error::ClusterIdMismatch`],
//! never retried. Header errors map to [`Error::Pd`].

use core::future::Future;
use core::sync::atomic::AtomicBool;
use core::time::Duration;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use hashbrown::HashMap;
use kvfeed_base::{Jitter, lock, read, write};
use kvfeed_proto::pdpb;
use tonic::transport::{Channel, Endpoint};

use crate::config::PdConfig;
use crate::convert;
use crate::error::Error;

/// The generated PD gRPC client on a tonic channel.
pub(crate) type PdGrpc = pdpb::pd_client::PdClient<Channel>;

/// The largest message accepted from PD (a scan of many regions can be large).
const MAX_DECODING_MESSAGE_SIZE: usize = 256 << 20;

/// The HTTP/2 receive window of one PD call: a scan answer of a thousand regions (~150 KiB)
/// arrives without waiting for window updates.
const STREAM_WINDOW: u32 = 4 << 20;
/// The HTTP/2 receive window of a PD connection.
const CONNECTION_WINDOW: u32 = 8 << 20;

/// The error for a response that lacks its header (so its cluster id cannot be checked).
pub(crate) fn missing_header(method: &'static str) -> Error {
    Error::InvalidResponse { method, reason: "no header".to_owned() }
}

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
    /// Set once PD answered `BatchScanRegions` with `UNIMPLEMENTED` (PD before 8.5).
    pub(crate) batch_scan_unsupported: AtomicBool,
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
    pdpb::GetAllStoresResponse,
    pdpb::GetGcSafePointResponse,
    pdpb::UpdateServiceGcSafePointResponse
);

/// A call that only needs the leader (used to discover it at connect time).
impl HasHeader for () {
    const HEADERLESS: bool = true;
    fn header(&self) -> Option<&pdpb::ResponseHeader> {
        None
    }
}

impl Conn {
    pub(crate) fn new(config: PdConfig) -> Result<Self, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::Config("no PD endpoint".to_owned()));
        }
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        #[cfg(feature = "tls")]
        let tls = config.tls.as_ref().map(kvfeed_base::tonic_tls).transpose()?;
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
            jitter: Jitter::from_clock(),
            batch_scan_unsupported: AtomicBool::new(false),
        })
    }

    /// The cluster id once known (from the first `GetMembers` answer or the configuration).
    pub(crate) fn known_cluster_id(&self) -> Option<u64> {
        self.cluster_id.get().copied()
    }

    /// The address of the leader in use, if one is known.
    pub(crate) fn leader_addr(&self) -> Option<String> {
        read(&self.leader).as_ref().map(|l| l.addr.clone())
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
        if retry <= 1 { Duration::ZERO } else { self.config.backoff.delay(retry - 1, &self.jitter) }
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
            // Before PD ever answered, a failed handshake is a configuration problem.
            let misconfigured =
                matches!(error, Error::TlsHandshake { .. }) && self.cluster_id.get().is_none();
            if !error.is_retryable() || misconfigured || retry >= self.config.retries {
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
            | Code::Internal => Error::Unavailable { method, message: status_text(status) },
            Code::FailedPrecondition if message.contains("mismatch cluster id") => {
                Error::ClusterIdMismatch {
                    expected: self.cluster_id(),
                    got: number_after(message, "need ").unwrap_or(0),
                }
            }
            Code::Unimplemented => Error::Unimplemented { method },
            code => Error::Grpc { method, code: code as i32, message: message.to_owned() },
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
            Error::Unavailable { .. } | Error::TlsHandshake { .. } | Error::Timeout { .. } => last,
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
        let channel = self.endpoint(addr)?.connect().await.map_err(|e| {
            #[cfg(feature = "tls")]
            if let Some(reason) = kvfeed_base::tls_handshake_failure(&e) {
                return Error::TlsHandshake { addr: addr.to_owned(), reason };
            }
            Error::Unavailable {
                method: "connect",
                message: format!("{addr}: {}", error_chain(&e)),
            }
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

/// A gRPC status as one short line: its message and the innermost cause (`tcp connect error:
/// Connection refused (os error 111)`), never tonic's Debug rendering of the source.
fn status_text(status: &tonic::Status) -> String {
    let mut text = match status.message() {
        "" => status.code().description().to_owned(),
        message => message.to_owned(),
    };
    let mut source = core::error::Error::source(status);
    let mut innermost = None;
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    if let Some(cause) = innermost.filter(|cause| !text.contains(cause.as_str())) {
        text.push_str(": ");
        text.push_str(&cause);
    }
    text
}

/// An error and its sources, joined (tonic's transport errors hide the cause in the chain).
fn error_chain(error: &dyn core::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        // Wrappers often repeat their cause's text; say it once.
        let cause = s.to_string();
        if !text.ends_with(cause.as_str()) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
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
