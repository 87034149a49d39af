//! Where `watch` prints: stdout, or `--output FILE` rotated by size. A rotation happens between
//! two lines (FILE becomes FILE.1, FILE.1 becomes FILE.2, .. up to `--rotate-keep`, the oldest
//! dropped), so every file holds whole lines, and the newest lines are always in FILE.
//!
//! Stdout going away (a closed pipe) ends the watch quietly; a file that cannot be written
//! (a full disk) is an error.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, StdoutLock, Write};
use std::path::{Path, PathBuf};

/// Why a write did not happen.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// Stdout was closed (e.g. piped into `head`): nothing more to do.
    Closed,
    /// The output file failed: the message says how.
    Failed(String),
}

/// The output of a watch.
#[derive(Debug)]
pub(crate) enum Destination {
    Stdout(BufWriter<StdoutLock<'static>>),
    File(RotatingFile),
}

impl Destination {
    /// Stdout, or `path` rotated past `rotate_size` bytes into `keep` older files.
    pub(crate) fn open(
        path: Option<&Path>,
        rotate_size: Option<u64>,
        keep: usize,
    ) -> Result<Self, String> {
        match path {
            None => Ok(Self::Stdout(BufWriter::new(std::io::stdout().lock()))),
            Some(path) => RotatingFile::open(path, rotate_size, keep).map(Self::File),
        }
    }

    /// Writes one whole line.
    pub(crate) fn write_line(&mut self, line: &[u8]) -> Result<(), Stopped> {
        match self {
            Self::Stdout(out) => out.write_all(line).map_err(|_| Stopped::Closed),
            Self::File(file) => file.write_line(line),
        }
    }

    /// Flushes what was written; `durable` also syncs a file to disk (before a checkpoint
    /// says its lines were printed).
    pub(crate) fn flush(&mut self, durable: bool) -> Result<(), Stopped> {
        match self {
            Self::Stdout(out) => out.flush().map_err(|_| Stopped::Closed),
            Self::File(file) => file.flush(durable),
        }
    }
}

/// A file rotated by size. Invariant: `written` is the length of the file at `path`.
#[derive(Debug)]
pub(crate) struct RotatingFile {
    path: PathBuf,
    rotate_size: Option<u64>,
    keep: usize,
    file: BufWriter<File>,
    written: u64,
}

impl RotatingFile {
    /// Opens `path` to append to (a watch started again goes on where the last one stopped).
    fn open(path: &Path, rotate_size: Option<u64>, keep: usize) -> Result<Self, String> {
        let file = append(path)?;
        let written = file.metadata().map_err(|e| failed(path, &e))?.len();
        Ok(Self { path: path.to_owned(), rotate_size, keep, file: BufWriter::new(file), written })
    }

    fn write_line(&mut self, line: &[u8]) -> Result<(), Stopped> {
        let len = line.len() as u64;
        if self.rotate_size.is_some_and(|size| self.written > 0 && self.written + len > size) {
            self.rotate().map_err(Stopped::Failed)?;
        }
        self.file.write_all(line).map_err(|e| Stopped::Failed(failed(&self.path, &e)))?;
        self.written += len;
        Ok(())
    }

    fn flush(&mut self, durable: bool) -> Result<(), Stopped> {
        let fail = |e: std::io::Error| Stopped::Failed(failed(&self.path, &e));
        self.file.flush().map_err(fail)?;
        if durable {
            self.file.get_ref().sync_data().map_err(fail)?;
        }
        Ok(())
    }

    /// Moves the files one number up (dropping the oldest) and starts an empty FILE.
    fn rotate(&mut self) -> Result<(), String> {
        self.file.flush().map_err(|e| failed(&self.path, &e))?;
        self.file.get_ref().sync_data().map_err(|e| failed(&self.path, &e))?;
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path).map_err(|e| failed(&self.path, &e))?;
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1)).map_err(|e| failed(&from, &e))?;
                }
            }
            std::fs::rename(&self.path, numbered(1)).map_err(|e| failed(&self.path, &e))?;
        }
        self.file = BufWriter::new(append(&self.path)?);
        self.written = 0;
        Ok(())
    }
}

fn append(path: &Path) -> Result<File, String> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| failed(path, &e))
}

fn failed(path: &Path, error: &std::io::Error) -> String {
    format!("cannot write {}: {error}", path.display())
}

/// Parses a size: bytes, or with a `K`, `M` or `G` suffix (powers of 1024).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 10),
        Some((at, 'm' | 'M')) => (&text[..at], 20),
        Some((at, 'g' | 'G')) => (&text[..at], 30),
        _ => (text, 0),
    };
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size (like 64M)"))?;
    match number.checked_mul(1 << shift) {
        Some(0) => Err("a size must be at least 1 byte".to_owned()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text:?} is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("1.5M").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn files_rotate_between_lines_and_keep_the_newest() {
        let dir = std::env::temp_dir().join(format!("kvfeed-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let mut out = Destination::open(Some(&path), Some(25), 2).unwrap();
        let lines: Vec<String> = (0..10).map(|i| format!("line {i:02} of ten\n")).collect();
        for line in &lines {
            out.write_line(line.as_bytes()).unwrap();
        }
        out.flush(true).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        // 16-byte lines, 25 bytes a file: one line each; the newest in FILE, two older kept.
        assert_eq!(read("out.jsonl"), lines[9]);
        assert_eq!(read("out.jsonl.1"), lines[8]);
        assert_eq!(read("out.jsonl.2"), lines[7]);
        assert!(!dir.join("out.jsonl.3").exists());
        // Opened again, it appends (and rotates first if the file is full).
        drop(out);
        let mut out = Destination::open(Some(&path), None, 2).unwrap();
        out.write_line(lines[0].as_bytes()).unwrap();
        out.flush(false).unwrap();
        assert_eq!(read("out.jsonl"), format!("{}{}", lines[9], lines[0]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
