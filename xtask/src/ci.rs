//! `cargo xtask ci`: the checks every submission must pass, in the order CI runs them.
//!
//! Each step prints its name and duration; the first failure stops the run and names the step.

use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::{cargo, fuzz, fuzz_targets, have_cargo_fuzz, root, run_cmd};

/// The no_std core crates that must build for `wasm32-unknown-unknown`.
const NO_STD_CRATES: &[&str] = &["kvfeed-span", "kvfeed-rangelock"];

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
