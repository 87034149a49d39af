//! What `watch` and `snapshot` share: the cluster to talk to (PD endpoints, TLS, the GC safe
//! point's name, the memory quota), the span to read (`--table` or `--span`), and connecting
//! a client from them.

use std::path::PathBuf;
use std::time::Duration;

use kvfeed::{Client, Config, TlsConfig};
use kvfeed_span::{EncodedKey, Span};
use kvfeed_tidb::TableName;

use crate::Failure;
use crate::output::unhex;

/// The cluster and how to talk to it.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    /// PD endpoints, comma separated (environment: KVFEED_PD).
    #[arg(
        long,
        env = "KVFEED_PD",
        value_delimiter = ',',
        required = true,
        value_name = "HOST:PORT"
    )]
    pub(crate) pd: Vec<String>,
    /// The cluster id to expect (refuse any other cluster).
    #[arg(long, env = "KVFEED_CLUSTER_ID", value_name = "ID")]
    cluster_id: Option<u64>,
    /// Seconds to wait for PD.
    #[arg(long, env = "KVFEED_TIMEOUT", default_value_t = 10, value_name = "S")]
    timeout: u64,
    /// CA certificate (PEM) for TLS to PD and TiKV.
    #[arg(long, env = "KVFEED_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, env = "KVFEED_CERT", value_name = "FILE", requires_all = ["key", "ca"])]
    cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, env = "KVFEED_KEY", value_name = "FILE", requires_all = ["cert", "ca"])]
    key: Option<PathBuf>,
    /// Talk to TiKV stores of any version. By default only versions from 7.1.0-alpha up to
    /// 10.0.0 (excluded) are, as TiCDC; regions on other stores wait for an upgrade.
    #[arg(long)]
    any_store_version: bool,
    /// The name of the PD service GC safe point held while reading (`kvfeed-NAME`); a
    /// restarted command that gives the same name takes its predecessor's over. Default: a
    /// name unique to the process.
    #[arg(long, env = "KVFEED_GC_SERVICE_NAME", value_name = "NAME")]
    gc_service_name: Option<String>,
    /// Seconds the GC safe point outlives a command that was killed. At least 120.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    gc_ttl: u64,
    /// MiB the client may hold on the way (decoded events, pages read ahead, rows not yet
    /// printed); reading from TiKV pauses beyond it. At least 1.
    #[arg(long, env = "KVFEED_MEMORY_QUOTA", default_value_t = 1024, value_name = "MIB")]
    memory_quota: usize,
}

/// What to read: `--table`, `--span` or `--span-raw`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["table", "span", "span_raw"])))]
pub(crate) struct SpanArgs {
    /// A TiDB table: its id (raw rows of its record range), or `db.table` (decoded rows, the
    /// schema followed across DDL; repeat for several tables).
    #[arg(long, value_name = "ID|DB.TABLE", allow_negative_numbers = true)]
    table: Vec<String>,
    /// START..END: memcomparable-encoded keys in hex (as PD and TiKV store them), an empty side
    /// meaning unbounded.
    #[arg(long, value_name = "START_HEX..END_HEX")]
    span: Option<String>,
    /// START..END: raw keys in hex (as `watch` prints them), an empty side meaning unbounded.
    #[arg(long, value_name = "START_HEX..END_HEX")]
    span_raw: Option<String>,
}

/// What `--table` or `--span` names.
#[derive(Debug)]
pub(crate) enum Target {
    /// A key span, read raw.
    Span(Span),
    /// TiDB tables by name, decoded.
    Tables(Vec<TableName>),
}

impl SpanArgs {
    /// The span or the tables of `--table` / `--span`.
    pub(crate) fn target(&self) -> Result<Target, Failure> {
        if let Some(text) = &self.span_raw {
            return parse_raw_span(text).map(Target::Span).map_err(Failure::Usage);
        }
        if self.table.is_empty() {
            let text = self.span.as_deref().unwrap_or_default();
            return parse_span(text).map(Target::Span).map_err(Failure::Usage);
        }
        let numeric = |text: &str| text.trim().parse::<i64>().ok();
        match self.table.as_slice() {
            [one] if numeric(one).is_some() => {
                let table = numeric(one).unwrap_or_default();
                if table <= 0 {
                    return Err(Failure::usage(format!(
                        "unknown table {table}: TiDB table ids are positive integers"
                    )));
                }
                Ok(Target::Span(kvfeed_span::table::table_span(table)))
            }
            many => {
                if let Some(id) = many.iter().find(|t| numeric(t).is_some()) {
                    return Err(Failure::usage(format!(
                        "--table {id}: a table id reads one table raw; name tables as db.table \
                         to watch several"
                    )));
                }
                many.iter()
                    .map(|name| {
                        TableName::parse(name).map_err(|_| {
                            Failure::usage(format!("--table {name:?}: give a table id or db.table"))
                        })
                    })
                    .collect::<Result<_, _>>()
                    .map(Target::Tables)
            }
        }
    }

    /// The name of a raw read of `--table ID` in the metrics: `t100`, as its keys print.
    pub(crate) fn table_id_name(&self) -> Option<String> {
        match self.table.as_slice() {
            [id] => id.trim().parse::<i64>().ok().map(|id| format!("t{id}")),
            _ => None,
        }
    }

    /// The span of `--table ID` or `--span` (what raw reads take).
    pub(crate) fn span(&self) -> Result<Span, Failure> {
        match self.target()? {
            Target::Span(span) => Ok(span),
            Target::Tables(_) => Err(Failure::usage(
                "this command reads raw keys: give --table ID or --span (db.table is for watch)",
            )),
        }
    }
}

/// Parses `START_HEX..END_HEX` of memcomparable-encoded keys (an empty side is unbounded).
pub(crate) fn parse_span(text: &str) -> Result<Span, String> {
    span_of(text, |side, bytes| {
        kvfeed_span::key::decode(&bytes).map_err(|error| {
            let raw = if kvfeed_span::key::decode(&kvfeed_span::key::encode(&bytes)).is_ok() {
                " (a raw key? --span-raw takes those)"
            } else {
                ""
            };
            format!("the span's {side} is not a memcomparable-encoded key: {error}{raw}")
        })?;
        Ok(EncodedKey::from_encoded(&bytes))
    })
}

/// Parses `START_HEX..END_HEX` of raw keys (an empty side is unbounded).
pub(crate) fn parse_raw_span(text: &str) -> Result<Span, String> {
    span_of(text, |_, bytes| Ok(EncodedKey::encode(&bytes)))
}

/// A span from `START_HEX..END_HEX`, each non-empty side turned into a bound by `bound`.
fn span_of(
    text: &str,
    bound: impl Fn(&str, Vec<u8>) -> Result<EncodedKey, String>,
) -> Result<Span, String> {
    let (start, end) =
        text.split_once("..").ok_or_else(|| format!("span {text:?} is not START_HEX..END_HEX"))?;
    let key = |side: &str, hex: &str| -> Result<EncodedKey, String> {
        if hex.is_empty() {
            return Ok(EncodedKey::default());
        }
        let bytes = unhex(hex).map_err(|error| format!("bad hex in the span's {side}: {error}"))?;
        bound(side, bytes)
    };
    let (start, end) = (key("start", start)?, key("end", end)?);
    Span::new(start, end).map_err(|_| format!("span {text:?}: start must be below end"))
}

/// Checks a PD address: `HOST:PORT` (or `http://HOST:PORT`), a port in 1..=65535, a host of
/// letters, digits, `-`, `.`, `_`, or an IPv6 address in brackets.
fn check_pd_address(address: &str) -> Result<(), String> {
    let bad = |why: &str| format!("--pd {address:?}: {why}");
    if address.trim().is_empty() {
        return Err(bad("an empty address (give HOST:PORT)"));
    }
    let rest = strip_scheme(address);
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port (give HOST:PORT)"))?;
    match port.parse::<u32>() {
        Ok(1..=65535) => {}
        Ok(_) => return Err(bad("the port must be 1 to 65535")),
        Err(_) => return Err(bad("the port is not a number")),
    }
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host_ok = match bracketed {
        Some(ip) => ip.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        }
    };
    if !host_ok {
        return Err(bad("not a host name or IP address"));
    }
    Ok(())
}

/// `HOST:PORT` of a PD address given with or without `http://` / `https://`.
fn strip_scheme(address: &str) -> &str {
    let rest = address.strip_prefix("https://").or_else(|| address.strip_prefix("http://"));
    rest.unwrap_or(address).trim_end_matches('/')
}

/// The system's CA bundle: `SSL_CERT_FILE`, or where Debian/Ubuntu, Fedora/RHEL, openSUSE and
/// Alpine keep it.
fn system_ca_bundle() -> Option<PathBuf> {
    let named = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let known = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    named.into_iter().chain(known.iter().map(PathBuf::from)).find(|path| path.is_file())
}

/// Reads a TLS file and checks that it holds a PEM block of `what`.
fn check_pem(file: &std::path::Path, what: &str) -> Result<(), Failure> {
    let text = std::fs::read(file).map_err(|error| {
        Failure::usage(format!("cannot read TLS file {}: {error}", file.display()))
    })?;
    let pem = text.windows(11).any(|w| w == b"-----BEGIN ");
    if !pem {
        return Err(Failure::usage(format!("not a PEM {what}: {}", file.display())));
    }
    Ok(())
}

impl ConnectArgs {
    fn tls(&self) -> Result<Option<TlsConfig>, Failure> {
        let https = self.pd.iter().filter(|a| a.starts_with("https://")).count();
        if https > 0 && https < self.pd.len() {
            return Err(Failure::usage("--pd: give every address with https:// or none"));
        }
        let system;
        let ca = match &self.ca {
            Some(ca) => ca,
            None if https > 0 => {
                // https:// means TLS, never silent plaintext: with the system's CA bundle.
                system = system_ca_bundle().ok_or_else(|| {
                    Failure::usage(
                        "https:// PD addresses need a CA: give --ca FILE (no system CA bundle \
                         found; SSL_CERT_FILE names one)",
                    )
                })?;
                &system
            }
            None => return Ok(None),
        };
        check_pem(ca, "certificate")?;
        if let Some(cert) = &self.cert {
            check_pem(cert, "certificate")?;
        }
        if let Some(key) = &self.key {
            check_pem(key, "key")?;
        }
        Ok(Some(TlsConfig {
            ca_file: ca.clone(),
            client_identity: self
                .cert
                .clone()
                .zip(self.key.clone())
                .map(|(cert_file, key_file)| kvfeed::ClientIdentity { cert_file, key_file }),
            domain_name: None,
        }))
    }

    /// The client's configuration from these arguments (checked as far as they go alone).
    pub(crate) fn config(&self) -> Result<Config, Failure> {
        if self.pd.is_empty() {
            return Err(Failure::usage("--pd: no address (give HOST:PORT)"));
        }
        for address in &self.pd {
            check_pd_address(address).map_err(Failure::Usage)?;
        }
        let tls = self.tls()?;
        let memory_quota = match self.memory_quota.checked_mul(1 << 20) {
            Some(bytes) if self.memory_quota >= 1 && bytes <= (usize::MAX >> 4) => bytes,
            _ => {
                return Err(Failure::usage(
                    "--memory-quota must be at least 1 (MiB) and fit memory",
                ));
            }
        };
        if self.gc_ttl < 120 {
            return Err(Failure::usage("--gc-ttl must be at least 120 seconds"));
        }
        if self.gc_service_name.as_ref().is_some_and(String::is_empty) {
            return Err(Failure::usage("--gc-service-name must not be empty"));
        }
        let mut config = Config::new(self.pd.iter().map(|a| strip_scheme(a).to_owned()));
        config.cluster_id = self.cluster_id;
        config.gc_service_name.clone_from(&self.gc_service_name);
        config.gc_ttl = Duration::from_secs(self.gc_ttl);
        config.memory_quota = memory_quota;
        config.tls = tls;
        if self.any_store_version {
            config.store_versions = None;
        }
        config.timeout = self.timeout().min(Duration::from_secs(3));
        Ok(config)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    /// Connects a client with `config` (from [`ConnectArgs::config`], adjusted) and starts it;
    /// returns it with its running task.
    pub(crate) async fn connect(
        &self,
        config: Config,
    ) -> Result<(Client, tokio::task::JoinHandle<Result<(), kvfeed::Error>>), Failure> {
        let pd = self.pd.join(",");
        let timeout = self.timeout();
        resolvable(&self.pd, timeout).await?;
        let client = match tokio::time::timeout(timeout, Client::connect(config)).await {
            Ok(Ok(client)) => client,
            Ok(Err(kvfeed::Error::Config(problem))) => return Err(Failure::usage(problem)),
            Ok(Err(error)) => {
                return Err(Failure::runtime(format!("cannot use PD at {pd}: {error}")));
            }
            Err(_) => {
                return Err(Failure::runtime(format!(
                    "cannot reach PD at {pd} within {} s",
                    timeout.as_secs()
                )));
            }
        };
        let runner = {
            let client = client.clone();
            tokio::spawn(async move { client.run().await })
        };
        Ok((client, runner))
    }
}

/// Fails with "cannot resolve HOST" when no PD address resolves (a DNS failure is not an
/// unreachable PD).
async fn resolvable(addresses: &[String], timeout: Duration) -> Result<(), Failure> {
    let mut unresolved = Vec::new();
    for address in addresses {
        let target = strip_scheme(address);
        let found = tokio::time::timeout(timeout, tokio::net::lookup_host(target)).await;
        if let Ok(Ok(mut addresses)) = found
            && addresses.next().is_some()
        {
            return Ok(());
        }
        unresolved.push(target.rsplit_once(':').map_or(target, |(host, _)| host));
    }
    Err(Failure::runtime(format!("cannot resolve {}", unresolved.join(", "))))
}

/// How far ahead of PD's clock a `--start-ts` may be (a few seconds of clock skew).
const START_TS_AHEAD: Duration = Duration::from_secs(10);

/// The ts to read at: `ts`, or PD's current one. A `ts` ahead of PD's current ts by more
/// than [`START_TS_AHEAD`] is refused (a typo, or `u64::MAX`).
pub(crate) async fn read_ts(client: &Client, ts: Option<u64>) -> Result<u64, Failure> {
    let now = client
        .current_ts()
        .await
        .map_err(|error| Failure::runtime(format!("no timestamp from PD: {error}")))?;
    let Some(ts) = ts else { return Ok(now) };
    let ahead_ms = i64::try_from(START_TS_AHEAD.as_millis()).unwrap_or(i64::MAX);
    if ts > now.saturating_add(kvfeed_sim::compose(ahead_ms, 0)) {
        return Err(Failure::usage(format!(
            "--start-ts {ts} is ahead of PD's current ts {now} by more than {} s",
            START_TS_AHEAD.as_secs()
        )));
    }
    Ok(ts)
}

/// An error of starting a read: a ts below the GC safe point is the argument's fault.
pub(crate) fn start_failure(error: kvfeed::Error) -> Failure {
    match error {
        kvfeed::Error::StartTsBelowGcSafePoint { .. } => Failure::usage(error.to_string()),
        error => Failure::runtime(error.to_string()),
    }
}
