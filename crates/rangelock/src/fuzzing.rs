//! Differential checking of [`RangeLock`] against an obviously correct model.
//!
//! The model cuts the key space at a handful of points into unit intervals and keeps, per unit,
//! either the entry locking it or the ts it holds; every query is a full scan. [`check`] applies a
//! sequence of [`Op`]s to both and panics, naming the step, at the first difference in an outcome,
//! a retry range, a resolved ts, the statistics or an invariant. The cargo-fuzz target
//! `rangelock_diff` and a proptest in the crate's tests both drive it.
//!
//! The submodules check the parts and the models themselves: [`pieces`] compares the piece index
//! with [`partition::Partition`], a plain `BTreeMap` partition, and [`ts_map`] checks that
//! partition (through [`partition::RangeTsMap`], the original's `rangeTsMap` on top of it)
//! against a naive cell-by-cell model.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::vec::Vec;

use kvfeed_span::{EncodedKey, Span};

use crate::lock::Ticket;

pub mod partition;
pub mod pieces;
pub mod ts_map;
use crate::{Advance, LockError, LockOutcome, RangeLock, RegionHandle, RegionTs, UnlockError};

/// Inner cut points of the key space: keys `a` to `h`.
const POINTS: u8 = 8;

/// One step applied to both the lock and the model. Key arguments are boundary indices:
/// 0 is minus infinity, 1 to 8 are the keys `a` to `h`, 9 is plus infinity.
#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    /// Lock `[start, end)` for a region (ids 1 to 4) at a version.
    Lock {
        /// Start boundary index.
        start: u8,
        /// End boundary index.
        end: u8,
        /// Region id, taken modulo 4, plus 1.
        region: u8,
        /// Epoch version.
        version: u8,
    },
    /// Unlock the `n`-th locked range (modulo their number) with its own arguments.
    UnlockHeld {
        /// Which locked range.
        n: u8,
        /// The resolved ts to leave behind, or the range's own.
        ts: Option<u8>,
    },
    /// Unlock with arbitrary arguments (mostly refused).
    Unlock {
        /// Start boundary index.
        start: u8,
        /// End boundary index.
        end: u8,
        /// Region id, taken modulo 4, plus 1.
        region: u8,
        /// Epoch version.
        version: u8,
    },
    /// Lock again with the arguments of the `n`-th ticket ever handed out.
    Retry {
        /// Which ticket.
        n: u8,
    },
    /// Give up the `n`-th ticket ever handed out.
    Cancel {
        /// Which ticket.
        n: u8,
    },
    /// Mark a region initialized.
    Initialize {
        /// Region id, taken modulo 4, plus 1.
        region: u8,
    },
    /// Mark a region not initialized (registered again).
    Uninitialize {
        /// Region id, taken modulo 4, plus 1.
        region: u8,
    },
    /// Advance regions to a ts.
    Advance {
        /// Region ids, each taken modulo 4, plus 1.
        regions: Vec<u8>,
        /// The ts.
        ts: u8,
    },
    /// Take a handle to a region's range (if it holds one).
    TakeHandle {
        /// Region id, taken modulo 4, plus 1.
        region: u8,
    },
    /// Advance through the `n`-th handle taken (modulo their number).
    AdvanceHandle {
        /// Which handle.
        n: u8,
        /// The ts.
        ts: u8,
    },
    /// Advance through several handles taken (each index modulo their number) in one batch.
    AdvanceHandles {
        /// Which handles.
        handles: Vec<u8>,
        /// The ts.
        ts: u8,
    },
    /// Stop the lock.
    Stop,
}

/// A whole fuzz case: the span, the start ts and the steps.
#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct Case {
    /// Lock `[b, g)` instead of the whole key space.
    pub bounded: bool,
    /// The start ts (`u64::MAX` when `None`, as in the original's tests).
    pub start_ts: Option<u8>,
    /// The steps.
    pub ops: Vec<Op>,
}

fn region_id(region: u8) -> u64 {
    u64::from(region % 4) + 1
}

/// The key of boundary `i` (empty for both infinities).
fn boundary_key(i: u8) -> EncodedKey {
    if i == 0 || i > POINTS {
        EncodedKey::default()
    } else {
        EncodedKey::from_encoded([b'a' + i - 1])
    }
}

/// The span between two boundaries, if it is not empty.
fn span(start: u8, end: u8) -> Option<Span> {
    let (start, end) = (start.min(POINTS + 1), end.min(POINTS + 1));
    if start >= end || start > POINTS {
        return None;
    }
    Span::new(boundary_key(start), boundary_key(end)).ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Free(u64),
    Locked(u64),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    lo: u8,
    hi: u8,
    region: u64,
    version: u64,
    ts: u64,
    initialized: bool,
}

/// The model: unit `i` is `[boundary i, boundary i + 1)`, inside `[lo, hi)`.
struct Model {
    lo: u8,
    hi: u8,
    units: Vec<Unit>,
    entries: BTreeMap<u64, Entry>,
    next_entry: u64,
    tickets: BTreeMap<u64, BTreeSet<u64>>,
    next_ticket: u64,
    stopped: bool,
    drained: bool,
}

impl Model {
    fn new(lo: u8, hi: u8, start_ts: u64) -> Self {
        Self {
            lo,
            hi,
            units: (0..=POINTS).map(|_| Unit::Free(start_ts)).collect(),
            entries: BTreeMap::new(),
            next_entry: 1,
            tickets: BTreeMap::new(),
            next_ticket: 1,
            stopped: false,
            drained: false,
        }
    }

    fn unit_ts(&self, i: u8) -> u64 {
        match self.units[usize::from(i)] {
            Unit::Free(ts) => ts,
            Unit::Locked(e) => self.entries[&e].ts,
        }
    }

    fn region_entry(&self, region: u64) -> Option<u64> {
        self.entries.iter().find(|(_, e)| e.region == region).map(|(&id, _)| id)
    }

    fn lock(&mut self, lo: u8, hi: u8, region: u64, version: u64) -> Result<LockOutcome, ()> {
        if lo < self.lo || hi > self.hi {
            return Err(());
        }
        if self.stopped {
            return Ok(LockOutcome::Cancelled);
        }
        let mut blocking = BTreeSet::new();
        for i in lo..hi {
            if let Unit::Locked(e) = self.units[usize::from(i)] {
                blocking.insert(e);
            }
        }
        blocking.extend(self.region_entry(region));
        if blocking.is_empty() {
            let checkpoint = (lo..hi).map(|i| self.unit_ts(i)).min().expect("range is not empty");
            let id = self.next_entry;
            self.next_entry += 1;
            self.entries
                .insert(id, Entry { lo, hi, region, version, ts: checkpoint, initialized: false });
            for i in lo..hi {
                self.units[usize::from(i)] = Unit::Locked(id);
            }
            return Ok(LockOutcome::Locked { checkpoint_ts: checkpoint });
        }
        if blocking.iter().any(|e| self.entries[e].version >= version) {
            let mut retry = Vec::new();
            let mut run: Option<u8> = None;
            for i in lo..=hi {
                let free = i < hi && matches!(self.units[usize::from(i)], Unit::Free(_));
                match (free, run) {
                    (true, None) => run = Some(i),
                    (false, Some(start)) => {
                        retry.push(span(start, i).expect("runs are not empty"));
                        run = None;
                    }
                    _ => {}
                }
            }
            return Ok(LockOutcome::Stale { retry });
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.tickets.insert(ticket, blocking);
        Ok(LockOutcome::Wait(Ticket(ticket)))
    }

    fn unlock(
        &mut self,
        lo: u8,
        hi: u8,
        region: u64,
        version: u64,
        ts: Option<u64>,
    ) -> Result<(u64, Vec<Ticket>, bool), UnlockError> {
        let id = match self.units.get(usize::from(lo)) {
            Some(Unit::Locked(id)) if self.entries[id].lo == lo => *id,
            _ => return Err(UnlockError::NotLocked),
        };
        let entry = self.entries[&id];
        if entry.region != region {
            return Err(UnlockError::WrongRegion { holder: entry.region });
        }
        if entry.version != version {
            return Err(UnlockError::WrongVersion { locked: entry.version });
        }
        if entry.hi != hi {
            return Err(UnlockError::WrongEnd { locked: boundary_key(entry.hi) });
        }
        let left = ts.unwrap_or(entry.ts);
        for i in entry.lo..entry.hi {
            self.units[usize::from(i)] = Unit::Free(left);
        }
        self.entries.remove(&id);
        let mut woken = Vec::new();
        self.tickets.retain(|&ticket, waits| {
            if waits.remove(&id) && waits.is_empty() {
                woken.push(Ticket(ticket));
                return false;
            }
            true
        });
        Ok((left, woken, self.report_drained()))
    }

    fn report_drained(&mut self) -> bool {
        let drained = self.stopped && !self.drained && self.entries.is_empty();
        self.drained |= drained;
        drained
    }

    fn advance(&mut self, region: u64, ts: u64) -> Advance {
        match self.region_entry(region) {
            Some(id) => self.advance_entry(id, ts),
            None => Advance::NotLocked,
        }
    }

    fn advance_entry(&mut self, id: u64, ts: u64) -> Advance {
        let Some(entry) = self.entries.get_mut(&id) else { return Advance::NotLocked };
        if !entry.initialized {
            Advance::NotInitialized
        } else if ts <= entry.ts {
            Advance::NotHigher
        } else {
            entry.ts = ts;
            Advance::Advanced
        }
    }

    fn resolved_ts(&self) -> u64 {
        (self.lo..self.hi).map(|i| self.unit_ts(i)).min().expect("span is not empty")
    }
}

/// Runs `case` on a [`RangeLock`] and on the model, panicking at the first difference.
pub fn check(case: &Case) {
    let (lo, hi) = if case.bounded { (2, 7) } else { (0, POINTS + 1) };
    let start_ts = case.start_ts.map_or(u64::MAX, u64::from);
    let mut both = Both {
        lock: RangeLock::new(span(lo, hi).expect("the test span is not empty"), start_ts),
        model: Model::new(lo, hi, start_ts),
        requests: Vec::new(),
        handles: Vec::new(),
    };
    for (step, op) in case.ops.iter().enumerate() {
        both.apply(op, step);
        compare(&both.lock, &both.model, step);
    }
}

/// A lock request, as boundary indices, region id and version.
#[derive(Clone, Copy)]
struct Request {
    lo: u8,
    hi: u8,
    region: u64,
    version: u64,
}

/// The lock and the model side by side.
struct Both {
    lock: RangeLock,
    model: Model,
    /// The request of every ticket handed out, in order.
    requests: Vec<Request>,
    /// Every handle taken, with the model entry it refers to.
    handles: Vec<(RegionHandle, u64)>,
}

impl Both {
    fn apply(&mut self, op: &Op, step: usize) {
        match op {
            Op::Lock { start, end, region, version } => {
                let (lo, hi) = ((*start).min(POINTS + 1), (*end).min(POINTS + 1));
                let req =
                    Request { lo, hi, region: region_id(*region), version: u64::from(*version) };
                self.lock_both(req, step);
            }
            Op::Retry { n } => {
                if let Some(&req) = self.requests.get(usize::from(*n)) {
                    self.lock_both(req, step);
                }
            }
            Op::Cancel { n } => {
                let ticket = Ticket(u64::from(*n) + 1);
                let expected = self.model.tickets.remove(&ticket.0).is_some();
                assert_eq!(
                    self.lock.cancel_wait(ticket),
                    expected,
                    "step {step}: cancel {ticket:?}"
                );
            }
            Op::UnlockHeld { n, ts } => {
                let held: Vec<Entry> = self.model.entries.values().copied().collect();
                if let Some(e) = held.get(usize::from(*n) % held.len().max(1)) {
                    let req = Request { lo: e.lo, hi: e.hi, region: e.region, version: e.version };
                    self.unlock_both(req, ts.map(u64::from), step);
                }
            }
            Op::Unlock { start, end, region, version } => {
                let (lo, hi) = ((*start).min(POINTS + 1), (*end).min(POINTS + 1));
                if span(lo, hi).is_some() {
                    let req = Request {
                        lo,
                        hi,
                        region: region_id(*region),
                        version: u64::from(*version),
                    };
                    self.unlock_both(req, None, step);
                }
            }
            Op::Initialize { region } => {
                let region = region_id(*region);
                let expected = self.model.region_entry(region).map(|id| {
                    self.model.entries.get_mut(&id).expect("found above").initialized = true;
                });
                assert_eq!(
                    self.lock.mark_initialized(region),
                    expected.is_some(),
                    "step {step}: initialize r{region}"
                );
            }
            Op::Uninitialize { region } => {
                let region = region_id(*region);
                let expected = self.model.region_entry(region).map(|id| {
                    self.model.entries.get_mut(&id).expect("found above").initialized = false;
                });
                assert_eq!(
                    self.lock.mark_uninitialized(region),
                    expected.is_some(),
                    "step {step}: uninitialize r{region}"
                );
            }
            Op::Advance { regions, ts } => {
                let ts = u64::from(*ts);
                if let [one] = regions.as_slice() {
                    let region = region_id(*one);
                    let expected = self.model.advance(region, ts);
                    assert_eq!(
                        self.lock.advance(region, ts),
                        expected,
                        "step {step}: advance r{region}"
                    );
                } else {
                    let ids: Vec<u64> = regions.iter().map(|&r| region_id(r)).collect();
                    let expected = ids
                        .iter()
                        .filter(|&&r| self.model.advance(r, ts) == Advance::Advanced)
                        .count();
                    assert_eq!(
                        self.lock.advance_batch(ids.iter().copied(), ts),
                        expected,
                        "step {step}: advance batch"
                    );
                }
            }
            Op::TakeHandle { region } => {
                let region = region_id(*region);
                let real = self.lock.handle(region);
                let expected = self.model.region_entry(region);
                assert_eq!(real.is_some(), expected.is_some(), "step {step}: handle of r{region}");
                if let (Some(handle), Some(id)) = (real, expected) {
                    self.handles.push((handle, id));
                }
            }
            Op::AdvanceHandle { n, ts } => {
                if let Some(&(handle, id)) =
                    self.handles.get(usize::from(*n) % self.handles.len().max(1))
                {
                    let ts = u64::from(*ts);
                    let expected = self.model.advance_entry(id, ts);
                    assert_eq!(
                        self.lock.advance_handle(handle, ts),
                        expected,
                        "step {step}: advance {handle:?}"
                    );
                }
            }
            Op::AdvanceHandles { handles, ts } => {
                if self.handles.is_empty() {
                    return;
                }
                let ts = u64::from(*ts);
                let batch: Vec<(RegionHandle, u64)> = handles
                    .iter()
                    .map(|n| self.handles[usize::from(*n) % self.handles.len()])
                    .collect();
                let expected = batch
                    .iter()
                    .filter(|(_, id)| self.model.advance_entry(*id, ts) == Advance::Advanced)
                    .count();
                assert_eq!(
                    self.lock.advance_handles(batch.iter().map(|(handle, _)| *handle), ts),
                    expected,
                    "step {step}: advance handles"
                );
            }
            Op::Stop => {
                let stopped = self.lock.stop();
                self.model.stopped = true;
                let woken: Vec<Ticket> =
                    core::mem::take(&mut self.model.tickets).into_keys().map(Ticket).collect();
                assert_eq!(stopped.woken, woken, "step {step}: stop wakes every waiter");
                assert_eq!(
                    stopped.drained,
                    self.model.report_drained(),
                    "step {step}: stop drained"
                );
            }
        }
    }

    fn lock_both(&mut self, req: Request, step: usize) {
        let Some(range) = span(req.lo, req.hi) else { return };
        let real = self.lock.lock(&range, req.region, req.version);
        let expected = self.model.lock(req.lo, req.hi, req.region, req.version);
        match (&real, &expected) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "step {step}: lock {range:?} r{} v{}", req.region, req.version)
            }
            (Err(LockError::OutOfSpan { .. }), Err(())) => {}
            _ => panic!("step {step}: lock {range:?}: real {real:?}, model {expected:?}"),
        }
        if let Ok(LockOutcome::Wait(_)) = real {
            self.requests.push(req);
        }
    }

    fn unlock_both(&mut self, req: Request, ts: Option<u64>, step: usize) {
        let range = span(req.lo, req.hi).expect("caller checked the range");
        let real = self
            .lock
            .unlock(&range, req.region, req.version, ts)
            .map(|u| (u.resolved_ts, u.woken, u.drained));
        let expected = self.model.unlock(req.lo, req.hi, req.region, req.version, ts);
        assert_eq!(
            real, expected,
            "step {step}: unlock {range:?} r{} v{}",
            req.region, req.version
        );
    }
}

fn compare(lock: &RangeLock, model: &Model, step: usize) {
    if let Err(broken) = lock.check_invariants() {
        panic!("step {step}: invariant broken: {broken}\n{lock:?}");
    }
    assert_eq!(lock.resolved_ts(), model.resolved_ts(), "step {step}: resolved ts\n{lock:?}");
    assert_eq!(lock.len(), model.entries.len(), "step {step}: locked count");
    let initialized = model.entries.values().filter(|e| e.initialized).count();
    assert_eq!(lock.initialized_len(), initialized, "step {step}: initialized count");
    for region in 1..=4 {
        let expected = model.region_entry(region).map(|id| {
            let e = &model.entries[&id];
            RegionTs { region_id: region, resolved_ts: e.ts, initialized: e.initialized }
        });
        assert_eq!(lock.region(region), expected, "step {step}: region {region}");
    }
    let stats = lock.stats();
    let by_key: Vec<&Entry> = {
        let mut v: Vec<&Entry> = model.entries.values().collect();
        v.sort_by_key(|e| e.lo);
        v
    };
    let as_region =
        |e: &Entry| RegionTs { region_id: e.region, resolved_ts: e.ts, initialized: e.initialized };
    let mut slowest: Option<&Entry> = None;
    let mut fastest: Option<&Entry> = None;
    for e in &by_key {
        if slowest.is_none_or(|s| e.ts < s.ts) {
            slowest = Some(e);
        }
        if fastest.is_none_or(|f| e.ts > f.ts) {
            fastest = Some(e);
        }
    }
    assert_eq!(stats.slowest, slowest.map(as_region), "step {step}: slowest");
    // The min-tree searches agree with the walk: the slowest ts (ties may pick another region),
    // and the regions below each ts.
    assert_eq!(
        lock.slowest().map(|s| s.resolved_ts),
        slowest.map(|s| s.ts),
        "step {step}: slowest through the min tree"
    );
    if let Some(found) = lock.slowest() {
        assert!(by_key.iter().any(|e| as_region(e) == found), "step {step}: slowest {found:?}");
    }
    for below in [0, 5, 10, 20, u64::MAX] {
        let lagging = lock.lagging(below, usize::MAX);
        let mut got: Vec<RegionTs> = lagging.regions.clone();
        got.sort_by_key(|r| r.region_id);
        let mut want: Vec<RegionTs> =
            by_key.iter().filter(|e| e.ts < below).map(|e| as_region(e)).collect();
        want.sort_by_key(|r| r.region_id);
        assert_eq!(got, want, "step {step}: lagging below {below}");
        assert!(!lagging.truncated);
        let limited = lock.lagging(below, 1);
        assert_eq!(limited.regions.len(), want.len().min(1), "step {step}: limit");
        assert_eq!(limited.truncated, want.len() > 1, "step {step}: truncated");
    }
    assert_eq!(stats.fastest, fastest.map(as_region), "step {step}: fastest");
    let mut holes = Vec::new();
    let mut run: Option<(u8, u64)> = None;
    for i in model.lo..=model.hi {
        match (i < model.hi).then(|| model.units[usize::from(i)]) {
            Some(Unit::Free(ts)) => run = Some(run.map_or((i, ts), |(s, m)| (s, m.min(ts)))),
            _ => {
                if let Some((s, min)) = run.take() {
                    holes.push((span(s, i).expect("runs are not empty"), min));
                }
            }
        }
    }
    assert_eq!(stats.holes, holes, "step {step}: holes");
    let locked: Vec<(Span, u64)> = lock
        .locked()
        .map(|l| (Span::new(l.start.clone(), l.end.clone()).expect("not empty"), l.region_id))
        .collect();
    let expected: Vec<(Span, u64)> =
        by_key.iter().map(|e| (span(e.lo, e.hi).expect("not empty"), e.region)).collect();
    assert_eq!(locked, expected, "step {step}: locked ranges");
    let _ = format!("{lock:?}");
}
