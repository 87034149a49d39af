//! Which regions get their stale locks resolved, and when.
//!
//! A region whose resolved ts lags (a transaction holds a lock) is resolved by scanning its locks
//! below a target ts and settling each transaction. [`LockResolveQueue`] admits such tasks with
//! the original's per-region cooldown (10 s by default) but without its bugs (reference §11
//! items 1 and 11): requests for a region already queued raise its target instead of queueing
//! again, the queue is bounded, and forgetting old cooldowns keeps the recent ones.
//!
//! Time is the caller's: `now` is any monotonic clock reading, as a [`Duration`] since an origin.

use std::collections::VecDeque;
use std::time::Duration;

use hashbrown::HashMap;

/// A region to resolve locks in, below `target_ts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolveTask {
    /// The region.
    pub region_id: u64,
    /// Locks of transactions started below this ts are resolved.
    pub target_ts: u64,
}

/// What [`LockResolveQueue::request`] did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new task was queued.
    Queued,
    /// The region was queued already; its target was raised if the new one is higher.
    Merged,
    /// The region was resolved less than a cooldown ago.
    CoolingDown,
    /// The queue is full; ask again later.
    Full,
}

/// A bounded, de-duplicated queue of lock-resolution tasks with a per-region cooldown.
#[derive(Debug)]
pub struct LockResolveQueue {
    cooldown: Duration,
    capacity: usize,
    /// Regions in queue order. Invariant: each region appears once, and exactly the regions in
    /// `targets` appear.
    order: VecDeque<u64>,
    /// Queued region -> target ts.
    targets: HashMap<u64, u64>,
    /// Region -> when its last resolution started. Entries older than `cooldown` carry no
    /// information and are dropped by [`LockResolveQueue::forget_old`].
    last_run: HashMap<u64, Duration>,
}

impl LockResolveQueue {
    /// A queue of at most `capacity` tasks, resolving a region at most once per `cooldown`.
    pub fn new(capacity: usize, cooldown: Duration) -> Self {
        Self {
            cooldown,
            capacity,
            order: VecDeque::new(),
            targets: HashMap::new(),
            last_run: HashMap::new(),
        }
    }

    /// Asks for the region's locks below `target_ts` to be resolved.
    pub fn request(&mut self, now: Duration, region_id: u64, target_ts: u64) -> Admission {
        if let Some(target) = self.targets.get_mut(&region_id) {
            *target = (*target).max(target_ts);
            return Admission::Merged;
        }
        if self.last_run.get(&region_id).is_some_and(|&at| now < at + self.cooldown) {
            return Admission::CoolingDown;
        }
        if self.order.len() >= self.capacity {
            return Admission::Full;
        }
        self.order.push_back(region_id);
        self.targets.insert(region_id, target_ts);
        Admission::Queued
    }

    /// The next task to run, in request order; its cooldown starts now (whatever the outcome).
    pub fn next(&mut self, now: Duration) -> Option<ResolveTask> {
        let region_id = self.order.pop_front()?;
        let target_ts = self.targets.remove(&region_id).expect("queued regions have a target");
        self.last_run.insert(region_id, now);
        Some(ResolveTask { region_id, target_ts })
    }

    /// Drops a queued task (its region left the subscription). Returns whether one was queued.
    pub fn cancel(&mut self, region_id: u64) -> bool {
        if self.targets.remove(&region_id).is_none() {
            return false;
        }
        self.order.retain(|&r| r != region_id);
        true
    }

    /// Forgets the cooldowns that have expired, keeping the ones still running (the original
    /// dropped them all whenever its map grew past 1024 entries).
    pub fn forget_old(&mut self, now: Duration) {
        let cooldown = self.cooldown;
        self.last_run.retain(|_, at| now < *at + cooldown);
    }

    /// Queued tasks.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no task is queued.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Regions whose cooldown is remembered.
    pub fn remembered(&self) -> usize {
        self.last_run.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Admission, LockResolveQueue, ResolveTask};

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn requests_for_a_queued_region_merge_into_one_task() {
        let mut q = LockResolveQueue::new(8, s(10));
        assert_eq!(q.request(s(0), 1, 100), Admission::Queued);
        // The original queued a task for every resolved-ts event of a lagging region.
        for target in [90, 120, 110] {
            assert_eq!(q.request(s(0), 1, target), Admission::Merged);
        }
        assert_eq!(q.len(), 1);
        assert_eq!(q.next(s(0)), Some(ResolveTask { region_id: 1, target_ts: 120 }));
        assert_eq!(q.next(s(0)), None);
    }

    #[test]
    fn a_region_is_resolved_at_most_once_per_cooldown() {
        let mut q = LockResolveQueue::new(8, s(10));
        assert_eq!(q.request(s(0), 1, 100), Admission::Queued);
        assert_eq!(q.next(s(1)).map(|t| t.region_id), Some(1));
        assert_eq!(q.request(s(5), 1, 200), Admission::CoolingDown);
        assert_eq!(q.request(s(10), 1, 200), Admission::CoolingDown);
        assert_eq!(q.request(s(11), 1, 200), Admission::Queued);
    }

    #[test]
    fn the_queue_is_bounded_and_ordered() {
        let mut q = LockResolveQueue::new(2, s(10));
        assert_eq!(q.request(s(0), 1, 10), Admission::Queued);
        assert_eq!(q.request(s(0), 2, 20), Admission::Queued);
        assert_eq!(q.request(s(0), 3, 30), Admission::Full);
        assert_eq!(q.request(s(0), 2, 25), Admission::Merged, "merging needs no room");
        assert!(q.cancel(1));
        assert!(!q.cancel(1));
        assert_eq!(q.request(s(0), 3, 30), Admission::Queued);
        let order: Vec<u64> = core::iter::from_fn(|| q.next(s(0))).map(|t| t.region_id).collect();
        assert_eq!(order, [2, 3]);
        assert!(q.is_empty());
    }

    #[test]
    fn forgetting_old_cooldowns_keeps_the_running_ones() {
        // §11 item 1: the original's GC wiped every entry, so a busy client lost its rate limit.
        let mut q = LockResolveQueue::new(4096, s(10));
        for region in 0..2000 {
            assert_eq!(q.request(s(0), region, 1), Admission::Queued);
            q.next(Duration::from_millis(region * 10));
        }
        assert_eq!(q.remembered(), 2000);
        q.forget_old(s(15));
        // Regions resolved after 5 s (region 501 and up) are still cooling down at 15 s.
        assert_eq!(q.remembered(), 1499);
        assert_eq!(q.request(s(15), 500, 2), Admission::Queued);
        assert_eq!(q.request(s(15), 501, 2), Admission::CoolingDown);
    }
}
