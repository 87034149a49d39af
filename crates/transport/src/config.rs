//! Transport settings (design §3: HTTP/2 windows of 64 KiB per stream and 8 MiB per connection,
//! a 256 MiB decode limit, keepalive), the reconnect [`Backoff`], the deadline of unary calls and
//! optional TLS (`kvfeed-base`'s [`TlsConfig`]).

use core::time::Duration;

use kvfeed_base::{Backoff, TlsConfig};

/// How the transport connects and streams. [`TransportConfig::default`] gives the production
/// values; every field can be changed before [`Transport::new`](crate::Transport::new).
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Streams (gRPC calls) per store; regions are spread over them round robin. At least 1.
    pub streams_per_store: usize,
    /// The most calls one HTTP/2 connection carries before the pool dials another one to the same
    /// store (with `EventFeed` fallback every subscription needs its own call). At least 1.
    pub max_calls_per_connection: usize,
    /// Capacity of the event channel, in events. When it is full, every stream stops reading,
    /// and HTTP/2 flow control pushes back on the stores. At least 1.
    pub event_channel_capacity: usize,
    /// Bytes the events on the channel may hold at most (their
    /// [`StreamEvent::footprint`](crate::StreamEvent::footprint)); when they hold this much,
    /// every stream stops reading too. At least 1; an event larger than this is let through
    /// alone.
    pub event_channel_bytes: usize,
    /// Ask TiKV to drop rows written by CDC itself (`filter_loop` of every Register).
    pub filter_loop: bool,
    /// Dialling timeout; also bounds the `EventFeedV2` probe.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive pings, also sent on connections without calls (`None`: off).
    pub keepalive: Option<Keepalive>,
    /// HTTP/2 initial window of each stream, in bytes.
    pub stream_window: u32,
    /// HTTP/2 initial window of each connection, in bytes.
    pub connection_window: u32,
    /// The largest response message accepted, in bytes (tonic's default of 4 MiB is too small:
    /// one row can be larger).
    pub max_decoding_message_size: usize,
    /// A stream without regions for this long closes (its connection goes with its last call).
    pub idle_timeout: Duration,
    /// How long a deregistered registration may go without TiKV ending it before registering the
    /// region again resets the stream (until it ends, the region's events on that stream are
    /// taken for the old registration's and dropped).
    pub drain_timeout: Duration,
    /// Delays before reconnecting a stream after failures.
    pub backoff: Backoff,
    /// The deadline of one unary call (the lock-resolution RPCs), dialling excluded.
    pub request_timeout: Duration,
    /// TLS, or plain HTTP/2 when `None`.
    pub tls: Option<TlsConfig>,
}

/// HTTP/2 keepalive settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between pings.
    pub interval: Duration,
    /// How long to wait for a ping's answer before closing the connection.
    pub timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            streams_per_store: 2,
            max_calls_per_connection: 1000,
            event_channel_capacity: 1024,
            event_channel_bytes: 64 << 20,
            filter_loop: false,
            connect_timeout: Duration::from_secs(3),
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(3),
            }),
            stream_window: 64 * 1024,
            connection_window: 8 * 1024 * 1024,
            max_decoding_message_size: 256 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            request_timeout: Duration::from_secs(3),
            tls: None,
        }
    }
}
