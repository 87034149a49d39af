//! `watch --checkpoint FILE`: where a watch resumes after it was stopped or killed.
//!
//! The file holds one decimal ts: the last resolved ts the watch printed and flushed, so every
//! row committed at or below it is on stdout already. A watch started with the file present
//! resumes from it (its `--start-ts` is ignored): rows at or below it are not printed again,
//! rows above it are (those a killed watch printed after its last save come again). The file
//! is replaced atomically (written beside it, flushed to disk, renamed over it, the directory
//! flushed), at most once per interval and once more at a clean exit, so a kill at any moment
//! leaves the previous checkpoint or the new one, never a torn file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Failure;

/// The checkpoint file of one watch.
#[derive(Debug)]
pub(crate) struct CheckpointFile {
    path: PathBuf,
    interval: Duration,
    last_write: Option<Instant>,
    /// A ts printed but not saved yet (saved at the next chance).
    pending: Option<u64>,
}

impl CheckpointFile {
    /// The file at `path`, saved at most every `interval`.
    pub(crate) fn new(path: PathBuf, interval: Duration) -> Self {
        Self { path, interval, last_write: None, pending: None }
    }

    /// The checkpoint saved in the file, if there is one. A file that does not hold one is an
    /// error (not silently started over).
    pub(crate) fn read(&self) -> Result<Option<u64>, Failure> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(Failure::usage(format!(
                    "cannot read the checkpoint file {}: {error}",
                    self.path.display()
                )));
            }
        };
        text.trim().parse::<u64>().map(Some).map_err(|_| {
            Failure::usage(format!("{} does not hold a checkpoint ts", self.path.display()))
        })
    }

    /// Checks that the file's directory takes files (at start, not at the first save).
    pub(crate) fn check_writable(&self) -> Result<(), Failure> {
        let dir = self.dir();
        tempfile_probe(&dir).map_err(|error| {
            Failure::usage(format!(
                "cannot write the checkpoint file in {}: {error}",
                dir.display()
            ))
        })
    }

    /// Records that everything up to `ts` is printed and flushed; saves it if the interval
    /// passed.
    pub(crate) fn printed(&mut self, ts: u64) -> Result<(), Failure> {
        self.pending = Some(ts);
        if self.last_write.is_some_and(|at| at.elapsed() < self.interval) {
            return Ok(());
        }
        self.flush()
    }

    /// Saves the last ts printed, if it is not saved yet.
    pub(crate) fn flush(&mut self) -> Result<(), Failure> {
        let Some(ts) = self.pending.take() else { return Ok(()) };
        self.write(ts).map_err(|error| {
            Failure::runtime(format!(
                "cannot save the checkpoint to {}: {error}",
                self.path.display()
            ))
        })?;
        self.last_write = Some(Instant::now());
        Ok(())
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn write(&self, ts: u64) -> std::io::Result<()> {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let tmp = self.path.with_file_name(name);
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{ts}")?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)?;
        // The rename itself is durable once the directory is.
        #[cfg(unix)]
        std::fs::File::open(self.dir())?.sync_all()?;
        Ok(())
    }

    /// A name for the GC service safe point that every watch of this file shares, so a
    /// restarted watch takes over the safe point its killed predecessor left (FNV-1a of the
    /// file's absolute path: stable across runs and releases).
    pub(crate) fn service_name(&self) -> String {
        let absolute = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in absolute.as_os_str().as_encoded_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("watch-{hash:016x}")
    }
}

/// Creates and removes a file in `dir`.
fn tempfile_probe(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".kvfeed-checkpoint-probe-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_saved_whole_and_read_back() {
        let dir =
            std::env::temp_dir().join(format!("kvfeed-checkpoint-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("watch.ckpt");
        let _ = std::fs::remove_file(&path);
        let mut file = CheckpointFile::new(path.clone(), Duration::from_secs(3600));
        assert_eq!(file.read().unwrap(), None);
        file.check_writable().unwrap();
        file.printed(5).unwrap();
        assert_eq!(file.read().unwrap(), Some(5), "the first one is saved at once");
        file.printed(7).unwrap();
        assert_eq!(file.read().unwrap(), Some(5), "then at most once per interval");
        file.flush().unwrap();
        assert_eq!(file.read().unwrap(), Some(7), "and at exit");
        assert_eq!(
            file.service_name(),
            CheckpointFile::new(path.clone(), Duration::ZERO).service_name()
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(file.read().is_err(), "a file without a ts is refused");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
