//! Integration tests: the PD client and the region source against [`ScriptedPd`], the simulator's
//! PD serving scripted regions and stores over real gRPC on 127.0.0.1 ephemeral ports. Nothing here sleeps to synchronise: every wait
//! is on a response, and the only timers are the client's own (small) backoffs and timeouts.

mod pd;
mod source;
mod tso;

use core::time::Duration;

use kvfeed_regioncache::{Backoff, PdClient, PdConfig};
use kvfeed_sim::scripted::ScriptedPd;

/// The cluster id of the scripted PDs.
pub const CLUSTER: u64 = 7;

/// A configuration with quick retries, for tests.
pub fn config(endpoints: impl IntoIterator<Item = String>) -> PdConfig {
    let mut config = PdConfig::new(endpoints);
    config.timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(2);
    config.backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(10));
    config.retries = 5;
    config
}

/// A client of `fake`, through all its members' URLs.
pub async fn connect(fake: &ScriptedPd) -> PdClient {
    PdClient::connect(config(fake.urls())).await.expect("connect to the scripted PD")
}

/// An address nothing listens on (a port bound, then released).
pub fn dead_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    addr
}
