//! The verifier: checks one subscriber's event log against the recorded commits (design §4,
//! invariants 1-4).
//!
//! Give it the cluster's committed rows ([`crate::Cluster::committed_rows`]), the subscription's
//! span and start ts, and the subscriber's log of [`FeedEvent`]s in arrival order. It counts:
//!
//! - **missing** (invariant 1): committed in the span with `commit_ts > start_ts`, never
//!   delivered;
//! - **duplicated**: delivered more than once (allowed, at-least-once, but reported);
//! - **out of span** (invariant 3): a row whose raw key is outside the span;
//! - **resolved-ts violations** (invariant 2): a row with `commit_ts <=` a resolved ts already
//!   published; **regressions**: a resolved ts below an earlier one;
//! - **unexpected**: a row that was never committed (wrong ts, op or value, or at or below the
//!   start ts);
//! - **after unsubscribe** (invariant 4): anything delivered after [`FeedEvent::Unsubscribed`].
//!
//! Each kind keeps its first offender.

use std::collections::HashMap;

use bytes::Bytes;
use kvfeed_span::Span;

use crate::mvcc::{CommittedRow, Op};

/// A row as a subscriber received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowEvent {
    /// The raw key.
    pub key: Bytes,
    /// Put or delete.
    pub op: Op,
    /// The value (empty for deletes).
    pub value: Bytes,
    /// The previous value, if any.
    pub old_value: Option<Bytes>,
    /// Start ts.
    pub start_ts: u64,
    /// Commit ts.
    pub commit_ts: u64,
}

impl From<&CommittedRow> for RowEvent {
    fn from(r: &CommittedRow) -> Self {
        Self {
            key: r.key.clone(),
            op: r.op,
            value: r.value.clone(),
            old_value: r.old_value.clone(),
            start_ts: r.start_ts,
            commit_ts: r.commit_ts,
        }
    }
}

/// One entry of a subscriber's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A delivered row.
    Row(RowEvent),
    /// A published resolved ts.
    Resolved(u64),
    /// Unsubscribe completed; nothing may follow.
    Unsubscribed,
}

/// What the verifier found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows the subscriber should have received.
    pub expected: usize,
    /// Rows delivered (with duplicates).
    pub delivered: usize,
    /// Expected rows never delivered.
    pub missing: usize,
    /// Deliveries of a row already delivered.
    pub duplicated: usize,
    /// Rows outside the span.
    pub out_of_span: usize,
    /// Rows at or below a resolved ts already published.
    pub resolved_violations: usize,
    /// Resolved ts lower than an earlier one.
    pub resolved_regressions: usize,
    /// Rows that match no commit (or are at or below the start ts).
    pub unexpected: usize,
    /// Events after unsubscribe.
    pub after_unsubscribe: usize,
    /// First missing row.
    pub first_missing: Option<RowEvent>,
    /// First duplicated row.
    pub first_duplicated: Option<RowEvent>,
    /// First out-of-span row.
    pub first_out_of_span: Option<RowEvent>,
    /// First resolved-ts violation: the row and the resolved ts it broke.
    pub first_resolved_violation: Option<(RowEvent, u64)>,
    /// First regression: `(previous, new)`.
    pub first_resolved_regression: Option<(u64, u64)>,
    /// First unexpected row.
    pub first_unexpected: Option<RowEvent>,
    /// First event after unsubscribe.
    pub first_after_unsubscribe: Option<FeedEvent>,
}

impl Report {
    /// True when no invariant broke (duplicates are allowed).
    #[must_use]
    pub fn ok(&self) -> bool {
        self.missing == 0
            && self.out_of_span == 0
            && self.resolved_violations == 0
            && self.resolved_regressions == 0
            && self.unexpected == 0
            && self.after_unsubscribe == 0
    }

    /// The first thing the report found wrong, in words (`None` when [`Report::ok`]).
    pub fn first_violation(&self) -> Option<String> {
        if let Some(row) = &self.first_missing {
            return Some(format!("missing {row:?} ({} missing)", self.missing));
        }
        if let Some(row) = &self.first_out_of_span {
            return Some(format!("out of span {row:?}"));
        }
        if let Some((row, ts)) = &self.first_resolved_violation {
            return Some(format!("{row:?} delivered after resolved ts {ts}"));
        }
        if let Some((before, after)) = self.first_resolved_regression {
            return Some(format!("resolved ts went from {before} back to {after}"));
        }
        if let Some(row) = &self.first_unexpected {
            return Some(format!("unexpected {row:?}"));
        }
        if let Some(event) = &self.first_after_unsubscribe {
            return Some(format!("{event:?} after unsubscribe"));
        }
        None
    }
}

fn note<T: Clone>(count: &mut usize, first: &mut Option<T>, what: &T) {
    *count += 1;
    if first.is_none() {
        *first = Some(what.clone());
    }
}

/// Checks `log` for a subscription of `span` from `start_ts` against `commits`.
#[must_use]
pub fn verify(commits: &[CommittedRow], span: &Span, start_ts: u64, log: &[FeedEvent]) -> Report {
    let mut report = Report::default();
    let expected: Vec<&CommittedRow> = commits
        .iter()
        .filter(|c| c.commit_ts > start_ts && span.contains_raw_key(&c.key))
        .collect();
    report.expected = expected.len();
    let by_id: HashMap<(&[u8], u64, u64), &CommittedRow> =
        commits.iter().map(|c| ((&c.key[..], c.start_ts, c.commit_ts), c)).collect();
    let mut seen: HashMap<(Bytes, u64, u64), usize> = HashMap::new();
    let mut resolved: Option<u64> = None;
    let mut unsubscribed = false;
    for event in log {
        if unsubscribed {
            note(&mut report.after_unsubscribe, &mut report.first_after_unsubscribe, event);
            continue;
        }
        match event {
            FeedEvent::Unsubscribed => unsubscribed = true,
            FeedEvent::Resolved(ts) => {
                if let Some(prev) = resolved.filter(|p| ts < p) {
                    note(
                        &mut report.resolved_regressions,
                        &mut report.first_resolved_regression,
                        &(prev, *ts),
                    );
                } else {
                    resolved = Some(*ts);
                }
            }
            FeedEvent::Row(row) => {
                report.delivered += 1;
                if !span.contains_raw_key(&row.key) {
                    note(&mut report.out_of_span, &mut report.first_out_of_span, row);
                }
                if let Some(r) = resolved.filter(|r| row.commit_ts <= *r) {
                    note(
                        &mut report.resolved_violations,
                        &mut report.first_resolved_violation,
                        &(row.clone(), r),
                    );
                }
                let matches = by_id
                    .get(&(&row.key[..], row.start_ts, row.commit_ts))
                    .is_some_and(|c| c.op == row.op && c.value == row.value);
                if !matches || row.commit_ts <= start_ts {
                    note(&mut report.unexpected, &mut report.first_unexpected, row);
                }
                let n = seen.entry((row.key.clone(), row.start_ts, row.commit_ts)).or_insert(0);
                *n += 1;
                if *n > 1 {
                    note(&mut report.duplicated, &mut report.first_duplicated, row);
                }
            }
        }
    }
    for c in expected {
        if !seen.contains_key(&(c.key.clone(), c.start_ts, c.commit_ts)) {
            note(&mut report.missing, &mut report.first_missing, &RowEvent::from(c));
        }
    }
    report
}

/// The verifier's report on the log of a subscription that stopped (or was read) only up to
/// the resolved ts `resolved`: rows committed above it are checked only if they were delivered
/// (rows are not held back until their resolved ts, so some may have been).
#[must_use]
pub fn verify_up_to(
    commits: &[CommittedRow],
    span: &Span,
    start_ts: u64,
    log: &[FeedEvent],
    resolved: u64,
) -> Report {
    let seen: std::collections::HashSet<(Bytes, u64)> = log
        .iter()
        .filter_map(|event| match event {
            FeedEvent::Row(row) => Some((row.key.clone(), row.commit_ts)),
            _ => None,
        })
        .collect();
    let due: Vec<CommittedRow> = commits
        .iter()
        .filter(|c| c.commit_ts <= resolved || seen.contains(&(c.key.clone(), c.commit_ts)))
        .cloned()
        .collect();
    verify(&due, span, start_ts, log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvfeed_span::table::{record_key, table_span};

    fn commit(table: i64, handle: i64, start_ts: u64, commit_ts: u64) -> CommittedRow {
        CommittedRow {
            key: Bytes::from(record_key(table, handle)),
            op: Op::Put,
            value: Bytes::from(format!("v{handle}")),
            old_value: None,
            start_ts,
            commit_ts,
        }
    }

    fn good() -> (Vec<CommittedRow>, Vec<FeedEvent>) {
        let commits = vec![
            commit(1, 1, 10, 11),
            commit(1, 2, 12, 13),
            commit(2, 1, 14, 15),
            commit(1, 0, 1, 2),
        ];
        let log = vec![
            FeedEvent::Row(RowEvent::from(&commits[0])),
            FeedEvent::Resolved(11),
            FeedEvent::Row(RowEvent::from(&commits[1])),
            FeedEvent::Resolved(20),
            FeedEvent::Unsubscribed,
        ];
        (commits, log)
    }

    #[test]
    fn clean_log_passes() {
        let (commits, log) = good();
        let r = verify(&commits, &table_span(1), 5, &log);
        assert!(r.ok(), "{r:?}");
        assert_eq!((r.expected, r.delivered), (2, 2));
    }

    #[test]
    fn catches_each_violation() {
        let (commits, log) = good();
        let span = table_span(1);
        // Missing: drop the first row.
        let r = verify(&commits, &span, 5, &log[1..]);
        assert_eq!(r.missing, 1);
        assert_eq!(r.first_missing.as_ref().map(|m| m.commit_ts), Some(11));
        // Duplicated (not a failure by itself).
        let mut dup = log.clone();
        dup.insert(1, log[0].clone());
        let r = verify(&commits, &span, 5, &dup);
        assert_eq!(r.duplicated, 1);
        assert!(r.ok());
        // Out of span: a row of table 2.
        let mut oos = log.clone();
        oos.insert(0, FeedEvent::Row(RowEvent::from(&commits[2])));
        let r = verify(&commits, &span, 5, &oos);
        assert_eq!((r.out_of_span, r.ok()), (1, false));
        // Resolved-ts violation: the second row after resolved 20.
        let bad = vec![log[0].clone(), FeedEvent::Resolved(20), log[2].clone()];
        let r = verify(&commits, &span, 5, &bad);
        assert_eq!(r.resolved_violations, 1);
        assert_eq!(r.first_resolved_violation.as_ref().map(|v| v.1), Some(20));
        // Regression.
        let mut reg = log.clone();
        reg.insert(4, FeedEvent::Resolved(12));
        let r = verify(&commits, &span, 5, &reg);
        assert_eq!((r.resolved_regressions, r.first_resolved_regression), (1, Some((20, 12))));
        // Unexpected: a doctored value, and a row at or below the start ts.
        let mut wrong = RowEvent::from(&commits[1]);
        wrong.value = Bytes::from_static(b"forged");
        let mut un = log.clone();
        un.insert(0, FeedEvent::Row(wrong));
        un.insert(0, FeedEvent::Row(RowEvent::from(&commits[3])));
        let r = verify(&commits, &span, 5, &un);
        assert_eq!(r.unexpected, 2);
        // After unsubscribe.
        let mut after = log.clone();
        after.push(FeedEvent::Resolved(30));
        let r = verify(&commits, &span, 5, &after);
        assert_eq!((r.after_unsubscribe, r.ok()), (1, false));
    }
}

/// What [`verify_snapshot`] found wrong with a snapshot, each kind with its first offender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    /// Keys delivered.
    pub rows: usize,
    /// Keys with a value at the ts that were not delivered.
    pub missing: usize,
    /// Keys delivered without a value at the ts (never written, deleted, written later, or
    /// outside the span).
    pub unexpected: usize,
    /// Keys delivered with a value other than theirs at the ts.
    pub wrong_value: usize,
    /// Keys delivered twice, or after a greater key.
    pub out_of_order: usize,
    /// The first offender, described.
    pub first: Option<String>,
}

impl SnapshotReport {
    /// Whether the snapshot is exactly the span's state at the ts, in key order.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.missing + self.unexpected + self.wrong_value + self.out_of_order == 0
    }
}

/// The state of `span` at `ts` from the commit history: each key's value as of its last commit
/// at or before `ts` (deleted keys left out), in key order.
#[must_use]
pub fn state_at(commits: &[CommittedRow], span: &Span, ts: u64) -> Vec<(Bytes, Bytes)> {
    let mut last: std::collections::BTreeMap<&Bytes, &CommittedRow> =
        std::collections::BTreeMap::new();
    for row in commits.iter().filter(|row| row.commit_ts <= ts && span.contains_raw_key(&row.key)) {
        let newer = last.get(&row.key).is_none_or(|seen| seen.commit_ts < row.commit_ts);
        if newer {
            last.insert(&row.key, row);
        }
    }
    last.into_iter()
        .filter(|(_, row)| row.op == Op::Put)
        .map(|(key, row)| (key.clone(), row.value.clone()))
        .collect()
}

/// Checks a snapshot of `span` at `ts` (raw keys and values, in delivery order) against the
/// span's state at `ts` from `commits`.
#[must_use]
pub fn verify_snapshot(
    commits: &[CommittedRow],
    span: &Span,
    ts: u64,
    rows: &[(Bytes, Bytes)],
) -> SnapshotReport {
    let expected: HashMap<Bytes, Bytes> = state_at(commits, span, ts).into_iter().collect();
    let mut report = SnapshotReport { rows: rows.len(), ..SnapshotReport::default() };
    let mut previous: Option<&Bytes> = None;
    let mut delivered = std::collections::HashSet::new();
    for (key, value) in rows {
        if previous.is_some_and(|p| p >= key) {
            note(&mut report.out_of_order, &mut report.first, &format!("{key:02x?} out of order"));
        }
        previous = Some(key);
        delivered.insert(key.clone());
        match expected.get(key) {
            None => note(
                &mut report.unexpected,
                &mut report.first,
                &format!("{key:02x?} has no value at {ts}"),
            ),
            Some(v) if v != value => {
                note(
                    &mut report.wrong_value,
                    &mut report.first,
                    &format!("{key:02x?}: wrong value"),
                );
            }
            Some(_) => {}
        }
    }
    let mut missing: Vec<&Bytes> =
        expected.keys().filter(|key| !delivered.contains(*key)).collect();
    missing.sort();
    for key in missing {
        note(&mut report.missing, &mut report.first, &format!("{key:02x?} missing"));
    }
    report
}
