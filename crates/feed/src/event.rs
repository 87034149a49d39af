//! What a subscription delivers: rows in domain terms and resolved timestamps, and the id that
//! names a subscription.

use core::fmt;

use bytes::Bytes;

/// The change a row makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// The key now holds `value`.
    Put,
    /// The key was deleted.
    Delete,
}

/// One committed change of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowEvent {
    /// Put or delete.
    pub op: Op,
    /// The raw key (not memcomparable-encoded), as the user wrote it.
    pub key: Bytes,
    /// The new value (empty for a delete).
    pub value: Bytes,
    /// The value before the transaction, if the key had one.
    pub old_value: Option<Bytes>,
    /// The transaction's start ts.
    pub start_ts: u64,
    /// The transaction's commit ts.
    pub commit_ts: u64,
}

impl RowEvent {
    /// A row (for tests and replays of a user's pipeline; the client makes its own).
    pub fn new(
        op: Op,
        key: Bytes,
        value: Bytes,
        old_value: Option<Bytes>,
        start_ts: u64,
        commit_ts: u64,
    ) -> Self {
        Self { op, key, value, old_value, start_ts, commit_ts }
    }

    /// The bytes this row holds, for the memory quota (keys, values and a fixed overhead).
    pub(crate) fn footprint(&self) -> usize {
        let old = self.old_value.as_ref().map_or(0, Bytes::len);
        core::mem::size_of::<Self>() + self.key.len() + self.value.len() + old
    }
}

/// One key and its value at a snapshot's ts ([`Client::snapshot`](crate::Client::snapshot)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRow {
    /// The raw key (as TiKV stores it, not memcomparable-encoded).
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
}

/// One item of a subscription's stream. New kinds of items may come in any release: match
/// with a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A committed row in the span, once per `(key, commit ts)` with
    /// [`Config::exactly_once`](crate::Config::exactly_once) (the default; at least once
    /// without it).
    ///
    /// Order: rows are not in commit-ts order, even for one key. A region's incremental scan
    /// sends each key's versions newest first, and live rows of the region (which come in
    /// commit order) interleave with the scan's; a region read again from its checkpoint sends
    /// rows above it again. What holds is the resolved ts: once [`Event::Resolved`]`(ts)`
    /// arrives, every row with `commit_ts <= ts` has arrived, so a consumer that needs commit
    /// order sorts what it holds up to each resolved ts (by commit ts, then key).
    Row(RowEvent),
    /// The subscription's resolved ts advanced: no row with `commit_ts <= ts` will follow.
    /// Published values strictly increase and are all above the start ts.
    Resolved(u64),
    /// A key and its value as of the snapshot's ts, from
    /// [`Client::subscribe_with_snapshot`](crate::Client::subscribe_with_snapshot): every one
    /// comes before [`Event::SnapshotDone`], in key order.
    Snapshot(SnapshotRow),
    /// The snapshot at this ts is complete; the changes committed after it follow.
    SnapshotDone(u64),
}

/// The id of a subscription; also its `request_id` on the wire. Never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(crate) u64);

impl SubscriptionId {
    /// The id as a number (the wire request id).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
