//! Pairs prewrites with their commits for one region registration.
//!
//! TiKV sends a two-phase transaction as a PREWRITE (with the value and old value) and later a
//! COMMIT (often without them) for each key; the two meet here by `(start ts, raw key)`. During
//! the incremental scan real-time rows interleave with scan rows, so a COMMIT can come before its
//! PREWRITE: such commits and rollbacks are cached until the scan ends.

use bytes::Bytes;
use hashbrown::HashMap;
use kvfeed_transport::Row;

/// The prewrites of one region awaiting their commit or rollback, and the commits and rollbacks
/// that came first during the incremental scan.
#[derive(Debug, Default)]
pub(crate) struct Matcher {
    /// Pending prewrites by `(start ts, raw key)`. Invariant: at most one per transaction and
    /// key; a later prewrite replaces an earlier one unless it is a fake (empty value) or an
    /// older pipelined-DML generation.
    prewrites: HashMap<(u64, Bytes), Row>,
    /// Commits that found no prewrite before the scan ended, in arrival order.
    cached_commits: Vec<Row>,
    /// Rollbacks received before the scan ended, in arrival order.
    cached_rollbacks: Vec<Row>,
}

impl Matcher {
    /// Records a prewrite. A prewrite with an empty value over an existing one is a fake (TiKV
    /// rewriting the lock, e.g. on a heartbeat) and is ignored, as is an older generation of a
    /// pipelined-DML transaction.
    ///
    /// The kept row owns copies of its bytes: a row fresh from the transport shares the buffer
    /// of the whole frame it came in, which a long transaction would otherwise pin.
    pub(crate) fn put_prewrite(&mut self, row: Row) {
        if let Some(existing) = self.prewrites.get(&(row.start_ts, row.key.clone()))
            && (row.value.is_empty() || row.generation < existing.generation)
        {
            return;
        }
        let row = Row {
            key: Bytes::copy_from_slice(&row.key),
            value: Bytes::copy_from_slice(&row.value),
            old_value: Bytes::copy_from_slice(&row.old_value),
            ..row
        };
        self.prewrites.insert((row.start_ts, row.key.clone()), row);
    }

    /// Takes the prewrite of `commit`, if it can be matched now. Before the scan ends, a prewrite
    /// without a value (possibly a fake, the real one still to come) or of a pipelined-DML
    /// generation does not match yet.
    pub(crate) fn take_prewrite(&mut self, commit: &Row, initialized: bool) -> Option<Row> {
        let key = (commit.start_ts, commit.key.clone());
        let prewrite = self.prewrites.get(&key)?;
        if !initialized && (prewrite.value.is_empty() || prewrite.generation > 0) {
            return None;
        }
        self.prewrites.remove(&key)
    }

    /// Drops the prewrite a rollback cancels.
    pub(crate) fn rollback(&mut self, rollback: &Row) {
        self.prewrites.remove(&(rollback.start_ts, rollback.key.clone()));
    }

    /// Keeps a commit that came before its prewrite, until the scan ends.
    pub(crate) fn cache_commit(&mut self, commit: Row) {
        self.cached_commits.push(commit);
    }

    /// Keeps a rollback that came during the scan, until the scan ends.
    pub(crate) fn cache_rollback(&mut self, rollback: Row) {
        self.cached_rollbacks.push(rollback);
    }

    /// Takes the cached commits and rollbacks, in arrival order (at the end of the scan).
    pub(crate) fn take_cached(&mut self) -> (Vec<Row>, Vec<Row>) {
        (core::mem::take(&mut self.cached_commits), core::mem::take(&mut self.cached_rollbacks))
    }

    /// Forgets prewrites of transactions started below `resolved_ts`: TiKV's resolved ts passes
    /// a transaction's start ts only once its locks are gone, and their commit or rollback would
    /// have come before the resolved ts on the same stream. Returns how many were dropped.
    pub(crate) fn collect_orphans(&mut self, resolved_ts: u64) -> usize {
        let before = self.prewrites.len();
        self.prewrites.retain(|(start_ts, _), _| *start_ts >= resolved_ts);
        before - self.prewrites.len()
    }

    /// Pending prewrites.
    pub(crate) fn pending(&self) -> usize {
        self.prewrites.len()
    }
}
