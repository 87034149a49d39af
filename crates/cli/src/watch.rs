//! `kvfeed watch`: subscribe one span of a real (or simulated) cluster and print its events.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kvfeed::{Client, Config, Event, TlsConfig};
use kvfeed_span::{EncodedKey, Span};

use crate::Failure;
use crate::output::{Format, unhex, write_event};

/// Arguments of `kvfeed watch`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["table", "span"])))]
pub(crate) struct Args {
    /// PD endpoints, comma separated.
    #[arg(long, value_delimiter = ',', required = true, value_name = "HOST:PORT")]
    pd: Vec<String>,
    /// Watch the record range of this TiDB table id.
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    table: Option<i64>,
    /// Watch START..END: memcomparable-encoded keys in hex, an empty side meaning unbounded.
    #[arg(long, value_name = "START_HEX..END_HEX")]
    span: Option<String>,
    /// The start ts (default: PD's current timestamp).
    #[arg(long, value_name = "TS")]
    start_ts: Option<u64>,
    /// Exit 0 once the resolved ts reaches TS.
    #[arg(long, value_name = "TS")]
    until_resolved: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Serve Prometheus metrics on PORT (127.0.0.1) or HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
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
    /// Seconds a region's incremental scan may go without ending before the region is
    /// deregistered and requested again (a wedged store). At least 1.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    region_stuck_timeout: u64,
    /// The name of the PD service GC safe point held while watching (`kvfeed-NAME`); a
    /// restarted watch that gives the same name takes its predecessor's over. Default: a name
    /// unique to the process.
    #[arg(long, value_name = "NAME")]
    gc_service_name: Option<String>,
    /// MiB the client may hold on the way (decoded events and rows not yet printed); reading
    /// from TiKV pauses beyond it. At least 1.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    memory_quota: usize,
    /// Where prewrite values past a quarter of the memory quota wait for their commits (one huge
    /// transaction need not fit memory): anonymous temporary files, gone when the watch ends.
    /// Default: the system's temporary directory (if that is tmpfs, spilled values stay in
    /// memory: name a directory on disk).
    #[arg(long, value_name = "DIR", conflicts_with = "no_spill")]
    spill_dir: Option<PathBuf>,
    /// Keep every prewrite in memory, however large a transaction is.
    #[arg(long)]
    no_spill: bool,
    /// Seconds the GC safe point outlives a watch that was killed. At least 120.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    gc_ttl: u64,
}

/// The span of `--table` or `--span`.
fn span_of(args: &Args) -> Result<Span, Failure> {
    if let Some(table) = args.table {
        if table <= 0 {
            return Err(Failure::usage(format!(
                "unknown table {table}: TiDB table ids are positive integers"
            )));
        }
        return Ok(kvfeed_span::table::table_span(table));
    }
    let text = args.span.as_deref().unwrap_or_default();
    parse_span(text).map_err(Failure::Usage)
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

fn tls_of(args: &Args) -> Result<Option<TlsConfig>, Failure> {
    let Some(ca) = &args.ca else { return Ok(None) };
    let files = [Some(ca), args.cert.as_ref(), args.key.as_ref()];
    for file in files.into_iter().flatten() {
        std::fs::File::open(file).map_err(|error| {
            Failure::usage(format!("cannot read TLS file {}: {error}", file.display()))
        })?;
    }
    Ok(Some(TlsConfig {
        ca_file: ca.clone(),
        client_identity: args
            .cert
            .clone()
            .zip(args.key.clone())
            .map(|(cert_file, key_file)| kvfeed::ClientIdentity { cert_file, key_file }),
        domain_name: None,
    }))
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let span = span_of(&args)?;
    let tls = tls_of(&args)?;
    let metrics_addr = match &args.metrics_addr {
        Some(text) => Some(crate::metrics_http::parse_listen_addr(text).map_err(Failure::Usage)?),
        None => None,
    };
    if args.region_stuck_timeout == 0 {
        return Err(Failure::usage("--region-stuck-timeout must be at least 1 second"));
    }
    let memory_quota = match args.memory_quota.checked_mul(1 << 20) {
        Some(bytes) if args.memory_quota >= 1 && bytes <= (usize::MAX >> 4) => bytes,
        _ => return Err(Failure::usage("--memory-quota must be at least 1 (MiB) and fit memory")),
    };
    if args.gc_ttl < 120 {
        return Err(Failure::usage("--gc-ttl must be at least 120 seconds"));
    }
    if args.gc_service_name.as_ref().is_some_and(String::is_empty) {
        return Err(Failure::usage("--gc-service-name must not be empty"));
    }
    let mut config = Config::new(args.pd.iter().cloned());
    config.cluster_id = args.cluster_id;
    config.gc_service_name.clone_from(&args.gc_service_name);
    config.gc_ttl = Duration::from_secs(args.gc_ttl);
    config.memory_quota = memory_quota;
    if args.no_spill {
        config.spill_dir = None;
    } else if let Some(dir) = &args.spill_dir {
        config.spill_dir = Some(dir.clone());
    }
    config.region_stuck_timeout = Some(Duration::from_secs(args.region_stuck_timeout));
    config.tls = tls;
    if args.any_store_version {
        config.store_versions = None;
    }
    let timeout = Duration::from_secs(args.timeout.max(1));
    config.timeout = timeout.min(Duration::from_secs(3));
    let pd = args.pd.join(",");
    let client = match tokio::time::timeout(timeout, Client::connect(config)).await {
        Ok(Ok(client)) => client,
        Ok(Err(kvfeed::Error::Config(problem))) => return Err(Failure::usage(problem)),
        Ok(Err(error)) => return Err(Failure::runtime(format!("cannot use PD at {pd}: {error}"))),
        Err(_) => {
            return Err(Failure::runtime(format!(
                "cannot reach PD at {pd} within {} s",
                timeout.as_secs()
            )));
        }
    };
    if let Some(addr) = metrics_addr {
        let metrics = client.clone();
        let bound = crate::metrics_http::serve(addr, move || metrics.metrics_text())
            .await
            .map_err(|error| Failure::runtime(format!("cannot listen on {addr}: {error}")))?;
        tracing::info!(%bound, "serving metrics");
    }
    let runner = {
        let client = client.clone();
        tokio::spawn(async move { client.run().await })
    };
    let result = watch(&client, span, &args).await;
    client.shutdown();
    let _ = runner.await;
    result
}

async fn watch(client: &Client, span: Span, args: &Args) -> Result<(), Failure> {
    let start_ts = match args.start_ts {
        Some(ts) => ts,
        None => client
            .current_ts()
            .await
            .map_err(|error| Failure::runtime(format!("no timestamp from PD: {error}")))?,
    };
    if args.until_resolved.is_some_and(|until| until <= start_ts) {
        return Ok(());
    }
    let mut subscription =
        client.subscribe(span.clone(), start_ts).await.map_err(|error| match error {
            // The argument cannot be used: the history it names may be gone.
            kvfeed::Error::StartTsBelowGcSafePoint { .. } => Failure::usage(error.to_string()),
            error => Failure::runtime(error.to_string()),
        })?;
    tracing::info!(?span, start_ts, "watching");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            event = subscription.recv() => event,
            _ = &mut interrupted => return Ok(()),
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(error)) => return Err(Failure::runtime(error.to_string())),
            None => return Err(Failure::runtime("the subscription ended")),
        };
        if write_event(&mut out, args.format, &event).is_err() {
            return Ok(()); // stdout closed (e.g. piped into `head`): nothing more to do.
        }
        if let Event::Resolved(ts) = event {
            if out.flush().is_err() {
                return Ok(());
            }
            if args.until_resolved.is_some_and(|until| ts >= until) {
                return Ok(());
            }
        }
    }
}
