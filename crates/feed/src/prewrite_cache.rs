//! Where the region matchers keep prewrites until their commits: in memory up to a share of the
//! memory quota, then the values on local disk.
//!
//! A transaction's values travel in its PREWRITEs; its COMMITs, often much later, carry none.
//! So every byte of an open transaction is held by the client until it commits: TiCDC holds
//! them in memory and runs out of it on a transaction of a few GiB. Here the values (value and
//! old value) of a prewrite go to memory while the bytes the matchers hold stay within
//! [`Config::memory_quota`](crate::Config::memory_quota)'s prewrite share, and to a
//! [`SpillFiles`] store past it; a COMMIT reads its value back. Keys and each prewrite's
//! bookkeeping (about a hundred bytes) stay in memory and are counted too: a transaction of
//! a hundred million small rows still needs its keys' memory.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use crate::spill::{SEGMENT_BYTES, SpillFiles, SpillRef};

/// The prewrite values of every region of a client, and the memory they hold.
///
/// Shared by the region workers; the disk store is behind a lock taken only to spill or to
/// read a spilled value back.
#[derive(Debug)]
pub struct PrewriteCache {
    /// Bytes the matchers may hold in memory before values go to disk.
    memory_share: usize,
    /// Bytes held in memory: values kept there, plus keys and bookkeeping of every pending
    /// prewrite and cached row (charged by the matchers).
    memory: AtomicUsize,
    /// Bytes of values on disk.
    disk: AtomicU64,
    /// `None`: spilling is off, and everything stays in memory.
    files: Option<Mutex<SpillFiles>>,
    /// A spill failed (logged once; later prewrites try again).
    warned: AtomicBool,
}

/// A pending prewrite's value and old value, wherever they are.
#[derive(Debug)]
pub(crate) enum Stored {
    /// In memory (charged to the cache).
    Memory { value: Bytes, old_value: Bytes },
    /// One record on disk: the value, then the old value.
    Disk { at: SpillRef, value_len: usize },
}

impl PrewriteCache {
    /// A cache that keeps values in memory up to `memory_share` bytes (keys and bookkeeping
    /// included), then in anonymous temporary files under `spill_dir`; with no directory,
    /// everything stays in memory, however much.
    pub fn new(memory_share: usize, spill_dir: Option<PathBuf>) -> Self {
        Self {
            memory_share,
            memory: AtomicUsize::new(0),
            disk: AtomicU64::new(0),
            files: spill_dir.map(|dir| Mutex::new(SpillFiles::new(dir, SEGMENT_BYTES))),
            warned: AtomicBool::new(false),
        }
    }

    /// Bytes held in memory for pending prewrites and cached rows.
    pub fn memory_bytes(&self) -> usize {
        self.memory.load(Ordering::Relaxed)
    }

    /// Bytes of prewrite values on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk.load(Ordering::Relaxed)
    }

    /// Counts `bytes` held in memory by a matcher (keys, bookkeeping).
    pub(crate) fn charge(&self, bytes: usize) {
        self.memory.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives back what [`charge`](Self::charge) counted.
    pub(crate) fn release(&self, bytes: usize) {
        self.memory.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Keeps a prewrite's value and old value: copied into memory while the share allows (so
    /// they pin no frame buffer), else written to disk. A value that cannot be written stays
    /// in memory (the failure is logged once).
    pub(crate) fn store(&self, value: &[u8], old_value: &[u8]) -> Stored {
        let len = value.len() + old_value.len();
        if let Some(files) = &self.files
            && len > 0
            && self.memory_bytes() + len > self.memory_share
        {
            match lock(files).append(&[value, old_value]) {
                Ok(at) => {
                    self.disk.fetch_add(len as u64, Ordering::Relaxed);
                    return Stored::Disk { at, value_len: value.len() };
                }
                Err(error) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "cannot spill prewrites to disk; keeping them in memory");
                    }
                }
            }
        }
        self.charge(len);
        Stored::Memory {
            value: Bytes::copy_from_slice(value),
            old_value: Bytes::copy_from_slice(old_value),
        }
    }

    /// Takes a stored value and old value back.
    pub(crate) fn load(&self, stored: Stored) -> io::Result<(Bytes, Bytes)> {
        match stored {
            Stored::Memory { value, old_value } => {
                self.release(value.len() + old_value.len());
                Ok((value, old_value))
            }
            Stored::Disk { at, value_len } => {
                self.disk.fetch_sub(at.len() as u64, Ordering::Relaxed);
                let mut value = Bytes::from(lock(self.files()?).take(at)?);
                if value.len() != at.len() || value_len > value.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "short spilled record"));
                }
                let old_value = value.split_off(value_len);
                Ok((value, old_value))
            }
        }
    }

    /// Forgets a stored value (its prewrite was rolled back, replaced or dropped).
    pub(crate) fn discard(&self, stored: Stored) {
        match stored {
            Stored::Memory { value, old_value } => self.release(value.len() + old_value.len()),
            Stored::Disk { at, .. } => {
                self.disk.fetch_sub(at.len() as u64, Ordering::Relaxed);
                if let Ok(files) = self.files() {
                    lock(files).free(at);
                }
            }
        }
    }

    fn files(&self) -> io::Result<&Mutex<SpillFiles>> {
        self.files.as_ref().ok_or_else(|| io::Error::other("spilling is off"))
    }
}

/// Locks the store; a panic elsewhere while it was held leaves records that are still whole
/// (every change is one append or one free).
fn lock(files: &Mutex<SpillFiles>) -> std::sync::MutexGuard<'_, SpillFiles> {
    files.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
