//! `cargo xtask ci`: the checks every submission must pass, in the order CI runs them.
//!
//! Each step prints its name and duration; the first failure stops the run and names the step.

use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::{cargo, fuzz, fuzz_targets, have_cargo_fuzz, root, run_cmd};

/// The no_std core crates that must build for `wasm32-unknown-unknown`.
const NO_STD_CRATES: &[&str] = &["kvfeed-span", "kvfeed-rangelock", "kvfeed-tidb"];

/// Workspace members that are test support or tooling: each must say `publish = false`, and
/// the packaging step leaves them out.
const UNPUBLISHED: &[&str] = &["kvfeed-chaos", "kvfeed-testkit", "kvfeed-benches", "xtask"];

/// Seconds each fuzz target runs in the smoke step (only where nightly and cargo-fuzz exist).
const FUZZ_SMOKE_SECS: u64 = 10;

/// A named check.
type Step = (&'static str, Box<dyn Fn() -> anyhow::Result<()>>);

pub(crate) fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let steps: Vec<Step> = vec![
        ("fmt", Box::new(|| run_cmd(cargo().args(["fmt", "--all", "--", "--check"])))),
        ("tidy", Box::new(crate::tidy::run)),
        (
            "clippy",
            Box::new(|| {
                run_cmd(cargo().args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
        ),
        ("test", Box::new(|| run_cmd(cargo().args(["test", "--workspace", "--locked"])))),
        (
            "doc",
            Box::new(|| {
                run_cmd(cargo().env("RUSTDOCFLAGS", "-D warnings").args([
                    "doc",
                    "--workspace",
                    "--no-deps",
                    "--locked",
                ]))
            }),
        ),
        ("codegen --check", Box::new(|| crate::codegen::run(crate::codegen::Mode::Check))),
        ("package (publishable crates)", Box::new(package)),
        (
            "wasm32 build of the no_std core",
            Box::new(|| {
                let mut cmd = cargo();
                cmd.args(["check", "--locked", "--target", "wasm32-unknown-unknown"]);
                for krate in NO_STD_CRATES {
                    cmd.args(["-p", krate]);
                }
                run_cmd(&mut cmd)
            }),
        ),
        ("fuzz targets build (stable)", Box::new(build_fuzz_targets)),
        (
            "benches build",
            Box::new(|| run_cmd(cargo().args(["bench", "--workspace", "--no-run", "--locked"]))),
        ),
        ("fuzz smoke (nightly only)", Box::new(fuzz_smoke)),
    ];
    for (name, step) in &steps {
        let step_started = Instant::now();
        println!("==> {name}");
        step().with_context(|| format!("ci step `{name}` failed"))?;
        println!("<== {name} ok in {:.1}s", step_started.elapsed().as_secs_f64());
    }
    println!("ci: all {} steps passed in {:.1}s", steps.len(), started.elapsed().as_secs_f64());
    Ok(())
}

/// A workspace member's package name and whether its manifest says `publish = false`.
fn member_manifests() -> anyhow::Result<Vec<(String, bool)>> {
    let root = root();
    let mut dirs = vec![root.join("xtask"), root.join("benches")];
    let crates = root.join("crates");
    for entry in
        std::fs::read_dir(&crates).with_context(|| format!("cannot read {}", crates.display()))?
    {
        let path = entry?.path();
        if path.join("Cargo.toml").is_file() {
            dirs.push(path);
        }
    }
    let mut members = Vec::new();
    for dir in dirs {
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        // The `[package]` table: up to the next table header.
        let package = text
            .split("\n[")
            .find(|table| table.trim_start_matches('[').starts_with("package]"))
            .with_context(|| format!("{} has no [package]", manifest.display()))?;
        let value = |key: &str| {
            package.lines().find_map(|line| {
                let (k, v) = line.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let name = value("name").with_context(|| format!("{} has no name", manifest.display()))?;
        members.push((name, value("publish").as_deref() == Some("false")));
    }
    members.sort();
    Ok(members)
}

/// Packages every publishable crate in one `cargo package` run (no verify build: the other steps
/// build everything), so each is checked as crates.io would take it: metadata, the files that go
/// in, and dependencies that all resolve with versions (our own crates through the local
/// overlay, so a publishable crate depending on an unpublished one fails here). Checks first
/// that the test-support and tooling crates say `publish = false`.
pub(crate) fn package() -> anyhow::Result<()> {
    let members = member_manifests()?;
    for name in UNPUBLISHED {
        match members.iter().find(|(member, _)| member == name) {
            Some((_, true)) => {}
            Some((_, false)) => {
                bail!("{name} is test support or tooling: it needs `publish = false`")
            }
            None => bail!("{name} is listed as unpublished but is not a workspace member"),
        }
    }
    let publishable: Vec<&str> = members
        .iter()
        .filter(|(_, unpublished)| !unpublished)
        .map(|(name, _)| name.as_str())
        .collect();
    if publishable.is_empty() {
        bail!("no publishable crate found");
    }
    println!("    {}", publishable.join(" "));
    let mut cmd = cargo();
    cmd.args(["package", "--no-verify", "--locked"]);
    for name in &publishable {
        cmd.args(["-p", name]);
    }
    let shown = format!("{cmd:?}");
    let output =
        cmd.current_dir(root()).output().with_context(|| format!("cannot start {shown}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    if !output.status.success() {
        bail!("{shown} failed with {}", output.status);
    }
    // Missing metadata (description, license, ...) is only a warning to cargo; not to us.
    if stderr.lines().any(|line| line.starts_with("warning")) {
        bail!("{shown} warned: a publishable crate is not ready for crates.io");
    }
    Ok(())
}

/// Builds the fuzz crate on stable with `--cfg fuzzing`, so the fuzz entry points of the libraries
/// compile and the targets link, without needing nightly.
fn build_fuzz_targets() -> anyhow::Result<()> {
    let fuzz_dir = root().join("fuzz");
    if fuzz_targets()?.is_empty() {
        bail!("fuzz/fuzz_targets has no target");
    }
    run_cmd(
        cargo()
            .current_dir(&fuzz_dir)
            .env("RUSTFLAGS", "--cfg fuzzing")
            .args(["build", "--locked", "--bins"]),
    )
}

fn fuzz_smoke() -> anyhow::Result<()> {
    if !have_cargo_fuzz() {
        println!("    skipped: no nightly toolchain with cargo-fuzz on this machine");
        return Ok(());
    }
    for target in fuzz_targets()? {
        println!("    fuzz {target} for {FUZZ_SMOKE_SECS}s");
        fuzz(&target, FUZZ_SMOKE_SECS)?;
    }
    Ok(())
}
