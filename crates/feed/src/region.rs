//! The rows of one region registration, from TiKV's wire order to deliverable row events.

use core::fmt;
use std::sync::Arc;

use bytes::Bytes;
use kvfeed_span::Span;
use kvfeed_transport::{Row, RowKind, RowOp};

use crate::event::{Op, RowEvent};
use crate::matcher::Matcher;
use crate::prewrite_cache::PrewriteCache;

/// Why a region's rows cannot be trusted. The region must be re-requested (its registration is
/// dropped); rows before the offending one were delivered and are correct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowError {
    /// A COMMIT with no PREWRITE after the incremental scan ended.
    CommitWithoutPrewrite {
        /// The raw key.
        key: Bytes,
        /// The transaction's start ts.
        start_ts: u64,
        /// Its commit ts.
        commit_ts: u64,
    },
    /// A committed row at or below the region's resolved ts: delivering it would break a
    /// resolved ts already given out.
    BelowResolvedTs {
        /// The raw key.
        key: Bytes,
        /// The row's commit ts.
        commit_ts: u64,
        /// The region's resolved ts.
        resolved_ts: u64,
    },
    /// A committed row whose commit ts is not above its start ts.
    CommitNotAfterStart {
        /// The raw key.
        key: Bytes,
        /// The transaction's start ts.
        start_ts: u64,
        /// Its commit ts.
        commit_ts: u64,
    },
    /// A row type this client does not know.
    UnknownKind(i32),
    /// A committed row whose operation is neither put nor delete.
    UnknownOp {
        /// The raw key.
        key: Bytes,
        /// The wire value (0 when unset).
        op: i32,
    },
    /// The value of a COMMIT's prewrite, spilled to local disk, could not be read back: the
    /// row is not TiKV's fault, but it cannot be delivered.
    SpillRead {
        /// The raw key.
        key: Bytes,
        /// The I/O error.
        message: String,
    },
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CommitWithoutPrewrite { start_ts, commit_ts, .. } => {
                write!(
                    f,
                    "commit at {commit_ts} of the transaction started at {start_ts} has no prewrite"
                )
            }
            Self::BelowResolvedTs { commit_ts, resolved_ts, .. } => {
                write!(f, "row committed at {commit_ts} is not above the resolved ts {resolved_ts}")
            }
            Self::CommitNotAfterStart { start_ts, commit_ts, .. } => {
                write!(f, "commit ts {commit_ts} is not above the start ts {start_ts}")
            }
            Self::UnknownKind(kind) => write!(f, "unknown row type {kind}"),
            Self::UnknownOp { op, .. } => write!(f, "unknown row operation {op}"),
            Self::SpillRead { message, .. } => {
                write!(f, "cannot read a spilled prewrite back: {message}")
            }
        }
    }
}

impl core::error::Error for RowError {}

/// One region registration's row state: the region's part of the subscription span, the
/// subscription's start ts, the region's resolved ts and initialization, and its matcher.
///
/// Every delivered row has `start ts < commit ts`, `commit ts > start ts of the subscription`
/// and `commit ts > resolved ts` of the region at delivery, and its key inside `span`
/// (checked for any input by the `feed_rows` fuzz target).
#[derive(Debug)]
pub struct RegionRows {
    /// The part of the subscription's span this region covers (encoded keys).
    span: Span,
    /// The subscription's start ts: commits at or below it were delivered before, or are not
    /// wanted.
    start_ts: u64,
    /// The region's resolved ts: its checkpoint until TiKV advances it after the scan.
    resolved_ts: u64,
    /// Whether the incremental scan ended (INITIALIZED was received).
    initialized: bool,
    /// Allocated on the first row that needs it: most regions of a large subscription are idle,
    /// and an empty matcher is most of an idle region's size.
    matcher: Option<Box<Matcher>>,
    /// Rows dropped because their key is outside `span`.
    out_of_span: u64,
}

impl RegionRows {
    /// The state of a region registered over `span` from `checkpoint_ts`, for a subscription that
    /// started at `start_ts`.
    pub fn new(span: Span, start_ts: u64, checkpoint_ts: u64) -> Self {
        Self {
            span,
            start_ts,
            resolved_ts: checkpoint_ts,
            initialized: false,
            matcher: None,
            out_of_span: 0,
        }
    }

    /// The region's part of the subscription's span.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Gives the span back (when the region leaves its worker).
    pub fn into_span(self) -> Span {
        self.span
    }

    fn matcher(&mut self, cache: &Arc<PrewriteCache>) -> &mut Matcher {
        self.matcher.get_or_insert_with(|| Box::new(Matcher::new(Arc::clone(cache))))
    }

    /// Whether the region's incremental scan has ended.
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// The region's resolved ts.
    pub fn resolved_ts(&self) -> u64 {
        self.resolved_ts
    }

    /// Prewrites waiting for their commit or rollback.
    pub fn pending_prewrites(&self) -> usize {
        self.matcher.as_ref().map_or(0, |matcher| matcher.pending())
    }

    /// Rows dropped so far because their key was outside the region's span.
    pub fn out_of_span_rows(&self) -> u64 {
        self.out_of_span
    }

    /// Applies rows in TiKV's order, appending the rows to deliver to `out`; prewrites wait for
    /// their commits in `cache`. Stops at the first row that cannot be trusted. The rows
    /// appended own their bytes (none pins the frame it came in): a matched row has the
    /// matcher's copies, and COMMITTED rows are copied into one buffer per call.
    pub fn apply(
        &mut self,
        rows: impl IntoIterator<Item = Row>,
        cache: &Arc<PrewriteCache>,
        out: &mut Vec<RowEvent>,
    ) -> Result<(), RowError> {
        self.apply_up_to(&mut rows.into_iter(), usize::MAX, cache, out).map(|_| ())
    }

    /// Applies rows as [`apply`](Self::apply) does until the rows appended to `out` hold
    /// `budget` bytes or more (at least one row is taken): a COMMIT event of a huge transaction
    /// whose values were spilled is read back from disk a slice at a time. Returns whether
    /// `rows` has rows left.
    pub fn apply_up_to(
        &mut self,
        rows: &mut impl Iterator<Item = Row>,
        budget: usize,
        cache: &Arc<PrewriteCache>,
        out: &mut Vec<RowEvent>,
    ) -> Result<bool, RowError> {
        let mut appended = 0;
        // Indices in `out` of COMMITTED rows, whose bytes are slices of their frame (rows
        // matched with a prewrite carry the matcher's copies).
        let mut from_frame = Vec::new();
        let result = loop {
            if appended >= budget {
                break Ok(true);
            }
            let Some(row) = rows.next() else { break Ok(false) };
            let before = out.len();
            let committed = row.kind == RowKind::Committed;
            if let Err(error) = self.apply_one(row, cache, out) {
                break Err(error);
            }
            if committed && out.len() > before {
                from_frame.push(before);
            }
            appended += out[before..].iter().map(RowEvent::footprint).sum::<usize>();
        };
        own_bytes(out, &from_frame);
        result
    }

    fn apply_one(
        &mut self,
        row: Row,
        cache: &Arc<PrewriteCache>,
        out: &mut Vec<RowEvent>,
    ) -> Result<(), RowError> {
        if row.kind != RowKind::Initialized && !self.span.contains_raw_key(&row.key) {
            self.out_of_span += 1;
            return Ok(());
        }
        match row.kind {
            RowKind::Initialized => self.finish_scan(cache, out),
            RowKind::Committed => self.deliver(row, None, out),
            RowKind::Prewrite => {
                self.matcher(cache).put_prewrite(&row);
                Ok(())
            }
            RowKind::Commit => {
                let initialized = self.initialized;
                match self.matcher(cache).take_prewrite(&row, initialized) {
                    Ok(Some(matched)) => self.deliver(row, Some(matched), out),
                    Ok(None) if !initialized => {
                        self.matcher(cache).cache_commit(&row);
                        Ok(())
                    }
                    Ok(None) => Err(RowError::CommitWithoutPrewrite {
                        key: row.key,
                        start_ts: row.start_ts,
                        commit_ts: row.commit_ts,
                    }),
                    Err(error) => Err(spill_read(&row, &error)),
                }
            }
            RowKind::Rollback if self.initialized => {
                self.matcher(cache).rollback(&row);
                Ok(())
            }
            RowKind::Rollback => {
                self.matcher(cache).cache_rollback(&row);
                Ok(())
            }
            RowKind::Unspecified => Err(RowError::UnknownKind(0)),
            RowKind::Unknown(kind) => Err(RowError::UnknownKind(kind)),
        }
    }

    /// The end of the incremental scan: cached commits meet their prewrites (in arrival order,
    /// with the same checks as live commits; one still unmatched was delivered by the scan as a
    /// COMMITTED row), then cached rollbacks drop theirs.
    fn finish_scan(
        &mut self,
        cache: &Arc<PrewriteCache>,
        out: &mut Vec<RowEvent>,
    ) -> Result<(), RowError> {
        self.initialized = true;
        let Some(matcher) = self.matcher.as_deref_mut() else { return Ok(()) };
        let (commits, rollbacks) = matcher.take_cached();
        for commit in commits {
            match self.matcher(cache).take_prewrite(&commit, true) {
                Ok(Some(matched)) => self.deliver(commit, Some(matched), out)?,
                Ok(None) => {}
                Err(error) => return Err(spill_read(&commit, &error)),
            }
        }
        for rollback in &rollbacks {
            self.matcher(cache).rollback(rollback);
        }
        Ok(())
    }

    /// Delivers a committed row, unless it is at or below the subscription's start ts (TiKV may
    /// resend old commits); refuses one at or below the region's resolved ts. A COMMIT comes
    /// with the key, value and old value the matcher kept for it (`matched`); a COMMITTED row
    /// carries its own.
    fn deliver(
        &self,
        row: Row,
        matched: Option<(Bytes, Bytes, Bytes)>,
        out: &mut Vec<RowEvent>,
    ) -> Result<(), RowError> {
        if row.commit_ts <= row.start_ts {
            return Err(RowError::CommitNotAfterStart {
                key: row.key.clone(),
                start_ts: row.start_ts,
                commit_ts: row.commit_ts,
            });
        }
        if row.commit_ts <= self.start_ts {
            return Ok(());
        }
        if row.commit_ts <= self.resolved_ts {
            return Err(RowError::BelowResolvedTs {
                key: row.key.clone(),
                commit_ts: row.commit_ts,
                resolved_ts: self.resolved_ts,
            });
        }
        let op = match row.op {
            RowOp::Put => Op::Put,
            RowOp::Delete => Op::Delete,
            RowOp::Unspecified => return Err(RowError::UnknownOp { key: row.key.clone(), op: 0 }),
            RowOp::Unknown(op) => return Err(RowError::UnknownOp { key: row.key.clone(), op }),
        };
        let (key, value, old_value) = match matched {
            Some(matched) => matched,
            None => (row.key, row.value, row.old_value),
        };
        out.push(RowEvent {
            op,
            key,
            value,
            old_value: (!old_value.is_empty()).then_some(old_value),
            start_ts: row.start_ts,
            commit_ts: row.commit_ts,
        });
        Ok(())
    }

    /// Raises the region's resolved ts, once the scan has ended. A lower or equal ts is ignored
    /// (TiKV may send one). Prewrites of transactions started below the new ts are orphans and
    /// are dropped. Returns whether the ts moved.
    pub fn advance(&mut self, ts: u64) -> bool {
        if !self.initialized || ts <= self.resolved_ts {
            return false;
        }
        self.resolved_ts = ts;
        if let Some(matcher) = self.matcher.as_deref_mut() {
            matcher.collect_orphans(ts);
        }
        true
    }
}

/// Moves the bytes of the rows of `out` at `indices` into one buffer of their own. Rows fresh
/// from the transport share the buffer of their whole frame, so an unread row would keep the
/// frame's other rows (the prewrites the matcher copied, rows of other regions) in memory
/// beyond what the quota counts for it; after this, they pin exactly their own bytes, with one
/// allocation per batch.
fn own_bytes(out: &mut [RowEvent], indices: &[usize]) {
    let rows = || indices.iter().map(|&index| &out[index]);
    let total: usize = rows()
        .map(|row| row.key.len() + row.value.len() + row.old_value.as_ref().map_or(0, Bytes::len))
        .sum();
    if total == 0 {
        return;
    }
    let mut buffer = bytes::BytesMut::with_capacity(total);
    for row in rows() {
        buffer.extend_from_slice(&row.key);
        buffer.extend_from_slice(&row.value);
        if let Some(old) = &row.old_value {
            buffer.extend_from_slice(old);
        }
    }
    let mut rest = buffer.freeze();
    for &index in indices {
        let row = &mut out[index];
        row.key = rest.split_to(row.key.len());
        row.value = rest.split_to(row.value.len());
        if let Some(old) = &mut row.old_value {
            *old = rest.split_to(old.len());
        }
    }
}

fn spill_read(row: &Row, error: &std::io::Error) -> RowError {
    RowError::SpillRead { key: row.key.clone(), message: error.to_string() }
}

#[cfg(test)]
mod tests;
