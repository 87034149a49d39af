//! `kvfeed`: watch a TiKV cluster's row changes, run the simulated demo, or serve the simulator.
//!
//! Exit codes: 0 on success, 1 when the work failed (PD unreachable, a subscription failed, the
//! demo's verifier found a violation), 2 for unusable arguments. Errors are one line on stderr.

#![forbid(unsafe_code)]

mod checkpoint;
mod connect;
mod decode;
mod demo;
mod destination;
mod faults;
mod layout;
mod logging;
mod metrics_http;
mod output;
mod serve;
mod signal;
mod snapshot;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Stream row changes out of a TiKV cluster.
#[derive(Debug, Parser)]
#[command(
    name = "kvfeed",
    version = VERSION,
    about,
    propagate_version = true,
    after_help = "Environment: KVFEED_PD gives --pd; KVFEED_LOG (or RUST_LOG) gives the whole log \
                  filter, over -v/-q/--log-level (e.g. KVFEED_LOG=kvfeed=debug,h2=info); \
                  NO_COLOR turns colour off (it is on only when stderr is a terminal)."
)]
struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream a span's row changes and resolved timestamps to stdout.
    Watch(watch::Args),
    /// Print a span's keys and values as of a timestamp, in key order.
    Snapshot(snapshot::Args),
    /// Run a simulated cluster, a workload and a subscriber of every table, then verify.
    Demo(demo::Args),
    /// Decode one TiDB key-value pair against a TableInfo JSON file (prints one JSON line).
    Decode(decode::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The simulated cluster.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Run the simulated cluster and a workload until interrupted; prints PD's address first.
    Serve(serve::Args),
}

/// `kvfeed --version`: the package version and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KVFEED_COMMIT"), ")");

/// A failure the user can act on, with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Unusable arguments (exit 2).
    Usage(String),
    /// The work failed (exit 1).
    Runtime(String),
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self::Runtime(message.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Watch(args) => watch::run(args).await,
            Command::Snapshot(args) => snapshot::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Decode(args) => decode::run(&args),
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "kvfeed", &mut std::io::stdout());
                Ok(())
            }
            Command::Sim { command: SimCommand::Serve(args) } => serve::run(args).await,
        }
    });
    // Background work (streams, timers) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
