//! Pairs prewrites with their commits for one region registration.
//!
//! TiKV sends a two-phase transaction as a PREWRITE (with the value and old value) and later a
//! COMMIT (often without them) for each key; the two meet here by `(start ts, raw key)`. During
//! the incremental scan real-time rows interleave with scan rows, so a COMMIT can come before its
//! PREWRITE: such commits and rollbacks are cached until the scan ends.
//!
//! Every byte held here is counted in the client's [`PrewriteCache`], which also keeps the
//! values (in memory, or on disk past its memory share); everything is given back when a row
//! leaves, and when the matcher is dropped with its region.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use kvfeed_transport::Row;

use crate::prewrite_cache::{PrewriteCache, Stored};

/// A prewrite awaiting its commit or rollback.
#[derive(Debug)]
struct Pending {
    /// Flush generation of pipelined DML.
    generation: u64,
    /// Whether the prewrite carried a value (one without may be a fake, see
    /// [`Matcher::put_prewrite`]).
    has_value: bool,
    stored: Stored,
}

/// What a pending prewrite holds in memory besides its values: its key and its map slot.
fn pending_charge(key: &Bytes) -> usize {
    key.len() + size_of::<((u64, Bytes), Pending)>() + 1
}

/// What a cached commit or rollback holds in memory.
fn cached_charge(row: &Row) -> usize {
    size_of::<Row>() + row.key.len() + row.value.len() + row.old_value.len()
}

/// The prewrites of one region awaiting their commit or rollback, and the commits and rollbacks
/// that came first during the incremental scan.
#[derive(Debug)]
pub(crate) struct Matcher {
    /// Where the values are kept, and the bytes held counted.
    cache: Arc<PrewriteCache>,
    /// Pending prewrites by `(start ts, raw key)`. Invariant: at most one per transaction and
    /// key; a later prewrite replaces an earlier one unless it is a fake (empty value) or an
    /// older pipelined-DML generation. Each entry is charged `pending_charge` and its values
    /// to the cache.
    prewrites: HashMap<(u64, Bytes), Pending>,
    /// Commits that found no prewrite before the scan ended, in arrival order (each charged
    /// `cached_charge`).
    cached_commits: Vec<Row>,
    /// Rollbacks received before the scan ended, in arrival order (each charged
    /// `cached_charge`).
    cached_rollbacks: Vec<Row>,
}

impl Matcher {
    pub(crate) fn new(cache: Arc<PrewriteCache>) -> Self {
        Self {
            cache,
            prewrites: HashMap::new(),
            cached_commits: Vec::new(),
            cached_rollbacks: Vec::new(),
        }
    }

    /// Records a prewrite. A prewrite with an empty value over an existing one is a fake (TiKV
    /// rewriting the lock, e.g. on a heartbeat) and is ignored, as is an older generation of a
    /// pipelined-DML transaction.
    ///
    /// The kept key and values are copies: a row fresh from the transport shares the buffer of
    /// the whole frame it came in, which a long transaction would otherwise pin.
    pub(crate) fn put_prewrite(&mut self, row: &Row) {
        if let Some(existing) = self.prewrites.get(&(row.start_ts, row.key.clone()))
            && (row.value.is_empty() || row.generation < existing.generation)
        {
            return;
        }
        let pending = Pending {
            generation: row.generation,
            has_value: !row.value.is_empty(),
            stored: self.cache.store(&row.value, &row.old_value),
        };
        match self.prewrites.entry((row.start_ts, Bytes::copy_from_slice(&row.key))) {
            Entry::Occupied(mut slot) => {
                let replaced = core::mem::replace(slot.get_mut(), pending);
                self.cache.discard(replaced.stored);
            }
            Entry::Vacant(slot) => {
                self.cache.charge(pending_charge(&slot.key().1));
                slot.insert(pending);
            }
        }
    }

    /// Takes the key, value and old value of `commit`'s prewrite (copies of their own), if it
    /// can be matched now. Before
    /// the scan ends, a prewrite without a value (possibly a fake, the real one still to come)
    /// or of a pipelined-DML generation does not match yet. Fails only if a value on disk
    /// cannot be read back.
    pub(crate) fn take_prewrite(
        &mut self,
        commit: &Row,
        initialized: bool,
    ) -> io::Result<Option<(Bytes, Bytes, Bytes)>> {
        let id = (commit.start_ts, commit.key.clone());
        let Some(prewrite) = self.prewrites.get(&id) else { return Ok(None) };
        if !initialized && (!prewrite.has_value || prewrite.generation > 0) {
            return Ok(None);
        }
        let Some(((_, key), prewrite)) = self.prewrites.remove_entry(&id) else { return Ok(None) };
        self.cache.release(pending_charge(&key));
        let (value, old_value) = self.cache.load(prewrite.stored)?;
        Ok(Some((key, value, old_value)))
    }

    /// Drops the prewrite a rollback cancels.
    pub(crate) fn rollback(&mut self, rollback: &Row) {
        if let Some(((_, key), prewrite)) =
            self.prewrites.remove_entry(&(rollback.start_ts, rollback.key.clone()))
        {
            self.forget(&key, prewrite);
        }
    }

    /// Keeps a commit that came before its prewrite, until the scan ends.
    pub(crate) fn cache_commit(&mut self, commit: &Row) {
        let row = self.own(commit);
        self.cached_commits.push(row);
    }

    /// Keeps a rollback that came during the scan, until the scan ends.
    pub(crate) fn cache_rollback(&mut self, rollback: &Row) {
        let row = self.own(rollback);
        self.cached_rollbacks.push(row);
    }

    /// A copy of `row` owning its bytes, charged to the cache.
    fn own(&self, row: &Row) -> Row {
        let row = Row {
            key: Bytes::copy_from_slice(&row.key),
            value: Bytes::copy_from_slice(&row.value),
            old_value: Bytes::copy_from_slice(&row.old_value),
            ..*row
        };
        self.cache.charge(cached_charge(&row));
        row
    }

    /// Takes the cached commits and rollbacks, in arrival order (at the end of the scan).
    pub(crate) fn take_cached(&mut self) -> (Vec<Row>, Vec<Row>) {
        let commits = core::mem::take(&mut self.cached_commits);
        let rollbacks = core::mem::take(&mut self.cached_rollbacks);
        let held: usize = commits.iter().chain(&rollbacks).map(cached_charge).sum();
        self.cache.release(held);
        (commits, rollbacks)
    }

    /// Forgets prewrites of transactions started below `resolved_ts`: TiKV's resolved ts passes
    /// a transaction's start ts only once its locks are gone, and their commit or rollback would
    /// have come before the resolved ts on the same stream. Returns how many were dropped.
    pub(crate) fn collect_orphans(&mut self, resolved_ts: u64) -> usize {
        let orphans: Vec<_> =
            self.prewrites.extract_if(|(start_ts, _), _| *start_ts < resolved_ts).collect();
        let count = orphans.len();
        for ((_, key), prewrite) in orphans {
            self.forget(&key, prewrite);
        }
        count
    }

    /// Gives back what a removed prewrite held.
    fn forget(&self, key: &Bytes, prewrite: Pending) {
        self.cache.release(pending_charge(key));
        self.cache.discard(prewrite.stored);
    }

    /// Pending prewrites.
    pub(crate) fn pending(&self) -> usize {
        self.prewrites.len()
    }
}

impl Drop for Matcher {
    fn drop(&mut self) {
        for ((_, key), prewrite) in std::mem::take(&mut self.prewrites) {
            self.forget(&key, prewrite);
        }
        drop(self.take_cached());
    }
}
