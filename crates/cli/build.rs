//! Records the commit the `kvfeed` binary is built from, for `kvfeed --version`
//! (`KVFEED_COMMIT`: `git rev-parse --short=12 HEAD`, or "unknown" outside a git checkout, as in
//! a crates.io package).

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KVFEED_COMMIT={commit}");
    // A new commit changes HEAD (or the branch it names).
    for path in ["../../.git/HEAD", "../../.git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
