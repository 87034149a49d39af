//! `kvfeed snapshot`: print a span as of a ts (`snapshot` lines in key order, then
//! `snapshot_done`), with a progress bar on stderr when it is a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use kvfeed::{Client, Event};
use kvfeed_span::Span;

use crate::Failure;
use crate::connect::{ConnectArgs, SpanArgs, read_ts, start_failure};
use crate::output::{Format, write_event};

/// Arguments of `kvfeed snapshot`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    what: SpanArgs,
    /// The read ts (default: PD's current timestamp).
    #[arg(long, value_name = "TS")]
    ts: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Keys per page read from a region (`KvScan` limit). At least 1.
    #[arg(long, default_value_t = 1024, value_name = "KEYS")]
    page_size: u32,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let span = args.what.span()?;
    if args.page_size == 0 {
        return Err(Failure::usage("--page-size must be at least 1"));
    }
    let mut config = args.connect.config()?;
    config.snapshot_page_size = args.page_size;
    let (client, runner) = args.connect.connect(config).await?;
    let result = snapshot(&client, span, &args).await;
    client.shutdown();
    // Bounded: with PD gone, removing the GC safe point would wait for PD's timeout.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), runner).await;
    result
}

async fn snapshot(client: &Client, span: Span, args: &Args) -> Result<(), Failure> {
    let ts = read_ts(client, args.ts).await?;
    let mut snapshot = client.snapshot(span, ts).await.map_err(start_failure)?;
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} snapshot at {prefix}: {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(ts.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let interrupted = crate::signal::shutdown();
    tokio::pin!(interrupted);
    let mut shown = std::time::Instant::now();
    let result = loop {
        let row = tokio::select! {
            row = snapshot.recv() => row,
            _ = &mut interrupted => break Ok(()),
        };
        let event = match row {
            Some(Ok(row)) => Event::Snapshot(row),
            Some(Err(error)) => break Err(Failure::runtime(error.to_string())),
            None => Event::SnapshotDone(ts),
        };
        if write_event(&mut out, args.format, &event).is_err() {
            break Ok(()); // stdout closed (e.g. piped into `head`).
        }
        if let Some(bar) = &progress
            && shown.elapsed() >= Duration::from_millis(100)
        {
            shown = std::time::Instant::now();
            let p = snapshot.progress();
            bar.set_message(format!("{}/{} regions, {} rows", p.parts_done, p.parts_known, p.rows));
        }
        if matches!(event, Event::SnapshotDone(_)) {
            break out.flush().map_err(|error| Failure::runtime(format!("stdout: {error}")));
        }
    };
    if let Some(bar) = progress {
        let p = snapshot.progress();
        bar.finish_with_message(format!(
            "{}/{} regions, {} rows",
            p.parts_done, p.parts_known, p.rows
        ));
    }
    result
}
