//! The client at scale against a simulated cluster in another process (so RSS is the client's
//! alone): `cargo xtask bench scale --regions N --tables T --stores S` starts
//! `kvfeed sim serve` and runs this with its PD address.
//!
//! Reports: time until every region is initialized (every subscription's resolved ts above
//! its start ts), time until every subscription's resolved ts passes a fresh TSO taken then,
//! client peak RSS and RSS per region, region requests per second, and the resolved-ts lag
//! p50/p99 over a steady period.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvfeed::{Client, Config};
use kvfeed_span::table::table_span;

/// (current RSS, peak RSS) in bytes, from /proc (Linux).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()))
        .unwrap_or(0)
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pd = args
        .iter()
        .position(|a| a == "--pd")
        .and_then(|i| args.get(i + 1))
        .ok_or("usage: scale --pd ADDR [--tables T] [--steady S]")?
        .clone();
    let tables = arg(&args, "--tables", 1).max(1);
    let steady = Duration::from_secs(arg(&args, "--steady", 60));

    let (rss_start, _) = rss();
    let mut config = Config::new([pd]);
    config.advance_interval = Duration::from_millis(100);
    let client = Client::connect(config).await?;
    let runner = {
        let client = client.clone();
        tokio::spawn(async move { client.run().await })
    };
    let (rss_connected, _) = rss();
    let start_ts = client.current_ts().await?;
    let started = Instant::now();
    let mut subscriptions = Vec::new();
    for table in 0..tables {
        subscriptions.push(client.subscribe(table_span(100 + table as i64), start_ts).await?);
    }
    // Drain the streams in the background (resolved events only: no workload).
    let ids: Vec<_> = subscriptions.iter().map(kvfeed::Subscription::id).collect();
    for mut subscription in subscriptions {
        tokio::spawn(async move { while subscription.recv().await.is_some() {} });
    }
    let totals = |client: &Client| {
        ids.iter().filter_map(|&id| client.stats(id)).fold((0, 0, u64::MAX, u64::MAX), |acc, s| {
            (
                acc.0 + s.regions,
                acc.1 + s.initialized,
                acc.2.min(s.resolved_ts),
                acc.3.min(s.published_ts),
            )
        })
    };
    let mut last_print = Instant::now();
    let initialized_after = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (regions, initialized, resolved, _) = totals(&client);
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!(
                "  {:.0} s: {initialized}/{regions} regions initialized",
                started.elapsed().as_secs_f64()
            );
        }
        if regions > 0 && initialized == regions && resolved > start_ts {
            break started.elapsed();
        }
    };
    let (regions, ..) = totals(&client);
    let requests = client
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("kvfeed_kvclient_region_request_count ").map(str::to_owned))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let target = client.current_ts().await?;
    let resolved_after = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (.., published) = totals(&client);
        if published >= target {
            break started.elapsed() - initialized_after;
        }
    };
    let (rss_ready, _) = rss();
    let mut lags = Vec::new();
    let steady_start = Instant::now();
    while steady_start.elapsed() < steady {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for &id in &ids {
            if let Some(stats) = client.stats(id) {
                lags.push(now_ms().saturating_sub(stats.published_ts >> 18));
            }
        }
    }
    lags.sort_unstable();
    let percentile =
        |p: usize| lags.get(lags.len().saturating_sub(1) * p / 100).copied().unwrap_or(0);
    let (rss_end, rss_peak) = rss();
    println!("regions subscribed         {regions} over {tables} table(s)");
    println!("all initialized after      {:.2} s", initialized_after.as_secs_f64());
    println!(
        "region requests            {requests:.0} ({:.0}/s until initialized)",
        requests / initialized_after.as_secs_f64()
    );
    println!("resolved ts past a fresh TSO {:.2} s later", resolved_after.as_secs_f64());
    println!(
        "client RSS                 {:.1} MiB at start, {:.1} MiB connected, {:.1} MiB ready, {:.1} MiB after the steady period, peak {:.1} MiB",
        mib(rss_start),
        mib(rss_connected),
        mib(rss_ready),
        mib(rss_end),
        mib(rss_peak)
    );
    println!(
        "client RSS per region      {:.0} bytes (ready - connected), {:.0} bytes (peak - connected)",
        rss_ready.saturating_sub(rss_connected) as f64 / regions.max(1) as f64,
        rss_peak.saturating_sub(rss_connected) as f64 / regions.max(1) as f64
    );
    println!(
        "resolved-ts lag (steady {} s) p50 {} ms, p99 {} ms",
        steady.as_secs(),
        percentile(50),
        percentile(99)
    );
    client.shutdown();
    let _ = runner.await;
    Ok(())
}
