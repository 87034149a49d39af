//! `kvfeed watch`: subscribe one span of a real (or simulated) cluster and print its events, or
//! TiDB tables by name and print their decoded rows and DDL.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kvfeed::{Client, Event};
use kvfeed_cli::tso_age_ms;
use kvfeed_span::Span;
use kvfeed_tidb_watch::{TableEvent, TableName, WatchError, Watcher};

use crate::Failure;
use crate::checkpoint::CheckpointFile;
use crate::connect::{ConnectArgs, SpanArgs, Target, read_ts, start_failure};
use crate::destination::{Destination, Stopped};
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
    /// Print only these changes: put and/or delete, comma separated (for tables by name, put
    /// is an insert or an update). Default: both.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "OPS")]
    ops: Vec<OpFilter>,
    /// Do not print resolved-ts lines (they still drive `--checkpoint` and
    /// `--until-resolved`).
    #[arg(long)]
    no_resolved: bool,
    /// Seconds without a new resolved ts before a status line on stderr says so (and then
    /// again every as many seconds). At least 1.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    status_every: u64,
    /// Exit 1 after this many seconds without a new resolved ts (an outage that does not end).
    /// Checked every `--status-every` seconds.
    #[arg(long, value_name = "SECS")]
    give_up_after: Option<u64>,
    /// Print timestamps as JSON strings: consumers that read numbers as doubles (jq,
    /// JavaScript) lose precision above 2^53, and TiDB timestamps are above it.
    #[arg(long)]
    ts_as_string: bool,
    /// Print to FILE instead of stdout (appending to it if it exists).
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Rotate `--output` once it would grow past SIZE (bytes, or with K, M, G): FILE becomes
    /// FILE.1, FILE.1 becomes FILE.2, and so on, between two lines.
    #[arg(long, value_name = "SIZE", requires = "output", value_parser = crate::destination::parse_size)]
    rotate_size: Option<u64>,
    /// How many rotated files to keep (FILE.1 ..); older ones are removed.
    #[arg(long, default_value_t = 5, value_name = "N", requires = "rotate_size")]
    rotate_keep: usize,
    /// Serve Prometheus metrics on PORT (127.0.0.1) or HOST:PORT.
    #[arg(long, env = "KVFEED_METRICS_ADDR", value_name = "ADDR")]
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
    if args.status_every == 0 || args.give_up_after == Some(0) {
        return Err(Failure::usage("--status-every and --give-up-after must be at least 1 second"));
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
    // Before connecting: an output that cannot be written is found at once.
    let out = Destination::open(args.output.as_deref(), args.rotate_size, args.rotate_keep)
        .map_err(Failure::usage)?;
    let (client, runner) = args.connect.connect(config).await?;
    // The last resolved ts printed (0: none yet), for `/readyz` and the metrics, and the rows.
    let printed = Arc::new(AtomicU64::new(0));
    let rows = Arc::new(RowsPrinted::default());
    if let Some(addr) = metrics_addr {
        let bound = crate::metrics_http::serve(addr, endpoints(&client, &printed, &rows))
            .await
            .map_err(|error| Failure::runtime(format!("cannot listen on {addr}: {error}")))?;
        tracing::info!(%bound, "serving metrics");
    }
    let mut sink = Printed {
        out,
        checkpoint: checkpoint.as_mut(),
        resolved: &printed,
        rows: &rows,
        since: Instant::now(),
    };
    let name = args.what.table_id_name();
    let result = match target {
        Target::Span(span) => watch(&client, span, name, &args, resume_from, &mut sink).await,
        Target::Tables(tables) => {
            watch_tables(&client, &tables, &args, resume_from, &mut sink).await
        }
    };
    let saved = checkpoint.as_mut().map_or(Ok(()), CheckpointFile::flush);
    client.shutdown();
    // Bounded: with PD gone, removing the GC safe point would wait for PD's timeout (it
    // expires with its TTL instead).
    let _ = tokio::time::timeout(Duration::from_secs(2), runner).await;
    result.and(saved)
}

async fn watch(
    client: &Client,
    span: Span,
    name: Option<String>,
    args: &Args,
    resume_from: Option<u64>,
    printed: &mut Printed<'_>,
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
    let subscription = subscription.map_err(start_failure)?;
    if let Some(name) = name {
        client.name_subscription(subscription.id(), &name);
    }
    tracing::info!(?span, start_ts, "watching");
    print(client, args, printed, Feed::Raw(subscription)).await
}

/// What a watch prints from: a raw subscription, or TiDB tables by name.
enum Feed {
    Raw(kvfeed::Subscription),
    /// Boxed: a watcher is several times a subscription's size.
    Tables(Box<Watcher>),
}

/// One printable item of a feed: its line (`None`: nothing to print, or filtered out) and the
/// ts up to which everything is printed once it is (a resolved ts, a snapshot's end).
struct Item {
    line: Option<Vec<u8>>,
    /// What a row line is (counted in `kvfeed_watch_rows_total`).
    op: Option<RowOp>,
    complete_up_to: Option<u64>,
}

/// The kinds of row lines a watch prints, by which `kvfeed_watch_rows_total` counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowOp {
    Put,
    Delete,
    Insert,
    Update,
    Snapshot,
    Ddl,
}

impl RowOp {
    const ALL: [Self; 6] =
        [Self::Put, Self::Delete, Self::Insert, Self::Update, Self::Snapshot, Self::Ddl];

    fn label(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Delete => "delete",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Snapshot => "snapshot",
            Self::Ddl => "ddl",
        }
    }
}

/// Row lines printed, by [`RowOp`] (indexed by its position in [`RowOp::ALL`]).
#[derive(Debug, Default)]
struct RowsPrinted([AtomicU64; RowOp::ALL.len()]);

impl RowsPrinted {
    fn count(&self, op: RowOp) {
        self.0[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text of the counter.
    fn render(&self) -> String {
        let mut text = "# HELP kvfeed_watch_rows_total Row lines printed, by op.\n\
                        # TYPE kvfeed_watch_rows_total counter\n"
            .to_owned();
        for op in RowOp::ALL {
            let count = self.0[op as usize].load(Ordering::Relaxed);
            text.push_str(&format!("kvfeed_watch_rows_total{{op=\"{}\"}} {count}\n", op.label()));
        }
        text
    }
}

impl Feed {
    /// The next item; `Err` when the feed failed or ended.
    async fn next(&mut self, args: &Args) -> Result<Item, Failure> {
        match self {
            Self::Raw(subscription) => {
                let event = received(subscription.recv().await, "the subscription ended")?;
                let shown = match &event {
                    Event::Row(row) => args.shows(row.op == kvfeed::Op::Delete),
                    Event::Resolved(_) => !args.no_resolved,
                    _ => true,
                };
                let line = shown.then(|| {
                    let mut line = Vec::with_capacity(256);
                    // Writing into memory cannot fail.
                    let _ = write_event(&mut line, args.format, &event);
                    line
                });
                let op = match &event {
                    Event::Row(row) if row.op == kvfeed::Op::Delete => Some(RowOp::Delete),
                    Event::Row(_) => Some(RowOp::Put),
                    Event::Snapshot(_) => Some(RowOp::Snapshot),
                    _ => None,
                };
                // Everything at or below either is printed: a snapshot done is a checkpoint too.
                let complete_up_to = match event {
                    Event::Resolved(ts) | Event::SnapshotDone(ts) => Some(ts),
                    _ => None,
                };
                Ok(Item { line, op, complete_up_to })
            }
            Self::Tables(watcher) => {
                let event = received(watcher.recv().await, "the watch ended")?;
                let shown = match &event {
                    TableEvent::Insert(_) | TableEvent::Update(_) => args.shows(false),
                    TableEvent::Delete(_) => args.shows(true),
                    TableEvent::Resolved(_) => !args.no_resolved,
                    _ => true,
                };
                let line = shown.then(|| format!("{}\n", event.to_json_line()).into_bytes());
                let (op, complete_up_to) = match event {
                    TableEvent::Insert(_) => (Some(RowOp::Insert), None),
                    TableEvent::Update(_) => (Some(RowOp::Update), None),
                    TableEvent::Delete(_) => (Some(RowOp::Delete), None),
                    TableEvent::Ddl(_) => (Some(RowOp::Ddl), None),
                    TableEvent::Resolved(ts) => (None, Some(ts)),
                    _ => (None, None),
                };
                Ok(Item { line, op, complete_up_to })
            }
        }
    }
}

/// A stream's next event, its error, or its end (`ended`) as a failure.
fn received<T, E: std::fmt::Display>(
    next: Option<Result<T, E>>,
    ended: &str,
) -> Result<T, Failure> {
    match next {
        Some(Ok(event)) => Ok(event),
        Some(Err(error)) => Err(Failure::runtime(error.to_string())),
        None => Err(Failure::runtime(ended)),
    }
}

/// Prints `feed` to stdout (or `--output`) until it fails, stdout closes, a signal comes, or
/// `--until-resolved` is reached; reports stalls on the way (`--status-every`).
async fn print(
    client: &Client,
    args: &Args,
    printed: &mut Printed<'_>,
    mut feed: Feed,
) -> Result<(), Failure> {
    let interrupted = crate::signal::shutdown();
    let mut status = status_timer(args);
    tokio::pin!(interrupted);
    loop {
        let item = tokio::select! {
            item = feed.next(args) => item?,
            _ = &mut interrupted => return Ok(()),
            _ = status.tick() => {
                printed.check_progress(client, args).await?;
                continue;
            }
        };
        if let Some(line) = item.line {
            match write_line(&mut printed.out, args, &line) {
                Ok(()) => {}
                Err(Stopped::Closed) => return Ok(()),
                Err(Stopped::Failed(message)) => return Err(Failure::runtime(message)),
            }
            if let Some(op) = item.op {
                printed.rows.count(op);
            }
        }
        if let Some(ts) = item.complete_up_to
            && printed.complete_up_to(args, ts)?
        {
            return Ok(());
        }
    }
}

/// What `--ops` lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OpFilter {
    /// Puts (inserts and updates).
    Put,
    /// Deletes.
    Delete,
}

impl Args {
    /// Whether `--ops` shows a delete (`true`) or a put (`false`).
    fn shows(&self, delete: bool) -> bool {
        let op = if delete { OpFilter::Delete } else { OpFilter::Put };
        self.ops.is_empty() || self.ops.contains(&op)
    }
}

/// Writes one line, with its top-level timestamps as strings under `--ts-as-string`.
fn write_line(out: &mut Destination, args: &Args, line: &[u8]) -> Result<(), Stopped> {
    if args.ts_as_string && args.format == Format::Json {
        return out.write_line(quote_timestamps(line).as_bytes());
    }
    out.write_line(line)
}

/// The line with the numbers of its top-level `"start_ts"` and `"commit_ts"` fields (and the
/// `"ts"` of a resolved or snapshot-done line) quoted: the first of each, before a decoded
/// row's columns, which are left alone.
fn quote_timestamps(line: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(line).into_owned();
    let ts_line = ["{\"kind\":\"resolved\"", "{\"kind\":\"snapshot_done\""]
        .iter()
        .any(|kind| text.starts_with(kind));
    for field in ["\"ts\":", "\"start_ts\":", "\"commit_ts\":"] {
        if field == "\"ts\":" && !ts_line {
            continue;
        }
        let Some(at) = text.find(field) else { continue };
        let start = at + field.len();
        let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            text.insert(start + digits, '"');
            text.insert(start, '"');
        }
    }
    text
}

/// Where printed lines go, and a printed resolved ts: the checkpoint file, and the watch's own
/// record.
struct Printed<'a> {
    out: Destination,
    checkpoint: Option<&'a mut CheckpointFile>,
    resolved: &'a AtomicU64,
    rows: &'a RowsPrinted,
    /// When the last resolved ts was printed (or the watch started).
    since: Instant,
}

impl Printed<'_> {
    /// After the line of a resolved ts `ts`: flushes the output, saves the checkpoint and
    /// records `ts`; returns whether the watch is done (stdout closed, or `--until-resolved`
    /// reached).
    fn complete_up_to(&mut self, args: &Args, ts: u64) -> Result<bool, Failure> {
        // A checkpoint must not get ahead of what is on disk.
        match self.out.flush(self.checkpoint.is_some()) {
            Ok(()) => {}
            Err(Stopped::Closed) => return Ok(true),
            Err(Stopped::Failed(message)) => return Err(Failure::runtime(message)),
        }
        if let Some(file) = self.checkpoint.as_deref_mut() {
            file.printed(ts)?;
        }
        self.resolved.store(ts, Ordering::Release);
        self.since = Instant::now();
        Ok(args.until_resolved.is_some_and(|until| ts >= until))
    }

    /// On the status timer: after `--status-every` without a resolved ts, one line on stderr
    /// saying so (whether PD answers, the last resolved ts and its age); after
    /// `--give-up-after`, the watch fails.
    async fn check_progress(&self, client: &Client, args: &Args) -> Result<(), Failure> {
        let stalled = self.since.elapsed();
        if stalled < Duration::from_secs(args.status_every) {
            return Ok(());
        }
        let ts = self.resolved.load(Ordering::Acquire);
        let last = if ts == 0 {
            "no resolved ts yet".to_owned()
        } else {
            format!("last resolved ts {ts} (age {} s)", tso_age_ms(ts) / 1000)
        };
        let pd = tokio::time::timeout(Duration::from_secs(1), client.current_ts()).await;
        let pd = if matches!(pd, Ok(Ok(_))) { "PD answers" } else { "PD unreachable" };
        if let Some(limit) = args.give_up_after
            && stalled >= Duration::from_secs(limit)
        {
            return Err(Failure::runtime(format!(
                "gave up after {} s without progress ({pd}); {last}",
                stalled.as_secs()
            )));
        }
        eprintln!("no progress for {} s ({pd}), retrying; {last}", stalled.as_secs());
        Ok(())
    }
}

/// The timer `check_progress` runs on: every `--status-every` seconds, from one period on.
fn status_timer(args: &Args) -> tokio::time::Interval {
    let every = Duration::from_secs(args.status_every.max(1));
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// A watch is ready once the resolved ts it printed is this fresh (a resolved ts above the
/// start ts also means every region was initialized).
const READY_LAG: Duration = Duration::from_secs(15);

/// What `--metrics-addr` serves: the client's metrics, the process's, the build, the printed
/// resolved ts and rows, and readiness.
fn endpoints(
    client: &Client,
    printed: &Arc<AtomicU64>,
    rows: &Arc<RowsPrinted>,
) -> crate::metrics_http::Endpoints {
    let (client, resolved, rows) = (client.clone(), Arc::clone(printed), Arc::clone(rows));
    let process = crate::metrics_http::ProcessMetrics::new();
    let metrics = Box::new(move || {
        format!(
            "{}{}{}# HELP kvfeed_build_info The kvfeed command's version and commit.\n\
             # TYPE kvfeed_build_info gauge\n\
             kvfeed_build_info{{version=\"{}\",commit=\"{}\"}} 1\n\
             # HELP kvfeed_watch_resolved_ts The last resolved ts printed (0: none yet).\n\
             # TYPE kvfeed_watch_resolved_ts gauge\n\
             kvfeed_watch_resolved_ts {}\n",
            client.metrics_text(),
            process.text(),
            rows.render(),
            env!("CARGO_PKG_VERSION"),
            env!("KVFEED_COMMIT"),
            resolved.load(Ordering::Acquire)
        )
    });
    let resolved = Arc::clone(printed);
    let ready = Box::new(move || {
        let ts = resolved.load(Ordering::Acquire);
        ts > 0 && u128::from(tso_age_ms(ts)) <= READY_LAG.as_millis()
    });
    crate::metrics_http::Endpoints { metrics, ready }
}

/// `watch --table db.tbl ..`: decoded rows and DDL as JSON lines, and the resolved ts.
async fn watch_tables(
    client: &Client,
    tables: &[TableName],
    args: &Args,
    resume_from: Option<u64>,
    printed: &mut Printed<'_>,
) -> Result<(), Failure> {
    let start_ts = match resume_from {
        Some(ts) => ts,
        None => read_ts(client, args.start_ts).await?,
    };
    if args.until_resolved.is_some_and(|until| until <= start_ts) {
        return Ok(());
    }
    let watcher = Watcher::start(client, tables, start_ts).await.map_err(|error| match error {
        WatchError::Client(error) => start_failure(error),
        other => Failure::runtime(other.to_string()),
    })?;
    print(client, args, printed, Feed::Tables(Box::new(watcher))).await
}

#[cfg(test)]
mod tests {
    use super::quote_timestamps;

    #[test]
    fn timestamps_are_quoted_and_columns_left_alone() {
        assert_eq!(
            quote_timestamps(br#"{"kind":"resolved","ts":470919235803283457}"#),
            r#"{"kind":"resolved","ts":"470919235803283457"}"#
        );
        assert_eq!(
            quote_timestamps(br#"{"kind":"row","op":"put","key":"74","start_ts":5,"commit_ts":6}"#),
            r#"{"kind":"row","op":"put","key":"74","start_ts":"5","commit_ts":"6"}"#
        );
        assert_eq!(
            quote_timestamps(br#"{"kind":"insert","table":"d.t","commit_ts":7,"before":null,"after":{"ts":1,"commit_ts":2}}"#),
            r#"{"kind":"insert","table":"d.t","commit_ts":"7","before":null,"after":{"ts":1,"commit_ts":2}}"#
        );
    }
}
