//! How to reach PD: [`PdConfig`], with the shared [`Backoff`] and [`TlsConfig`] of
//! `kvfeed-base`.

use core::time::Duration;

use kvfeed_base::{Backoff, TlsConfig};

/// How to reach PD.
#[derive(Clone, Debug)]
pub struct PdConfig {
    /// PD endpoints, `host:port` or `http(s)://host:port`. The members PD reports are tried too.
    pub endpoints: Vec<String>,
    /// The deadline of one attempt of one call (and of one TSO round trip).
    pub timeout: Duration,
    /// The deadline of establishing one connection.
    pub connect_timeout: Duration,
    /// The delays between attempts of a failed call: retry `n` (1-based) waits
    /// [`Backoff::delay`] of `n - 1` (the first retry goes at once: the leader may simply have
    /// moved).
    pub backoff: Backoff,
    /// Retries after the first attempt; 0 means a single attempt.
    pub retries: u32,
    /// The cluster id to expect; `None` takes the id of the first PD that answers.
    pub cluster_id: Option<u64>,
    /// TLS to PD (needs the `tls` feature, on by default); `None` for plain text.
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
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(3)),
            retries: 10,
            cluster_id: None,
            tls: None,
        }
    }
}
