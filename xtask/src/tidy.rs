//! `cargo xtask tidy`: layout rules the compiler does not check.
//!
//! - Every Rust module the project writes starts with a `//!` doc saying what it is for
//!   (generated code is the code generator's business and is skipped).
//! - No file reaches into another crate's files by path (`#[path = ...]`, `include!`,
//!   `include_str!`, `include_bytes!` resolving outside the crate that holds the file): shared
//!   test support lives in the `kvfeed-testkit` crate, shared data in the crate that owns it.
//!
//! Also run as a test of xtask, so `cargo test` enforces it.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::root;

/// Folders whose Rust files are checked, relative to the workspace root.
const ROOTS: &[&str] = &["crates", "xtask", "benches", "fuzz"];
/// Path fragments that are never checked (generated code, build output).
const SKIPPED: &[&str] = &["/generated/", "/target/", "/corpus/", "/artifacts/"];
/// The attribute that names a module's file (at the start of a line) and the macros that name a
/// file by path (anywhere in a line).
const PATH_ATTRIBUTE: &str = "#[path";
const INCLUDE_MACROS: &[&str] = &["include!(", "include_str!(", "include_bytes!("];

pub(crate) fn run() -> anyhow::Result<()> {
    let problems = check(&root())?;
    if problems.is_empty() {
        println!("    tidy: every module documented, no reach across crates");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("    {problem}");
    }
    bail!("{} tidy problem(s)", problems.len())
}

/// Every problem found under `root`, one line each.
fn check(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for dir in ROOTS {
        collect_rust_files(&root.join(dir), &mut files)?;
    }
    files.sort();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{shown}: does not start with a `//!` module doc"));
        }
        let krate = crate_root(file);
        for (number, line) in text.lines().enumerate() {
            let Some(target) = named_path(line) else { continue };
            let base = file.parent().unwrap_or(root);
            let resolved = normalise(&base.join(target));
            if let Some(krate) = &krate
                && !resolved.starts_with(krate)
            {
                problems.push(format!(
                    "{shown}:{}: reaches outside its crate by path ({target})",
                    number + 1
                ));
            }
        }
    }
    Ok(problems)
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry?.path();
        let text = path.to_string_lossy().replace('\\', "/");
        if SKIPPED.iter().any(|skip| text.contains(skip)) {
            continue;
        }
        if path.is_dir() {
            collect_rust_files(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The path a line names with `#[path = "..."]` or an `include*!("...")`, if any.
fn named_path(line: &str) -> Option<&str> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return None;
    }
    let at = if code.starts_with(PATH_ATTRIBUTE) {
        PATH_ATTRIBUTE.len()
    } else {
        INCLUDE_MACROS.iter().find_map(|form| code.find(form).map(|at| at + form.len()))?
    };
    let rest = &code[at..];
    let open = rest.find('"')?;
    let rest = &rest[open + 1..];
    let close = rest.find('"')?;
    Some(&rest[..close])
}

/// The directory of the crate holding `file`: the nearest ancestor with a Cargo.toml.
fn crate_root(file: &Path) -> Option<PathBuf> {
    file.ancestors().skip(1).find(|dir| dir.join("Cargo.toml").is_file()).map(normalise)
}

/// `path` with `.` and `..` folded (without touching the file system).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_is_tidy() {
        let problems = check(&root()).unwrap();
        assert!(problems.is_empty(), "tidy problems:\n{}", problems.join("\n"));
    }

    #[test]
    fn paths_are_read_from_attributes_and_include_macros() {
        assert_eq!(
            named_path(r#"#[path = "../../x/tests/support/mod.rs"]"#),
            Some("../../x/tests/support/mod.rs")
        );
        assert_eq!(named_path(r#"#[doc = include_str!("../README.md")]"#), Some("../README.md"));
        assert_eq!(named_path(r#"// #[path = "../elsewhere.rs"]"#), None);
        assert_eq!(named_path("let x = 1;"), None);
    }

    #[test]
    fn a_reach_into_another_crate_is_found() {
        let dir = std::env::temp_dir().join(format!("kvfeed-tidy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for krate in ["crates/a", "crates/b"] {
            std::fs::create_dir_all(dir.join(krate).join("tests")).unwrap();
            std::fs::write(dir.join(krate).join("Cargo.toml"), "").unwrap();
        }
        std::fs::write(dir.join("crates/b/tests/support.rs"), "//! Support.\n").unwrap();
        std::fs::write(
            dir.join("crates/a/tests/it.rs"),
            "//! A test.\n#[path = \"../../b/tests/support.rs\"]\nmod support;\n",
        )
        .unwrap();
        std::fs::write(dir.join("crates/a/tests/undocumented.rs"), "fn main() {}\n").unwrap();
        let problems = check(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("crates/a/tests/it.rs:2: reaches outside its crate"));
        assert!(problems[1].contains("undocumented.rs: does not start with a `//!`"));
    }
}
