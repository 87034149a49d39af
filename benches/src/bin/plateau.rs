//! The memory plateau: a fast writer and a stalled reader. `cargo xtask bench plateau` starts
//! `kvfeed sim serve` with a heavy workload and runs this with its PD address, so that RSS is
//! the client's alone.
//!
//! The client subscribes to the workload's table with a small memory quota and reads nothing for
//! `--stall` seconds while the cluster keeps writing: once the quota is full, the client stops
//! reading from the stores and its RSS must level off at about the quota plus its fixed
//! overhead, however much is written meanwhile. Then it reads for `--drain` seconds and the rows
//! flow again. Prints RSS and the quota's use once a second, then a summary.

use std::time::{Duration, Instant};

use kvfeed::{Client, Config, Event};
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

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const MIB: f64 = (1 << 20) as f64;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pd = args
        .iter()
        .position(|a| a == "--pd")
        .and_then(|i| args.get(i + 1))
        .expect("usage: plateau --pd ADDR [--quota-mib M] [--stall S] [--drain S]")
        .clone();
    let quota_mib = arg(&args, "--quota-mib", 128);
    let stall = Duration::from_secs(arg(&args, "--stall", 30));
    let drain = Duration::from_secs(arg(&args, "--drain", 10));
    let mut config = Config::new([pd]);
    config.memory_quota = usize::try_from(quota_mib << 20).expect("quota fits memory");
    let client = Client::connect(config).await.expect("connect to PD");
    let runner = tokio::spawn({
        let client = client.clone();
        async move { client.run().await }
    });
    let mut sub = client.subscribe(table_span(100), 0).await.expect("subscribe");
    // Wait for the first resolved ts: every region is streaming.
    loop {
        match sub.recv().await.expect("subscription open").expect("no error") {
            Event::Resolved(_) => break,
            _ => continue,
        }
    }
    let baseline = rss().0;
    println!(
        "plateau: quota {quota_mib} MiB, RSS before the stall {:.1} MiB; stalled for {} s",
        mib(baseline),
        stall.as_secs()
    );
    println!("{:>6} {:>10} {:>12} {:>10}", "t_s", "rss_mib", "buffered_mib", "phase");
    let start = Instant::now();
    let mut peak_buffered = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let report = |phase: &str, peak: &mut usize| {
        let buffered = client.buffered_bytes();
        *peak = (*peak).max(buffered);
        println!(
            "{:>6} {:>10.1} {:>12.1} {:>10}",
            start.elapsed().as_secs(),
            mib(rss().0),
            mib(buffered as u64),
            phase
        );
    };
    while start.elapsed() < stall {
        tick.tick().await;
        report("stalled", &mut peak_buffered);
    }
    let stalled_rss = rss().0;
    let (mut rows, mut bytes) = (0u64, 0u64);
    let drain_start = Instant::now();
    let mut next_report = drain_start + Duration::from_secs(1);
    while drain_start.elapsed() < drain {
        let deadline = tokio::time::Instant::from_std(next_report);
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(Ok(Event::Row(row)))) => {
                rows += 1;
                bytes += (row.key.len() + row.value.len()) as u64;
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("the subscription ended: {other:?}"),
        }
        if Instant::now() >= next_report {
            report("reading", &mut peak_buffered);
            next_report += Duration::from_secs(1);
        }
    }
    let (end_rss, peak_rss) = rss();
    println!(
        "plateau summary: quota {quota_mib} MiB; RSS before {:.1} MiB, at the end of the stall \
         {:.1} MiB, peak {:.1} MiB (peak - before = {:.1} MiB), after the drain {:.1} MiB; \
         buffered peak {:.1} MiB; drained {rows} rows ({:.1} MiB) in {} s",
        mib(baseline),
        mib(stalled_rss),
        mib(peak_rss),
        mib(peak_rss.saturating_sub(baseline)),
        mib(end_rss),
        mib(peak_buffered as u64),
        mib(bytes),
        drain.as_secs()
    );
    client.shutdown();
    runner.await.expect("run task").expect("run returns Ok");
}
