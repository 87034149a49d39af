//! Transport settings (design §3: HTTP/2 windows of 64 KiB per stream and 8 MiB per connection,
//! a 256 MiB decode limit, keepalive) and optional TLS.

use alloc::string::String;
use core::time::Duration;
use std::path::PathBuf;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::backoff::Backoff;
use crate::error::TransportError;

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
    /// Delays before reconnecting a stream after failures.
    pub backoff: Backoff,
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

/// TLS through rustls: PEM files for the CA and, for mutual TLS, the client certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The CA certificate(s) the stores' certificates must chain to.
    pub ca_file: PathBuf,
    /// The client certificate and its private key, for mutual TLS.
    pub client_identity: Option<ClientIdentity>,
    /// The name to verify the stores' certificates against; by default the host of each store's
    /// address.
    pub domain_name: Option<String>,
}

/// A client certificate and key, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain file.
    pub cert_file: PathBuf,
    /// The private key file.
    pub key_file: PathBuf,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            streams_per_store: 2,
            max_calls_per_connection: 1000,
            event_channel_capacity: 1024,
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
            backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) },
            tls: None,
        }
    }
}

impl TlsConfig {
    /// Reads the files into tonic's client TLS settings.
    pub fn load(&self) -> Result<ClientTlsConfig, TransportError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|error| TransportError::Tls {
                path: path.clone(),
                reason: error.to_string(),
            })
        };
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&self.ca_file)?));
        if let Some(identity) = &self.client_identity {
            tls = tls.identity(Identity::from_pem(
                read(&identity.cert_file)?,
                read(&identity.key_file)?,
            ));
        }
        if let Some(domain) = &self.domain_name {
            tls = tls.domain_name(domain.clone());
        }
        Ok(tls)
    }
}
