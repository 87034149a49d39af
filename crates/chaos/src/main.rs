//! `kvfeed-chaos --seeds N [--first S] [--duration S]`: runs seeds `S..S+N` one after the
//! other, printing one line per seed; exits 1 if any seed found a violation.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use kvfeed_chaos::{ChaosConfig, run_seed};

fn main() -> ExitCode {
    if let Ok(filter) = std::env::var("KVFEED_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut seeds, mut first, mut duration) = (10u64, 1u64, 30u64);
    let mut pairs = args.chunks(2);
    for pair in pairs.by_ref() {
        let value = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), value) {
            ("--seeds", Some(v)) => seeds = v,
            ("--first", Some(v)) => first = v,
            ("--duration", Some(v)) => duration = v,
            _ => {
                eprintln!("usage: kvfeed-chaos [--seeds N] [--first SEED] [--duration S]");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let Ok(runtime) = runtime else {
        eprintln!("error: cannot start the async runtime");
        return ExitCode::from(1);
    };
    let started = Instant::now();
    let mut failed = Vec::new();
    for seed in first..first + seeds {
        let config = ChaosConfig::new(seed, Duration::from_secs(duration));
        let run = Instant::now();
        match runtime.block_on(run_seed(&config)) {
            Ok(outcome) => match &outcome.violation {
                None => println!(
                    "seed {seed}: ok ({} faults, {} rows expected, {} delivered, {} TiDB rows and \
                     {} DDL decoded, GC safe point {} ms behind the end, {:.1} s)",
                    outcome.faults.len(),
                    outcome.expected,
                    outcome.delivered,
                    outcome.decoded_rows,
                    outcome.ddl_events,
                    outcome.gc_behind_ms,
                    run.elapsed().as_secs_f64()
                ),
                Some(violation) => {
                    println!("seed {seed}: FAILED: {violation}");
                    println!("  faults: {:?}", outcome.faults);
                    failed.push(seed);
                }
            },
            Err(error) => {
                println!("seed {seed}: FAILED to run: {error}");
                failed.push(seed);
            }
        }
    }
    println!(
        "{} of {seeds} seeds passed in {:.0} s{}",
        seeds as usize - failed.len(),
        started.elapsed().as_secs_f64(),
        if failed.is_empty() { String::new() } else { format!("; failed: {failed:?}") }
    );
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
