//! `kvfeed watch`: subscribe one span of a real (or simulated) cluster and print its events, or
//! TiDB tables by name and print their decoded rows and DDL.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kvfeed::{Client, Event};
use kvfeed_span::Span;
use kvfeed_tidb_watch::{TableEvent, TableName, WatchError, Watcher};

use crate::Failure;
use crate::checkpoint::CheckpointFile;
use crate::connect::{ConnectArgs, SpanArgs, Target, read_ts, start_failure};
use crate::output::{Format, write_event};

/// Arguments of `kvfeed watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    what: SpanArgs,
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
    /// Seconds a region's incremental scan may go without ending before the region is
    /// deregistered and requested again (a wedged store). At least 1.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    region_stuck_timeout: u64,
    /// Where prewrite values past a quarter of the memory quota wait for their commits (one huge
    /// transaction need not fit memory): anonymous temporary files, gone when the watch ends.
    /// Default: the system's temporary directory (if that is tmpfs, spilled values stay in
    /// memory: name a directory on disk).
    #[arg(long, value_name = "DIR", conflicts_with = "no_spill")]
    spill_dir: Option<PathBuf>,
    /// Keep every prewrite in memory, however large a transaction is.
    #[arg(long)]
    no_spill: bool,
    /// Print the span as of the start ts first (`snapshot` lines, then `snapshot_done`), then
    /// the changes after it: together, the span's whole history from the start ts. Not when
    /// resuming from a `--checkpoint` file.
    #[arg(long)]
    snapshot: bool,
    /// Keep the last resolved ts printed and flushed in FILE (replaced atomically), and resume
    /// from it when FILE exists (instead of `--start-ts`): after a kill, the same command
    /// prints no row at or below the saved ts again and misses none. Without
    /// `--gc-service-name`, the GC safe point is named after FILE, so a restart takes over the
    /// one its predecessor held.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Milliseconds between two saves of the checkpoint file (0: after every resolved line).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    checkpoint_interval: u64,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let target = args.what.target()?;
    if let Target::Tables(_) = &target {
        if args.snapshot {
            return Err(Failure::usage("--snapshot reads raw keys: give --table ID or --span"));
        }
        if args.format == Format::Text {
            return Err(Failure::usage(
                "--format text prints raw rows; tables by name print JSON lines",
            ));
        }
    }
    let metrics_addr = match &args.metrics_addr {
        Some(text) => Some(crate::metrics_http::parse_listen_addr(text).map_err(Failure::Usage)?),
        None => None,
    };
    if args.region_stuck_timeout == 0 {
        return Err(Failure::usage("--region-stuck-timeout must be at least 1 second"));
    }
    let mut checkpoint = args
        .checkpoint
        .clone()
        .map(|path| CheckpointFile::new(path, Duration::from_millis(args.checkpoint_interval)));
    let resume_from = match &checkpoint {
        Some(file) => {
            file.check_writable()?;
            file.read()?
        }
        None => None,
    };
    let mut config = args.connect.config()?;
    if let Some(file) = &checkpoint {
        if config.gc_service_name.is_none() {
            config.gc_service_name = Some(file.service_name());
        }
        // A restart within the TTL finds the history above its checkpoint, after a stop too.
        config.gc_keep_on_shutdown = true;
    }
    if args.no_spill {
        config.spill_dir = None;
    } else if let Some(dir) = &args.spill_dir {
        config.spill_dir = Some(dir.clone());
    }
    config.region_stuck_timeout = Some(Duration::from_secs(args.region_stuck_timeout));
    let (client, runner) = args.connect.connect(config).await?;
    if let Some(addr) = metrics_addr {
        let metrics = client.clone();
        let bound = crate::metrics_http::serve(addr, move || metrics.metrics_text())
            .await
            .map_err(|error| Failure::runtime(format!("cannot listen on {addr}: {error}")))?;
        tracing::info!(%bound, "serving metrics");
    }
    let result = match target {
        Target::Span(span) => watch(&client, span, &args, resume_from, checkpoint.as_mut()).await,
        Target::Tables(tables) => {
            watch_tables(&client, &tables, &args, resume_from, checkpoint.as_mut()).await
        }
    };
    let saved = checkpoint.as_mut().map_or(Ok(()), CheckpointFile::flush);
    client.shutdown();
    let _ = runner.await;
    result.and(saved)
}

async fn watch(
    client: &Client,
    span: Span,
    args: &Args,
    resume_from: Option<u64>,
    mut checkpoint: Option<&mut CheckpointFile>,
) -> Result<(), Failure> {
    let snapshot = args.snapshot && resume_from.is_none();
    let start_ts = match resume_from {
        Some(ts) => ts,
        None => read_ts(client, args.start_ts).await?,
    };
    if !snapshot && args.until_resolved.is_some_and(|until| until <= start_ts) {
        return Ok(());
    }
    let subscription = if snapshot {
        client.subscribe_with_snapshot(span.clone(), start_ts).await
    } else {
        client.subscribe(span.clone(), start_ts).await
    };
    let mut subscription = subscription.map_err(start_failure)?;
    tracing::info!(?span, start_ts, "watching");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let interrupted = crate::signal::shutdown();
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
        // Everything at or below either is printed: a snapshot done is a checkpoint too.
        if let Event::Resolved(ts) | Event::SnapshotDone(ts) = event
            && complete_up_to(&mut out, checkpoint.as_deref_mut(), args, ts)?
        {
            return Ok(());
        }
    }
}

/// After the line of a resolved ts `ts`: flushes the output and saves the checkpoint; returns
/// whether the watch is done (stdout closed, or `--until-resolved` reached).
fn complete_up_to(
    out: &mut impl Write,
    checkpoint: Option<&mut CheckpointFile>,
    args: &Args,
    ts: u64,
) -> Result<bool, Failure> {
    if out.flush().is_err() {
        return Ok(true);
    }
    if let Some(file) = checkpoint {
        file.printed(ts)?;
    }
    Ok(args.until_resolved.is_some_and(|until| ts >= until))
}

/// `watch --table db.tbl ..`: decoded rows and DDL as JSON lines, and the resolved ts.
async fn watch_tables(
    client: &Client,
    tables: &[TableName],
    args: &Args,
    resume_from: Option<u64>,
    mut checkpoint: Option<&mut CheckpointFile>,
) -> Result<(), Failure> {
    let start_ts = match resume_from {
        Some(ts) => ts,
        None => read_ts(client, args.start_ts).await?,
    };
    if args.until_resolved.is_some_and(|until| until <= start_ts) {
        return Ok(());
    }
    let mut watcher =
        Watcher::start(client, tables, start_ts).await.map_err(|error| match error {
            WatchError::Client(error) => start_failure(error),
            other => Failure::runtime(other.to_string()),
        })?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let interrupted = crate::signal::shutdown();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            event = watcher.recv() => event,
            _ = &mut interrupted => return Ok(()),
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(error)) => return Err(Failure::runtime(error.to_string())),
            None => return Err(Failure::runtime("the watch ended")),
        };
        if writeln!(out, "{}", event.to_json_line()).is_err() {
            return Ok(()); // stdout closed: nothing more to do.
        }
        if let TableEvent::Resolved(ts) = event
            && complete_up_to(&mut out, checkpoint.as_deref_mut(), args, ts)?
        {
            return Ok(());
        }
    }
}
