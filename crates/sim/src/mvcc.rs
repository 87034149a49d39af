//! Multi-version data: committed versions, prewrite locks and rollback records, over RAW keys.
//!
//! This is the storage a store would read through raft; the simulation keeps one copy for the
//! whole cluster (regions only decide which store serves which keys). Transactions are
//! Percolator-style: [`Mvcc::prewrite`] puts a lock with the start ts, the primary key and a
//! TTL on every key; [`Mvcc::commit_key`] turns a lock into a committed version;
//! [`Mvcc::rollback_key`] removes it and leaves a rollback record. Old values are the value of
//! the newest committed version below the change.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;

use bytes::Bytes;

/// What a change does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Write a value.
    Put,
    /// Delete the key.
    Delete,
}

/// One key of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// The raw key.
    pub key: Bytes,
    /// Put or delete.
    pub op: Op,
    /// The value (empty for deletes).
    pub value: Bytes,
}

impl Mutation {
    /// A put of `value` at `key`.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self { key: key.into(), op: Op::Put, value: value.into() }
    }

    /// A delete of `key`.
    pub fn delete(key: impl Into<Bytes>) -> Self {
        Self { key: key.into(), op: Op::Delete, value: Bytes::new() }
    }
}

/// A prewrite lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The transaction's start ts.
    pub start_ts: u64,
    /// The transaction's primary key (raw).
    pub primary: Bytes,
    /// Time to live in ms, counted from the start ts's physical time.
    pub ttl_ms: u64,
    /// Put or delete.
    pub op: Op,
    /// The value to write.
    pub value: Bytes,
    /// The value the key had when the lock was written (`None`: no value).
    pub old_value: Option<Bytes>,
    /// Number of keys in the transaction.
    pub txn_size: u64,
    /// The transaction uses async commit: it is committed once every key is prewritten, at
    /// the largest `min_commit_ts` of its locks.
    pub async_commit: bool,
    /// The smallest commit ts the transaction may get (async commit; 0 otherwise).
    pub min_commit_ts: u64,
    /// The other keys of an async-commit transaction, on its primary lock only.
    pub secondaries: Vec<Bytes>,
}

/// How the keys of a prewrite are locked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LockSpec {
    /// The transaction's primary key.
    pub primary: Bytes,
    /// Time to live in ms.
    pub ttl_ms: u64,
    /// Keys in the whole transaction.
    pub txn_size: u64,
    /// Async commit: the min commit ts and the secondaries (recorded on the primary's lock).
    pub async_commit: Option<(u64, Vec<Bytes>)>,
}

/// A committed version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    /// The transaction's start ts.
    pub start_ts: u64,
    /// Its commit ts.
    pub commit_ts: u64,
    /// Put or delete.
    pub op: Op,
    /// The value (empty for deletes).
    pub value: Bytes,
}

/// A committed row, as the recorder and the verifier see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRow {
    /// The raw key.
    pub key: Bytes,
    /// Put or delete.
    pub op: Op,
    /// The new value (empty for deletes).
    pub value: Bytes,
    /// The previous value, if there was one.
    pub old_value: Option<Bytes>,
    /// The transaction's start ts.
    pub start_ts: u64,
    /// Its commit ts.
    pub commit_ts: u64,
}

/// What a snapshot read sees of one key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadAt<'a> {
    /// The value.
    Value(Bytes),
    /// No value (never written, deleted, or written after the read ts).
    Missing,
    /// Locked by a transaction that may commit at or before the read ts.
    Locked(&'a Lock),
}

/// Why a transactional operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// The key is locked by another transaction.
    #[error("key {key:?} is locked by the transaction at {lock_ts}")]
    Locked {
        /// The key.
        key: Bytes,
        /// The start ts of the lock holder.
        lock_ts: u64,
    },
    /// A version newer than the start ts exists.
    #[error("write conflict on {key:?}: committed at {commit_ts}")]
    WriteConflict {
        /// The key.
        key: Bytes,
        /// The newer commit ts.
        commit_ts: u64,
    },
    /// The transaction was rolled back (or its locks are gone).
    #[error("transaction {start_ts} was rolled back or has no lock")]
    TxnNotFound {
        /// The transaction's start ts.
        start_ts: u64,
    },
    /// An empty transaction.
    #[error("empty transaction")]
    Empty,
}

/// The data of the whole cluster.
#[derive(Debug, Default)]
pub(crate) struct Mvcc {
    versions: BTreeMap<Bytes, Vec<Version>>,
    locks: BTreeMap<Bytes, Lock>,
    /// The keys each open transaction has locked (a set: a huge transaction's keys are
    /// added and removed one at a time).
    txn_keys: HashMap<u64, BTreeSet<Bytes>>,
    rollbacks: HashSet<(Bytes, u64)>,
}

impl Mvcc {
    /// The newest committed value of `key` (`None` if absent or deleted).
    #[must_use]
    pub(crate) fn latest_value(&self, key: &[u8]) -> Option<Bytes> {
        let v = self.versions.get(key)?.last()?;
        (v.op == Op::Put).then(|| v.value.clone())
    }

    /// The value before the version committed at `commit_ts`.
    fn value_before(versions: &[Version], index: usize) -> Option<Bytes> {
        let prev = versions.get(index.checked_sub(1)?)?;
        (prev.op == Op::Put).then(|| prev.value.clone())
    }

    /// Checks and writes the locks of a transaction; the first mutation is the primary.
    #[cfg(test)]
    pub(crate) fn prewrite(
        &mut self,
        mutations: &[Mutation],
        start_ts: u64,
        ttl_ms: u64,
    ) -> Result<Vec<(Bytes, Lock)>, TxnError> {
        let primary = mutations.first().ok_or(TxnError::Empty)?.key.clone();
        let spec =
            LockSpec { primary, ttl_ms, txn_size: mutations.len() as u64, async_commit: None };
        self.prewrite_keys(&spec, mutations, start_ts)
    }

    /// Checks and writes locks on `mutations` (all or part of a transaction) as `spec` says.
    /// A key locked by another transaction, committed at or after `start_ts` or rolled back
    /// for this transaction (a resolver got there first) fails the whole call.
    pub(crate) fn prewrite_keys(
        &mut self,
        spec: &LockSpec,
        mutations: &[Mutation],
        start_ts: u64,
    ) -> Result<Vec<(Bytes, Lock)>, TxnError> {
        if mutations.is_empty() {
            return Err(TxnError::Empty);
        }
        for m in mutations {
            if let Some(lock) = self.locks.get(&m.key)
                && lock.start_ts != start_ts
            {
                return Err(TxnError::Locked { key: m.key.clone(), lock_ts: lock.start_ts });
            }
            if self.rollbacks.contains(&(m.key.clone(), start_ts)) {
                return Err(TxnError::TxnNotFound { start_ts });
            }
            if let Some(v) = self.versions.get(&m.key).and_then(|v| v.last())
                && v.commit_ts >= start_ts
            {
                return Err(TxnError::WriteConflict { key: m.key.clone(), commit_ts: v.commit_ts });
            }
        }
        let mut out = Vec::with_capacity(mutations.len());
        let keys = self.txn_keys.entry(start_ts).or_default();
        for m in mutations {
            let (async_commit, min_commit_ts, secondaries) = match &spec.async_commit {
                None => (false, 0, Vec::new()),
                Some((min_commit_ts, secondaries)) => {
                    let on_primary = m.key == spec.primary;
                    (
                        true,
                        *min_commit_ts,
                        if on_primary { secondaries.clone() } else { Vec::new() },
                    )
                }
            };
            let lock = Lock {
                start_ts,
                primary: spec.primary.clone(),
                ttl_ms: spec.ttl_ms,
                op: m.op,
                value: m.value.clone(),
                old_value: None,
                txn_size: spec.txn_size,
                async_commit,
                min_commit_ts,
                secondaries,
            };
            keys.insert(m.key.clone());
            out.push((m.key.clone(), lock));
        }
        for (key, lock) in &mut out {
            lock.old_value = self.latest_value(key);
            self.locks.insert(key.clone(), lock.clone());
        }
        Ok(out)
    }

    /// Sets the TTL of every lock of `start_ts` to `ttl_ms` (never shortens it).
    pub(crate) fn heartbeat(&mut self, start_ts: u64, ttl_ms: u64) -> usize {
        let keys = self.locked_keys(start_ts);
        for k in &keys {
            if let Some(l) = self.locks.get_mut(k) {
                l.ttl_ms = l.ttl_ms.max(ttl_ms);
            }
        }
        keys.len()
    }

    /// The lock on `key`, if any.
    #[must_use]
    pub(crate) fn lock(&self, key: &[u8]) -> Option<&Lock> {
        self.locks.get(key)
    }

    /// The keys still locked by the transaction `start_ts`.
    #[must_use]
    pub(crate) fn locked_keys(&self, start_ts: u64) -> Vec<Bytes> {
        self.txn_keys.get(&start_ts).map_or_else(Vec::new, |keys| {
            keys.iter()
                .filter(|k| self.locks.get(*k).is_some_and(|l| l.start_ts == start_ts))
                .cloned()
                .collect()
        })
    }

    /// Commits the lock of `start_ts` on `key` at `commit_ts`; `None` if there is no such lock.
    pub(crate) fn commit_key(
        &mut self,
        key: &Bytes,
        start_ts: u64,
        commit_ts: u64,
    ) -> Option<CommittedRow> {
        if self.locks.get(key).is_none_or(|l| l.start_ts != start_ts) {
            return None;
        }
        let lock = self.locks.remove(key)?;
        self.forget_key(start_ts, key);
        Some(self.write_version(key.clone(), lock.op, lock.value, start_ts, commit_ts))
    }

    /// Writes a committed version directly (1PC).
    pub(crate) fn write_version(
        &mut self,
        key: Bytes,
        op: Op,
        value: Bytes,
        start_ts: u64,
        commit_ts: u64,
    ) -> CommittedRow {
        let versions = self.versions.entry(key.clone()).or_default();
        let at = versions.partition_point(|v| v.commit_ts < commit_ts);
        versions.insert(at, Version { start_ts, commit_ts, op, value: value.clone() });
        let old_value = Self::value_before(versions, at);
        CommittedRow { key, op, value, old_value, start_ts, commit_ts }
    }

    /// Rolls back the lock of `start_ts` on `key`; true if there was one. Leaves a rollback
    /// record either way (so a late prewrite or commit of that transaction fails).
    pub(crate) fn rollback_key(&mut self, key: &Bytes, start_ts: u64) -> bool {
        self.rollbacks.insert((key.clone(), start_ts));
        if self.locks.get(key).is_some_and(|l| l.start_ts == start_ts) {
            self.locks.remove(key);
            self.forget_key(start_ts, key);
            true
        } else {
            false
        }
    }

    fn forget_key(&mut self, start_ts: u64, key: &Bytes) {
        if let Some(keys) = self.txn_keys.get_mut(&start_ts) {
            keys.remove(key);
            if keys.is_empty() {
                self.txn_keys.remove(&start_ts);
            }
        }
    }

    /// Whether `key` has a rollback record for `start_ts`.
    #[must_use]
    pub(crate) fn is_rolled_back(&self, key: &[u8], start_ts: u64) -> bool {
        self.rollbacks.contains(&(Bytes::copy_from_slice(key), start_ts))
    }

    /// The commit ts of the transaction `start_ts` on `key`, if it committed there.
    #[must_use]
    pub(crate) fn commit_ts_of(&self, key: &[u8], start_ts: u64) -> Option<u64> {
        self.versions.get(key)?.iter().find(|v| v.start_ts == start_ts).map(|v| v.commit_ts)
    }

    /// Committed versions with `commit_ts > after` for keys in `[start, end)` (raw bounds,
    /// `None` unbounded), in key then commit-ts order, with their old values.
    pub(crate) fn scan_committed(
        &self,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        after: u64,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Vec<CommittedRow> {
        let mut out = Vec::new();
        for (key, versions) in self.versions.range::<[u8], _>(bounds(start, end)) {
            if !keep(key) {
                continue;
            }
            for (i, v) in versions.iter().enumerate() {
                if v.commit_ts > after {
                    out.push(CommittedRow {
                        key: key.clone(),
                        op: v.op,
                        value: v.value.clone(),
                        old_value: Self::value_before(versions, i),
                        start_ts: v.start_ts,
                        commit_ts: v.commit_ts,
                    });
                }
            }
        }
        out
    }

    /// Locks on keys in `[start, end)` (raw bounds), in key order.
    pub(crate) fn scan_locks(
        &self,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
    ) -> impl Iterator<Item = (&Bytes, &Lock)> + '_ {
        self.locks.range::<[u8], _>(bounds(start, end))
    }

    /// GC at `safe_point`: drops every version older than each key's newest one at or below
    /// it (and that one too if it is a delete), and the rollback records of transactions that
    /// started at or below it. Locks stay. Returns how many versions were dropped.
    pub(crate) fn compact(&mut self, safe_point: u64) -> usize {
        let mut dropped = 0;
        self.versions.retain(|_, versions| {
            let below = versions.partition_point(|v| v.commit_ts <= safe_point);
            if below > 0 {
                let keep_from =
                    if versions[below - 1].op == Op::Delete { below } else { below - 1 };
                dropped += keep_from;
                versions.drain(..keep_from);
            }
            !versions.is_empty()
        });
        self.rollbacks.retain(|(_, start_ts)| *start_ts > safe_point);
        dropped
    }

    /// What a snapshot read at `ts` sees of `key` (TiKV's snapshot-isolation read): the lock of
    /// a transaction started at or before `ts` that may still commit at or before it blocks
    /// the read; otherwise the newest version committed at or before `ts`.
    pub(crate) fn read_at(&self, key: &[u8], ts: u64) -> ReadAt<'_> {
        if let Some(lock) = self.locks.get(key)
            && lock.start_ts <= ts
            && lock.min_commit_ts <= ts
        {
            return ReadAt::Locked(lock);
        }
        let Some(versions) = self.versions.get(key) else { return ReadAt::Missing };
        let visible = versions.partition_point(|v| v.commit_ts <= ts);
        match visible.checked_sub(1).map(|index| &versions[index]) {
            Some(Version { op: Op::Put, value, .. }) => ReadAt::Value(value.clone()),
            _ => ReadAt::Missing,
        }
    }

    /// The keys with a version or a lock in `[start, end)` (raw bounds), in key order.
    pub(crate) fn keys_in<'a>(
        &'a self,
        start: Option<&'a [u8]>,
        end: Option<&'a [u8]>,
    ) -> impl Iterator<Item = &'a Bytes> + 'a {
        let mut versions = self.versions.range::<[u8], _>(bounds(start, end)).map(|(k, _)| k);
        let mut locks = self.locks.range::<[u8], _>(bounds(start, end)).map(|(k, _)| k);
        let (mut next_version, mut next_lock) = (versions.next(), locks.next());
        std::iter::from_fn(move || match (next_version, next_lock) {
            (Some(v), Some(l)) if v == l => {
                (next_version, next_lock) = (versions.next(), locks.next());
                Some(v)
            }
            (Some(v), Some(l)) if v < l => {
                next_version = versions.next();
                Some(v)
            }
            (_, Some(l)) => {
                next_lock = locks.next();
                Some(l)
            }
            (Some(v), None) => {
                next_version = versions.next();
                Some(v)
            }
            (None, None) => None,
        })
    }

    /// Every lock, in key order.
    pub(crate) fn all_locks(&self) -> impl Iterator<Item = (&Bytes, &Lock)> + '_ {
        self.locks.iter()
    }
}

fn bounds<'a>(
    start: Option<&'a [u8]>,
    end: Option<&'a [u8]>,
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (start.map_or(Bound::Unbounded, Bound::Included), end.map_or(Bound::Unbounded, Bound::Excluded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prewrite_commit_rollback() {
        let mut m = Mvcc::default();
        let k = Bytes::from_static(b"k");
        m.prewrite(&[Mutation::put(k.clone(), "v1")], 10, 100).unwrap();
        assert!(matches!(
            m.prewrite(&[Mutation::put(k.clone(), "x")], 11, 100),
            Err(TxnError::Locked { lock_ts: 10, .. })
        ));
        let row = m.commit_key(&k, 10, 12).unwrap();
        assert_eq!(row.old_value, None);
        let locks = m.prewrite(&[Mutation::delete(k.clone())], 13, 100).unwrap();
        assert_eq!(locks[0].1.old_value.as_deref(), Some(&b"v1"[..]));
        assert!(m.rollback_key(&k, 13));
        assert!(m.is_rolled_back(&k, 13));
        assert!(matches!(
            m.prewrite(&[Mutation::put(k.clone(), "x")], 11, 100),
            Err(TxnError::WriteConflict { commit_ts: 12, .. })
        ));
        let rows = m.scan_committed(None, None, 0, |_| true);
        assert_eq!(rows.len(), 1);
        assert_eq!(m.latest_value(&k).as_deref(), Some(&b"v1"[..]));
    }

    #[test]
    fn compaction_keeps_what_a_read_at_the_safe_point_needs() {
        let mut m = Mvcc::default();
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        m.write_version(a.clone(), Op::Put, Bytes::from_static(b"a1"), 1, 2);
        m.write_version(a.clone(), Op::Put, Bytes::from_static(b"a2"), 3, 4);
        m.write_version(a.clone(), Op::Put, Bytes::from_static(b"a3"), 5, 6);
        m.write_version(b.clone(), Op::Put, Bytes::from_static(b"b1"), 1, 2);
        m.write_version(b.clone(), Op::Delete, Bytes::new(), 3, 4);
        assert!(!m.rollback_key(&a, 4));
        assert_eq!(m.compact(5), 3, "a@2 goes; b@2 and the delete b@4 go");
        let rows = m.scan_committed(None, None, 0, |_| true);
        let kept: Vec<(&[u8], u64)> = rows.iter().map(|r| (&r.key[..], r.commit_ts)).collect();
        assert_eq!(kept, [(&b"a"[..], 4), (&b"a"[..], 6)]);
        assert!(!m.is_rolled_back(&a, 4));
        // The change at 6 keeps its old value (the version at 4).
        assert_eq!(rows[1].old_value.as_deref(), Some(&b"a2"[..]));
    }

    #[test]
    fn snapshot_reads_see_the_versions_at_their_ts_and_the_locks_below_it() {
        let mut m = Mvcc::default();
        let (a, b, c) =
            (Bytes::from_static(b"a"), Bytes::from_static(b"b"), Bytes::from_static(b"c"));
        m.write_version(a.clone(), Op::Put, Bytes::from_static(b"a1"), 1, 2);
        m.write_version(a.clone(), Op::Delete, Bytes::new(), 5, 6);
        m.write_version(c.clone(), Op::Put, Bytes::from_static(b"c1"), 3, 4);
        m.prewrite(&[Mutation::put(b.clone(), "b1")], 10, 100).unwrap();
        let value = |v: &'static [u8]| ReadAt::Value(Bytes::from_static(v));
        assert_eq!(m.read_at(&a, 1), ReadAt::Missing);
        assert_eq!(m.read_at(&a, 2), value(b"a1"));
        assert_eq!(m.read_at(&a, 5), value(b"a1"));
        assert_eq!(m.read_at(&a, 6), ReadAt::Missing, "deleted at 6");
        assert_eq!(m.read_at(&b, 9), ReadAt::Missing, "a lock started after the read is not seen");
        assert!(matches!(m.read_at(&b, 10), ReadAt::Locked(lock) if lock.start_ts == 10));
        let keys: Vec<&[u8]> = m.keys_in(None, None).map(|k| &k[..]).collect();
        assert_eq!(keys, [&b"a"[..], b"b", b"c"]);
        let keys: Vec<&[u8]> = m.keys_in(Some(b"b"), Some(b"c")).map(|k| &k[..]).collect();
        assert_eq!(keys, [&b"b"[..]]);
        // A key with both a version and a lock comes once.
        m.prewrite(&[Mutation::put(c.clone(), "c2")], 11, 100).unwrap();
        assert_eq!(m.keys_in(None, None).count(), 3);
    }
}
