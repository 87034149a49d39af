//! Logs on stderr: `-v`/`-q`/`--log-level` set the level of kvfeed's own crates (dependencies
//! stay at `warn`, so `-vv` is not a flood of HTTP/2 frames), `KVFEED_LOG` or `RUST_LOG` give a
//! whole `tracing` filter instead, `--log-format json` writes one JSON object per line, and
//! colour is used only when stderr is a terminal and `NO_COLOR` is not set.

use std::io::IsTerminal;

/// The logging flags every command takes.
#[derive(Debug, clap::Args)]
pub(crate) struct LogArgs {
    /// More detail in the logs of kvfeed's crates: -v info, -vv debug, -vvv trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors in the logs.
    #[arg(short, long, global = true, conflicts_with_all = ["verbose", "log_level"])]
    quiet: bool,
    /// The log level of kvfeed's crates: error, warn, info, debug or trace (dependencies stay
    /// at warn; KVFEED_LOG or RUST_LOG give a whole filter, e.g. `kvfeed=debug,h2=info`).
    #[arg(long, global = true, value_name = "LEVEL", conflicts_with = "verbose")]
    log_level: Option<tracing::Level>,
    /// The logs' format on stderr.
    #[arg(long, value_enum, global = true, default_value = "text")]
    log_format: LogFormat,
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The crates whose level `-v`, `-q` and `--log-level` set (their `tracing` targets).
const OWN_CRATES: &[&str] = &[
    "kvfeed",
    "kvfeed_base",
    "kvfeed_cli",
    "kvfeed_rangelock",
    "kvfeed_regioncache",
    "kvfeed_sim",
    "kvfeed_span",
    "kvfeed_tidb",
    "kvfeed_tidb_watch",
    "kvfeed_transport",
];

impl LogArgs {
    /// The filter: the environment's, or `warn` for dependencies and the chosen level for ours.
    fn filter(&self) -> String {
        if let Some(filter) = ["KVFEED_LOG", "RUST_LOG"].iter().find_map(|v| std::env::var(v).ok())
        {
            return filter;
        }
        let level = match (self.quiet, self.log_level, self.verbose) {
            (true, _, _) => tracing::Level::ERROR,
            (_, Some(level), _) => level,
            (_, None, 0) => tracing::Level::WARN,
            (_, None, 1) => tracing::Level::INFO,
            (_, None, 2) => tracing::Level::DEBUG,
            (_, None, _) => tracing::Level::TRACE,
        };
        let dependencies = if self.quiet { "error" } else { "warn" };
        let mut filter = dependencies.to_owned();
        for target in OWN_CRATES {
            filter.push_str(&format!(",{target}={level}"));
        }
        filter
    }

    /// Installs the subscriber on stderr.
    pub(crate) fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_new(self.filter())
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(colour);
        match self.log_format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().init(),
        }
    }
}
