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
    /// PD endpoints, comma separated.
    #[arg(long, value_delimiter = ',', required = true, value_name = "HOST:PORT")]
    pub(crate) pd: Vec<String>,
    /// The cluster id to expect (refuse any other cluster).
    #[arg(long, value_name = "ID")]
    cluster_id: Option<u64>,
    /// Seconds to wait for PD.
    #[arg(long, default_value_t = 10, value_name = "S")]
    timeout: u64,
    /// CA certificate (PEM) for TLS to PD and TiKV.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires_all = ["key", "ca"])]
    cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires_all = ["cert", "ca"])]
    key: Option<PathBuf>,
    /// Talk to TiKV stores of any version. By default only versions from 7.1.0-alpha up to
    /// 10.0.0 (excluded) are, as TiCDC; regions on other stores wait for an upgrade.
    #[arg(long)]
    any_store_version: bool,
    /// The name of the PD service GC safe point held while reading (`kvfeed-NAME`); a
    /// restarted command that gives the same name takes its predecessor's over. Default: a
    /// name unique to the process.
    #[arg(long, value_name = "NAME")]
    gc_service_name: Option<String>,
    /// Seconds the GC safe point outlives a command that was killed. At least 120.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    gc_ttl: u64,
    /// MiB the client may hold on the way (decoded events, pages read ahead, rows not yet
    /// printed); reading from TiKV pauses beyond it. At least 1.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    memory_quota: usize,
}

/// What to read: `--table` or `--span`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["table", "span"])))]
pub(crate) struct SpanArgs {
    /// A TiDB table: its id (raw rows of its record range), or `db.table` (decoded rows, the
    /// schema followed across DDL; repeat for several tables).
    #[arg(long, value_name = "ID|DB.TABLE", allow_negative_numbers = true)]
    table: Vec<String>,
    /// START..END: memcomparable-encoded keys in hex, an empty side meaning unbounded.
    #[arg(long, value_name = "START_HEX..END_HEX")]
    span: Option<String>,
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

/// Parses `START_HEX..END_HEX`.
pub(crate) fn parse_span(text: &str) -> Result<Span, String> {
    let (start, end) =
        text.split_once("..").ok_or_else(|| format!("span {text:?} is not START_HEX..END_HEX"))?;
    let key = |side: &str, hex: &str| -> Result<EncodedKey, String> {
        let bytes = unhex(hex).map_err(|error| format!("bad hex in the span's {side}: {error}"))?;
        kvfeed_span::key::decode(&bytes).map_err(|error| {
            format!("the span's {side} is not a memcomparable-encoded key: {error}")
        })?;
        Ok(EncodedKey::from_encoded(&bytes))
    };
    let (start, end) = (key("start", start)?, key("end", end)?);
    Span::new(start, end).map_err(|_| format!("span {text:?}: start must be below end"))
}

impl ConnectArgs {
    fn tls(&self) -> Result<Option<TlsConfig>, Failure> {
        let Some(ca) = &self.ca else { return Ok(None) };
        let files = [Some(ca), self.cert.as_ref(), self.key.as_ref()];
        for file in files.into_iter().flatten() {
            std::fs::File::open(file).map_err(|error| {
                Failure::usage(format!("cannot read TLS file {}: {error}", file.display()))
            })?;
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
        let mut config = Config::new(self.pd.iter().cloned());
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

/// The ts to read at: `ts`, or PD's current one.
pub(crate) async fn read_ts(client: &Client, ts: Option<u64>) -> Result<u64, Failure> {
    match ts {
        Some(ts) => Ok(ts),
        None => client
            .current_ts()
            .await
            .map_err(|error| Failure::runtime(format!("no timestamp from PD: {error}"))),
    }
}

/// An error of starting a read: a ts below the GC safe point is the argument's fault.
pub(crate) fn start_failure(error: kvfeed::Error) -> Failure {
    match error {
        kvfeed::Error::StartTsBelowGcSafePoint { .. } => Failure::usage(error.to_string()),
        error => Failure::runtime(error.to_string()),
    }
}
