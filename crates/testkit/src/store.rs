//! [`TestStore`]: ChangeData servers on loopback gRPC, scripted by the tests.
//!
//! [`TestStore::start`] serves `cdcpb.ChangeData` on `127.0.0.1:0` from a runtime of its own (so
//! [`TestStore::kill`] can drop every connection at once, like a crashed TiKV). The server speaks
//! raw frames on the response side, so tests can send garbage as well as real `ChangeDataEvent`s.
//!
//! Behaviour, after TiKV's (wire §7): `EventFeedV2` answers `UNIMPLEMENTED` on a V1-only store or
//! when the `features` metadata names anything but `stream-multiplexing`; a call that ends its
//! request side before sending anything is a probe and gets a clean end of stream; any other call
//! is handed to the test as a [`ServerCall`]. The frame builders ([`rows`], [`resolved`], ...)
//! make the replies most tests send.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use kvfeed_proto::cdcpb::{self, ChangeDataEvent, ChangeDataRequest, event};
use kvfeed_proto::errorpb;
use prost::Message as _;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::{Stream, StreamExt as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::{Request, Response, Status, Streaming};

/// How long a test waits for anything before failing (never reached when things work).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Which RPC a call came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `EventFeed`: one call per subscription.
    V1,
    /// `EventFeedV2`: a multiplexed stream.
    V2,
}

/// What the test tells a call to send.
#[derive(Debug)]
pub enum Reply {
    /// A real event.
    Event(ChangeDataEvent),
    /// Raw bytes as one gRPC message (garbage, truncated frames).
    Raw(Bytes),
    /// End the call with this status.
    Fail(Status),
}

/// One non-probe call, from the server's side.
#[derive(Debug)]
pub struct ServerCall {
    /// The RPC the call came in on.
    pub method: Method,
    /// The `features` metadata, if sent.
    pub features: Option<String>,
    /// The first request (the one that told this call from a probe).
    pub first: ChangeDataRequest,
    /// The requests after the first; `None` once the client's request side ended.
    pub requests: mpsc::UnboundedReceiver<ChangeDataRequest>,
    /// Replies, sent in order; dropping it ends the call with an OK status.
    pub replies: mpsc::Sender<Reply>,
    /// Replies tonic has taken from this call so far (handed to HTTP/2).
    pub sent: Arc<AtomicUsize>,
}

/// Counters of one store.
#[derive(Debug, Default)]
pub struct Counters {
    /// Probe calls (request side ended before a first request), answered with a clean end.
    pub probes: AtomicUsize,
    /// Calls handed to the test.
    pub calls: AtomicUsize,
    /// `EventFeedV2` calls refused with `UNIMPLEMENTED`.
    pub unimplemented: AtomicUsize,
}

/// A ChangeData server on loopback.
pub struct TestStore {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it has seen so far.
    pub counters: Arc<Counters>,
    calls: Mutex<mpsc::UnboundedReceiver<ServerCall>>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Clone)]
struct Service_ {
    v2: bool,
    calls: mpsc::UnboundedSender<ServerCall>,
    counters: Arc<Counters>,
}

impl TestStore {
    /// Starts a store; `v2` says whether it serves `EventFeedV2`.
    pub fn start(v2: bool) -> Self {
        Self::start_with(v2, None)
    }

    /// Starts a store serving mutual TLS with the certificates of [`tls_data_dir`] (a CA, and one
    /// certificate for `localhost` and 127.0.0.1 that serves as both server and client identity).
    pub fn start_tls(v2: bool) -> Self {
        let data = tls_data_dir();
        let read = |name: &str| std::fs::read(data.join(name)).expect("test certificate");
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(read("server.pem"), read("server.key")))
            .client_ca_root(tonic::transport::Certificate::from_pem(read("ca.pem")));
        Self::start_with(v2, Some(tls))
    }

    fn start_with(v2: bool, tls: Option<tonic::transport::ServerTlsConfig>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let service = Service_ { v2, calls: calls_tx, counters: Arc::clone(&counters) };
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            // No Nagle: it would hold back the tail of every flow-control window.
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = tls {
                builder = builder.tls_config(tls).expect("server TLS");
            }
            builder.add_service(service).serve_with_incoming(incoming).await.expect("serve");
        });
        Self { addr, counters, calls: Mutex::new(calls), runtime: Some(runtime) }
    }

    /// The store's address as a transport target.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The next non-probe call.
    pub async fn accept(&self) -> ServerCall {
        let mut calls = self.calls.lock().await;
        tokio::time::timeout(PATIENCE, calls.recv())
            .await
            .expect("no call in time")
            .expect("server gone")
    }

    /// A non-probe call if one is already waiting.
    pub async fn try_accept(&self) -> Option<ServerCall> {
        self.calls.lock().await.try_recv().ok()
    }

    /// Drops every connection at once and stops serving.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        self.kill();
    }
}

impl ServerCall {
    /// Sends a reply (waits while HTTP/2 flow control holds the call back).
    pub async fn send(&self, reply: Reply) {
        self.replies.send(reply).await.expect("call gone");
    }

    /// The next request after the first, or `None` once the client closed its side.
    pub async fn next_request(&mut self) -> Option<ChangeDataRequest> {
        tokio::time::timeout(PATIENCE, self.requests.recv()).await.expect("no request in time")
    }
}

impl tonic::server::NamedService for Service_ {
    const NAME: &'static str = "cdcpb.ChangeData";
}

impl<B> Service<http::Request<B>> for Service_
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = match request.uri().path() {
            "/cdcpb.ChangeData/EventFeed" => Some(Method::V1),
            "/cdcpb.ChangeData/EventFeedV2" => Some(Method::V2),
            _ => None,
        };
        let this = self.clone();
        Box::pin(async move {
            let Some(method) = method else {
                return Ok(Status::unimplemented("no such method").into_http());
            };
            let mut grpc = tonic::server::Grpc::new(ServerCodec);
            Ok(grpc.streaming(Handler { method, service: this }, request).await)
        })
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

struct Handler {
    method: Method,
    service: Service_,
}

impl tonic::server::StreamingService<ChangeDataRequest> for Handler {
    type Response = Bytes;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Response<ReplyStream>, Status>;

    fn call(&mut self, request: Request<Streaming<ChangeDataRequest>>) -> Self::Future {
        let method = self.method;
        let service = self.service.clone();
        Box::pin(async move {
            let features = request
                .metadata()
                .get("features")
                .map(|value| value.to_str().expect("ascii features").to_owned());
            if method == Method::V2
                && (!service.v2 || features.as_deref().is_some_and(|f| f != "stream-multiplexing"))
            {
                service.counters.unimplemented.fetch_add(1, Ordering::SeqCst);
                return Err(Status::unimplemented("EventFeedV2 is not served here"));
            }
            let mut inbound = request.into_inner();
            let first = match inbound.message().await {
                Ok(Some(first)) => first,
                Ok(None) | Err(_) => {
                    service.counters.probes.fetch_add(1, Ordering::SeqCst);
                    let empty: ReplyStream = Box::pin(tokio_stream::empty());
                    return Ok(Response::new(empty));
                }
            };
            service.counters.calls.fetch_add(1, Ordering::SeqCst);
            let (requests_tx, requests) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Ok(Some(request)) = inbound.message().await {
                    if requests_tx.send(request).is_err() {
                        break;
                    }
                }
            });
            let (replies, replies_rx) = mpsc::channel::<Reply>(1);
            let sent = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&sent);
            let stream =
                tokio_stream::wrappers::ReceiverStream::new(replies_rx).map(move |reply| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    match reply {
                        Reply::Event(event) => Ok(Bytes::from(event.encode_to_vec())),
                        Reply::Raw(bytes) => Ok(bytes),
                        Reply::Fail(status) => Err(status),
                    }
                });
            let call = ServerCall { method, features, first, requests, replies, sent };
            // A test that stopped listening just never sees the call.
            let _ = service.calls.send(call);
            let stream: ReplyStream = Box::pin(stream);
            Ok(Response::new(stream))
        })
    }
}

/// Raw frames out, prost requests in.
#[derive(Clone, Copy, Default)]
struct ServerCodec;

#[derive(Clone, Copy, Default)]
struct RawEncoder;

#[derive(Clone, Copy, Default)]
struct RequestDecoder;

impl Codec for ServerCodec {
    type Encode = Bytes;
    type Decode = ChangeDataRequest;
    type Encoder = RawEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut as _;
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RequestDecoder {
    type Item = ChangeDataRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ChangeDataRequest>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ChangeDataRequest::decode(bytes)
            .map(Some)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

/// The directory of the test TLS material: `ca.pem`, and `server.pem` / `server.key`, a
/// certificate for `localhost` and 127.0.0.1 signed by that CA, usable as server and client
/// identity (see its `README.md`).
pub fn tls_data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

// Frame builders.

/// `n` committed rows of `value_len`-byte values for one region.
pub fn rows(request_id: u64, region_id: u64, n: usize, value_len: usize) -> cdcpb::Event {
    let entries = (0..n)
        .map(|i| event::Row {
            start_ts: 100 + i as u64,
            commit_ts: 200 + i as u64,
            r#type: event::LogType::Committed as i32,
            op_type: event::row::OpType::Put as i32,
            key: Bytes::from(format!("key-{region_id}-{i:06}")),
            value: Bytes::from(vec![b'v'; value_len]),
            old_value: Bytes::new(),
            ..event::Row::default()
        })
        .collect();
    cdcpb::Event {
        region_id,
        request_id,
        index: 0,
        event: Some(event::Event::Entries(event::Entries { entries })),
    }
}

/// A region error event.
pub fn region_not_found(request_id: u64, region_id: u64) -> cdcpb::Event {
    cdcpb::Event {
        region_id,
        request_id,
        index: 0,
        event: Some(event::Event::Error(cdcpb::Error {
            region_not_found: Some(errorpb::RegionNotFound { region_id }),
            ..cdcpb::Error::default()
        })),
    }
}

/// A frame of events.
pub fn frame(events: Vec<cdcpb::Event>) -> Reply {
    Reply::Event(ChangeDataEvent { events, resolved_ts: None })
}

/// The wire bytes of a frame of events (to send cut short, say).
pub fn encoded(events: Vec<cdcpb::Event>) -> Bytes {
    Bytes::from(ChangeDataEvent { events, resolved_ts: None }.encode_to_vec())
}

/// A resolved-ts frame.
pub fn resolved(request_id: u64, regions: Vec<u64>, ts: u64) -> Reply {
    Reply::Event(ChangeDataEvent {
        events: Vec::new(),
        resolved_ts: Some(cdcpb::ResolvedTs { regions, ts, request_id }),
    })
}
