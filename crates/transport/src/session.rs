//! The bookkeeping of one CDC call (a "session"): which registrations it carries, which events
//! it admits, and how it ended. The call's I/O loop is [`crate::call`].
//!
//! A session is shared by its stream slot (which registers and deregisters regions on it) and its
//! receive task (which reads frames, hands events to the feed and ends the session). The task is
//! the only one that ends a session ([`Session::finish`]); others ask it to by
//! [`Session::request_close`]. Ending takes the set of registered regions in one step under the
//! session's lock, and the task reports each region [`StreamEvent::RegionFailed`] once, so a
//! region registered before the end is reported exactly once, and none can be registered after
//! it.
//!
//! The task hands the feed only what belongs to a registration the session tracks (see
//! [`Session::admit`]): events of unknown pairs are dropped (reference §5.5), resolved batches are
//! cut down to tracked regions, and the events of a deregistered registration (up to and
//! including the one error that ends it) are dropped, so a registration of the same pair made
//! again on the same stream is never confused with the old one.

use alloc::sync::Arc;
use core::time::Duration;
use std::sync::{Mutex, MutexGuard};

use hashbrown::{HashMap, HashSet};
use kvfeed_base::lock;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use crate::budget::Reserved;
use crate::error::StreamError;
use crate::event::{RegionEvent, StreamEvent};
use crate::pool::Mode;

/// The regions registered on a session, by subscription.
///
/// Invariant: no subscription maps to an empty set; `len` is the total number of regions.
#[derive(Debug, Default)]
pub(crate) struct RegionSet {
    by_request: HashMap<u64, HashSet<u64>>,
    len: usize,
}

impl RegionSet {
    /// Adds a pair; false if it was there.
    pub(crate) fn insert(&mut self, request_id: u64, region_id: u64) -> bool {
        let added = self.by_request.entry(request_id).or_default().insert(region_id);
        self.len += usize::from(added);
        added
    }

    /// Removes a pair; false if it was not there.
    pub(crate) fn remove(&mut self, request_id: u64, region_id: u64) -> bool {
        let Some(regions) = self.by_request.get_mut(&request_id) else { return false };
        let removed = regions.remove(&region_id);
        if regions.is_empty() {
            self.by_request.remove(&request_id);
        }
        self.len -= usize::from(removed);
        removed
    }

    /// Whether a pair is there.
    pub(crate) fn contains(&self, request_id: u64, region_id: u64) -> bool {
        self.by_request.get(&request_id).is_some_and(|regions| regions.contains(&region_id))
    }

    /// Takes every region of a subscription out.
    pub(crate) fn take_request(&mut self, request_id: u64) -> Vec<u64> {
        let regions: Vec<u64> = self
            .by_request
            .remove(&request_id)
            .map_or_else(Vec::new, |set| set.into_iter().collect());
        self.len -= regions.len();
        regions
    }

    /// Removes every region of a subscription; returns how many there were.
    pub(crate) fn remove_request(&mut self, request_id: u64) -> usize {
        let removed = self.by_request.remove(&request_id).map_or(0, |regions| regions.len());
        self.len -= removed;
        removed
    }

    /// Takes every pair out.
    fn take(&mut self) -> Vec<(u64, u64)> {
        let pairs = self
            .by_request
            .drain()
            .flat_map(|(request_id, regions)| {
                regions.into_iter().map(move |region| (request_id, region))
            })
            .collect();
        self.len = 0;
        pairs
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// It failed at `at`; `healthy` if it had delivered at least one frame.
    Failed { at: Instant, healthy: bool },
    /// It closed without failing: idle, deregistered, or its consumer went away.
    Closed,
}

/// What a session's owner asks of its task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CloseRequest {
    /// Fail the session with this cause.
    Fail(StreamError),
    /// Close it quietly (its regions were deregistered).
    Quiet,
}

/// State shared by a session's slot and its task.
#[derive(Debug)]
pub(crate) struct Session {
    state: Mutex<SessionState>,
    wake: Notify,
    mode: Mode,
}

#[derive(Debug)]
struct SessionState {
    regions: RegionSet,
    /// Multiplexed sessions: pairs deregistered whose old registration has not ended yet, with
    /// how many such registrations are pending. TiKV processes a stream's requests in order and
    /// ends every registration with exactly one error event (its answer to the Deregister, or an
    /// error already in flight), so while a pair's count is above 0 its events belong to an old
    /// registration and are dropped; its next ending error decrements the count and is swallowed.
    /// With the count, when the pair was first deregistered without an answer since.
    draining: HashMap<(u64, u64), (u32, Instant)>,
    /// `EventFeed` sessions: pairs deregistered locally that TiKV still streams (a V1 store
    /// cannot deregister one region). Their events are dropped until TiKV ends them with an
    /// error; registering one again needs another call (see [`Insert::Zombie`]).
    zombies: HashSet<(u64, u64)>,
    /// When the region set last became empty (`None` while it has regions).
    empty_since: Option<Instant>,
    /// `Some` once the session ended; the region set is empty from then on.
    end: Option<End>,
    close_request: Option<CloseRequest>,
}

/// The outcome of [`Session::insert`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    Added,
    AlreadyThere,
    Ended,
    /// The pair still streams on this `EventFeed` call after a local deregistration: registering
    /// it again here would be answered `DuplicateRequest` while the old registration goes on.
    /// Nothing was inserted; the caller replaces the call.
    Zombie,
}

impl Session {
    /// A session for `mode` whose set starts with one pair.
    pub(crate) fn new(mode: Mode, first: (u64, u64)) -> Arc<Self> {
        let mut regions = RegionSet::default();
        regions.insert(first.0, first.1);
        Arc::new(Self {
            state: Mutex::new(SessionState {
                regions,
                draining: HashMap::new(),
                zombies: HashSet::new(),
                empty_since: None,
                end: None,
                close_request: None,
            }),
            wake: Notify::new(),
            mode,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SessionState> {
        lock(&self.state)
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// How it ended, or `None` while it runs.
    pub(crate) fn end(&self) -> Option<End> {
        self.lock().end
    }

    /// Whether the session ended or was asked to.
    pub(crate) fn is_closing(&self) -> bool {
        let state = self.lock();
        state.end.is_some() || state.close_request.is_some()
    }

    /// The number of registered regions.
    pub(crate) fn regions(&self) -> usize {
        self.lock().regions.len()
    }

    /// Registers a pair unless the session ended. A pair whose old registration has been
    /// draining for `drain_timeout` (TiKV never answered its Deregister) closes the session
    /// instead ([`StreamError::DrainTimeout`]), and the caller registers on a new one.
    pub(crate) fn insert(
        &self,
        request_id: u64,
        region_id: u64,
        drain_timeout: Duration,
    ) -> Insert {
        let mut state = self.lock();
        if state.end.is_some() || state.close_request.is_some() {
            return Insert::Ended;
        }
        if state
            .draining
            .get(&(request_id, region_id))
            .is_some_and(|(_, since)| since.elapsed() >= drain_timeout)
        {
            drop(state);
            self.request_close(CloseRequest::Fail(StreamError::DrainTimeout));
            return Insert::Ended;
        }
        if state.zombies.contains(&(request_id, region_id)) {
            return Insert::Zombie;
        }
        state.empty_since = None;
        if state.regions.insert(request_id, region_id) {
            Insert::Added
        } else {
            Insert::AlreadyThere
        }
    }

    /// Forgets every region of a subscription; returns how many there were.
    pub(crate) fn remove_request(&self, request_id: u64) -> usize {
        let mut state = self.lock();
        let removed = state.regions.remove_request(request_id);
        state.mark_if_empty();
        removed
    }

    /// Deregisters one region (`Some`) or every region of a subscription (`None`) on a
    /// multiplexed session, about to be sent a `Deregister`: each removed pair drains (see
    /// `SessionState::draining`). Returns how many pairs were removed.
    pub(crate) fn deregister(&self, request_id: u64, region_id: Option<u64>) -> usize {
        let mut state = self.lock();
        let removed: Vec<u64> = match region_id {
            Some(region) => {
                if state.regions.remove(request_id, region) {
                    vec![region]
                } else {
                    Vec::new()
                }
            }
            None => state.regions.take_request(request_id),
        };
        let now = Instant::now();
        for region in &removed {
            state.draining.entry((request_id, *region)).or_insert((0, now)).0 += 1;
        }
        state.mark_if_empty();
        removed.len()
    }

    /// Forgets one region of an `EventFeed` session that keeps streaming it (see
    /// `SessionState::zombies`); false if it was not registered here.
    pub(crate) fn forget_streaming(&self, request_id: u64, region_id: u64) -> bool {
        let mut state = self.lock();
        let removed = state.regions.remove(request_id, region_id);
        if removed {
            state.zombies.insert((request_id, region_id));
        }
        state.mark_if_empty();
        removed
    }

    /// Decides what of a received event reaches the feed (reference §5.5): events of pairs this
    /// session does not track are dropped, those of old (draining or zombie) registrations too,
    /// resolved batches keep only the tracked, live regions, and an error ending a tracked
    /// registration forgets it.
    #[cfg(test)]
    pub(crate) fn admit(&self, event: StreamEvent) -> Option<StreamEvent> {
        Self::admit_locked(&mut self.lock(), event)
    }

    /// [`admit`](Self::admit)s an event and, if it passes, sends it with `permit` before the
    /// session's state is unlocked: an event is either on the channel before a deregistration
    /// changes the state, or dropped, so the marker `Transport::deregister` sends afterwards
    /// follows every event of the old registration.
    pub(crate) fn admit_into(&self, event: StreamEvent, reserved: Reserved<'_>) {
        let mut state = self.lock();
        // An event not admitted drops its reservation, giving its charge back.
        if let Some(event) = Self::admit_locked(&mut state, event) {
            reserved.send(event);
        }
    }

    fn admit_locked(state: &mut SessionState, event: StreamEvent) -> Option<StreamEvent> {
        match event {
            StreamEvent::Region { request_id, region_id, ref event, .. } => {
                let pair = (request_id, region_id);
                let ends = matches!(event, RegionEvent::Error(error) if error.ends_registration());
                if let Some((count, since)) = state.draining.get_mut(&pair) {
                    // An old registration's event; its ending error closes it.
                    if ends {
                        *count -= 1;
                        *since = Instant::now();
                        if *count == 0 {
                            state.draining.remove(&pair);
                        }
                    }
                    return None;
                }
                if state.zombies.contains(&pair) {
                    if ends {
                        state.zombies.remove(&pair);
                    }
                    return None;
                }
                if !state.regions.contains(request_id, region_id) {
                    return None;
                }
                if ends {
                    // TiKV dropped it: it must not be reported failed later.
                    state.regions.remove(request_id, region_id);
                    state.mark_if_empty();
                }
            }
            StreamEvent::Resolved { store_id, request_id, mut regions, ts } => {
                regions.retain(|region| {
                    let pair = (request_id, *region);
                    state.regions.contains(request_id, *region)
                        && !state.draining.contains_key(&pair)
                        && !state.zombies.contains(&pair)
                });
                if regions.is_empty() {
                    return None;
                }
                return Some(StreamEvent::Resolved { store_id, request_id, regions, ts });
            }
            StreamEvent::RegionFailed { .. } | StreamEvent::Deregistered { .. } => {}
        }
        Some(event)
    }

    /// Completes once the task is asked to end the session ([`Session::request_close`]; a
    /// request made before this is called counts too).
    pub(crate) fn close_requested(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// The close request, if any.
    pub(crate) fn close_request(&self) -> Option<CloseRequest> {
        self.lock().close_request.clone()
    }

    /// Marks the session ended and takes its regions, unless it already ended (the task's
    /// side: only the task ends a session).
    pub(crate) fn finish(&self, end: End) -> Vec<(u64, u64)> {
        let mut state = self.lock();
        if state.end.is_some() {
            return Vec::new();
        }
        state.end = Some(end);
        state.regions.take()
    }

    /// Closes the session if it has had no regions for `idle_timeout` (returning `None`);
    /// otherwise returns when to check again.
    pub(crate) fn idle_check(&self, idle_timeout: Duration) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        if !state.regions.is_empty() {
            return Some(now + idle_timeout);
        }
        let since = *state.empty_since.get_or_insert(now);
        if now < since + idle_timeout {
            return Some(since + idle_timeout);
        }
        state.end = Some(End::Closed);
        None
    }

    /// Asks the task to end the session (the first request wins).
    pub(crate) fn request_close(&self, request: CloseRequest) {
        let mut state = self.lock();
        if state.end.is_none() && state.close_request.is_none() {
            state.close_request = Some(request);
            drop(state);
            self.wake.notify_one();
        }
    }
}

impl SessionState {
    fn mark_if_empty(&mut self) {
        if self.regions.is_empty() && self.empty_since.is_none() {
            self.empty_since = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    /// A drain timeout no unit test reaches.
    const DRAIN: core::time::Duration = core::time::Duration::from_secs(3600);
    use super::*;
    use crate::event::RegionError;

    fn rows(request_id: u64, region_id: u64) -> StreamEvent {
        StreamEvent::Region {
            store_id: 1,
            request_id,
            region_id,
            event: RegionEvent::ResolvedTs(1),
        }
    }

    fn error(request_id: u64, region_id: u64, error: RegionError) -> StreamEvent {
        StreamEvent::Region { store_id: 1, request_id, region_id, event: RegionEvent::Error(error) }
    }

    fn batch(request_id: u64, regions: Vec<u64>) -> StreamEvent {
        StreamEvent::Resolved { store_id: 1, request_id, regions, ts: 9 }
    }

    #[test]
    fn each_deregistration_drains_one_ending_error() {
        let session = Session::new(Mode::Multiplexed, (1, 10));
        // Deregistered and registered again twice before TiKV answers either Deregister.
        for _ in 0..2 {
            assert_eq!(session.deregister(1, Some(10)), 1);
            assert_eq!(session.insert(1, 10, DRAIN), Insert::Added);
        }
        for _ in 0..2 {
            assert_eq!(session.admit(rows(1, 10)), None, "an old registration's event");
            assert_eq!(session.admit(batch(1, vec![10])), None);
            // A DuplicateRequest ends nothing: dropped, the count stays.
            assert_eq!(session.admit(error(1, 10, RegionError::DuplicateRequest)), None);
            assert_eq!(session.admit(error(1, 10, RegionError::RegionNotFound)), None);
        }
        assert_eq!(session.admit(rows(1, 10)), Some(rows(1, 10)), "the live registration's");
        assert_eq!(session.admit(batch(1, vec![10, 11])), Some(batch(1, vec![10])));
        let ended = error(1, 10, RegionError::RegionNotFound);
        assert_eq!(session.admit(ended.clone()), Some(ended), "it ends the live registration");
        assert_eq!(session.regions(), 0);
        // Nothing is tracked any more.
        assert_eq!(session.admit(rows(1, 10)), None);
    }

    #[test]
    fn a_whole_subscription_drains_each_region() {
        let session = Session::new(Mode::Multiplexed, (1, 10));
        assert_eq!(session.insert(1, 11, DRAIN), Insert::Added);
        assert_eq!(session.insert(2, 10, DRAIN), Insert::Added);
        assert_eq!(session.deregister(1, None), 2);
        assert_eq!(session.deregister(1, None), 0, "nothing left to deregister");
        assert_eq!(session.regions(), 1);
        assert_eq!(session.insert(1, 11, DRAIN), Insert::Added);
        assert_eq!(session.admit(error(1, 10, RegionError::RegionNotFound)), None);
        assert_eq!(session.admit(error(1, 11, RegionError::RegionNotFound)), None);
        assert_eq!(session.admit(batch(1, vec![10, 11])), Some(batch(1, vec![11])));
        assert_eq!(session.admit(rows(2, 10)), Some(rows(2, 10)));
    }

    #[test]
    fn event_feed_zombies_are_dropped_until_tikv_ends_them() {
        let session = Session::new(Mode::PerSubscription, (1, 10));
        assert!(session.forget_streaming(1, 10));
        assert!(!session.forget_streaming(1, 10));
        assert_eq!(session.insert(1, 10, DRAIN), Insert::Zombie);
        assert_eq!(session.regions(), 0, "nothing inserted");
        assert_eq!(session.admit(rows(1, 10)), None);
        assert_eq!(session.admit(error(1, 10, RegionError::Congested)), None);
        assert_eq!(session.insert(1, 10, DRAIN), Insert::Added);
        assert_eq!(session.admit(rows(1, 10)), Some(rows(1, 10)));
    }
}
