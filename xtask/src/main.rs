//! `cargo xtask`: the project's automation, written in Rust so it runs the same everywhere.
//!
//! Subcommands:
//! - `ci`: every check CI runs, in order, stopping at the first failure.
//! - `tidy`: layout rules (every module has a `//!` doc; no file reaches into another crate
//!   by path).
//! - `package`: `cargo package` of every publishable crate (the packaging step of `ci`).
//! - `codegen [--check]`: regenerate `crates/proto/src/generated/` from `proto/`, or check that the
//!   committed code is what the protos give.
//! - `fuzz TARGET [--time S]`: run one cargo-fuzz target (needs nightly and cargo-fuzz).
//! - `bench [AREA]`: run the criterion benchmarks, all of them or one area.
//! - `bench scale [--regions N] [--tables T] [--stores S] [--steady SECS]`: the client at scale
//!   against `kvfeed sim serve` in another process (release builds).
//! - `bench spill [--mib N]`: one transaction of N MiB (default 2048) through a client with a
//!   128 MiB memory quota in a process of its own (the `huge_txn` test, release build): rows,
//!   peak RSS, bytes spilled.
//! - `bench plateau [--quota-mib M] [--stall S] [--drain S]`: a stalled reader against a fast
//!   writer (`kvfeed sim serve` with 4 KiB values): the client's RSS over time.
//! - `demo [ARGS..]`: build the `kvfeed` command in release mode and run `kvfeed demo ARGS..`.
//! - `chaos [--seeds N] [--first SEED] [--duration S]`: seeded chaos runs of the client against
//!   the simulator (release build); CI runs a short subset as a test of `kvfeed-chaos`.

mod ci;
mod codegen;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["ci"] => ci::run(),
        ["tidy"] => tidy::run(),
        ["package"] => ci::package(),
        ["codegen"] => codegen::run(codegen::Mode::Write),
        ["codegen", "--check"] => codegen::run(codegen::Mode::Check),
        ["fuzz", target, rest @ ..] => fuzz(target, parse_time(rest)?),
        ["fuzz"] => fuzz_list(),
        ["bench", "scale", rest @ ..] => bench_scale(rest),
        ["bench", "spill", rest @ ..] => bench_spill(rest),
        ["bench", "plateau", rest @ ..] => bench_plateau(rest),
        ["bench", rest @ ..] => bench(rest.first().copied()),
        ["chaos", rest @ ..] => run_cmd(
            cargo().args(["run", "--release", "--quiet", "-p", "kvfeed-chaos", "--"]).args(rest),
        ),
        ["demo", rest @ ..] => run_cmd(
            cargo()
                .args(["run", "--release", "--quiet", "-p", "kvfeed-cli", "--", "demo"])
                .args(rest),
        ),
        _ => {
            eprintln!("{USAGE}");
            bail!("unknown or missing subcommand")
        }
    }
}

const USAGE: &str = "usage: cargo xtask <ci | tidy | package | codegen [--check] | fuzz [TARGET [--time S]] | bench [AREA | scale | spill | plateau] [ARGS..] | demo [ARGS..] | chaos [ARGS..]>";

/// The workspace root (the parent of this crate's directory).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

/// Runs `cmd` in the workspace root, failing with the command line when it does not succeed.
pub(crate) fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status =
        cmd.current_dir_if_unset().status().with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

trait CurrentDirIfUnset {
    fn current_dir_if_unset(&mut self) -> &mut Self;
}

impl CurrentDirIfUnset for Command {
    fn current_dir_if_unset(&mut self) -> &mut Self {
        if self.get_current_dir().is_none() {
            self.current_dir(root());
        }
        self
    }
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

fn parse_time(rest: &[&str]) -> anyhow::Result<u64> {
    match rest {
        [] => Ok(60),
        ["--time", secs] => {
            secs.parse().with_context(|| format!("--time takes seconds, got {secs}"))
        }
        _ => bail!("{USAGE}"),
    }
}

/// The names of the fuzz targets (the files of `fuzz/fuzz_targets/`).
pub(crate) fn fuzz_targets() -> anyhow::Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            names.push(path.file_stem().unwrap_or_default().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn fuzz_list() -> anyhow::Result<()> {
    for name in fuzz_targets()? {
        println!("{name}");
    }
    Ok(())
}

/// Whether a nightly toolchain with cargo-fuzz is installed (fuzzing needs both).
pub(crate) fn have_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs one fuzz target for `secs` seconds on nightly, with the committed corpus as seeds.
pub(crate) fn fuzz(target: &str, secs: u64) -> anyhow::Result<()> {
    if !have_cargo_fuzz() {
        bail!("fuzzing needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`)");
    }
    let fuzz_dir = root().join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    run_cmd(
        Command::new("cargo")
            .env_remove("RUSTUP_TOOLCHAIN")
            .current_dir(&fuzz_dir)
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg("-print_final_stats=1"),
    )
}

/// `bench scale`: starts `kvfeed sim serve` with the requested layout (no workload, resolved ts
/// every second) and runs the `scale` binary of `kvfeed-benches` against it.
fn bench_scale(rest: &[&str]) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let mut layout = vec![("--regions", "100000"), ("--tables", "1"), ("--stores", "3")];
    let mut steady = "60";
    for pair in rest.chunks(2) {
        match pair {
            ["--steady", value] => steady = value,
            [name, value] => match layout.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value,
                None => bail!("unknown option {name}"),
            },
            _ => bail!(
                "usage: cargo xtask bench scale [--regions N] [--tables T] [--stores S] [--steady SECS]"
            ),
        }
    }
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "kvfeed-cli",
        "-p",
        "kvfeed-benches",
        "--bin",
        "kvfeed",
        "--bin",
        "scale",
    ]))?;
    let bin = root().join("target/release");
    let mut serve = Command::new(bin.join("kvfeed"));
    serve.args(["sim", "serve", "--rate", "0", "--resolved-interval-ms", "1000"]);
    for (name, value) in &layout {
        serve.args([name, value]);
    }
    let mut serve =
        serve.stdout(std::process::Stdio::piped()).spawn().context("start kvfeed sim serve")?;
    let mut pd = String::new();
    std::io::BufReader::new(serve.stdout.take().context("serve stdout")?).read_line(&mut pd)?;
    let tables = layout[1].1;
    let result = run_cmd(Command::new(bin.join("scale")).args([
        "--pd",
        pd.trim(),
        "--tables",
        tables,
        "--steady",
        steady,
    ]));
    let _ = Command::new("kill").args(["-INT", &serve.id().to_string()]).status();
    let _ = serve.wait();
    result
}

/// `bench spill`: the huge-transaction test in release mode, with its figures printed.
fn bench_spill(rest: &[&str]) -> anyhow::Result<()> {
    let mib = match rest {
        [] => "2048",
        ["--mib", mib] => mib,
        _ => bail!("usage: cargo xtask bench spill [--mib N]"),
    };
    run_cmd(
        cargo()
            .args(["test", "--release", "-p", "kvfeed", "--test", "huge_txn", "--", "--nocapture"])
            .env("KVFEED_HUGE_TXN_MIB", mib),
    )
}

/// `bench plateau`: starts `kvfeed sim serve` with a heavy workload (4 KiB values) and runs the
/// `plateau` binary of `kvfeed-benches` against it.
fn bench_plateau(rest: &[&str]) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "kvfeed-cli",
        "-p",
        "kvfeed-benches",
        "--bin",
        "kvfeed",
        "--bin",
        "plateau",
    ]))?;
    let bin = root().join("target/release");
    let mut serve = Command::new(bin.join("kvfeed"))
        .args(["sim", "serve", "--stores", "3", "--regions", "16", "--rate", "2000"])
        .args(["--value-len", "4096", "--resolved-interval-ms", "200"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start kvfeed sim serve")?;
    let mut pd = String::new();
    std::io::BufReader::new(serve.stdout.take().context("serve stdout")?).read_line(&mut pd)?;
    let result = run_cmd(Command::new(bin.join("plateau")).args(["--pd", pd.trim()]).args(rest));
    let _ = Command::new("kill").args(["-INT", &serve.id().to_string()]).status();
    let _ = serve.wait();
    result
}

fn bench(area: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "kvfeed-benches"]);
    if let Some(area) = area {
        cmd.args(["--bench", area]);
    }
    run_cmd(&mut cmd)
}
