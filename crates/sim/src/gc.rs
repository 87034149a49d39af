//! PD's GC safe points and the simulated GC worker.
//!
//! As in PD: every service (CDC, BR, dumpling, ...) may hold a *service safe point* with a TTL
//! (`UpdateServiceGCSafePoint`); the GC worker holds one too (`gc_worker`, never expiring, at
//! the cluster's GC safe point). An update below the minimum of them all is refused: the answer
//! names the minimum, which is then above the caller's ts. A TTL of 0 or less removes the
//! service's safe point.
//!
//! The GC worker ([`GcState::advance`]) moves the cluster's safe point to `now - life_time`,
//! but never past the minimum unexpired service safe point, and never back. The store then
//! compacts ([`Mvcc::compact`](crate::mvcc::Mvcc::compact)): what is below the safe point is
//! gone, except each key's newest version at or below it. TiKV's change-data service does not
//! check the safe point: a registration below it is served from what is left, silently
//! missing changes, which is why a client must hold a service safe point and refuse to start
//! below the cluster's.

use std::collections::BTreeMap;

/// The service id of the GC worker's own safe point, as in PD.
pub const GC_WORKER_SERVICE: &str = "gc_worker";

/// One service's safe point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ServicePoint {
    safe_point: u64,
    /// Seconds (of the TSO's physical clock) at which it expires; `i64::MAX` never.
    expires_at: i64,
}

/// The answer to an update: the minimum service safe point after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MinServicePoint {
    /// The service holding it.
    pub(crate) service_id: String,
    /// Seconds it has left.
    pub(crate) ttl_secs: i64,
    /// The minimum.
    pub(crate) safe_point: u64,
}

/// PD's GC state: service safe points and the cluster's safe point.
#[derive(Debug, Default)]
pub(crate) struct GcState {
    /// Service id -> its safe point. Invariant: holds `gc_worker` at `safe_point`.
    services: BTreeMap<String, ServicePoint>,
    /// The cluster's GC safe point (versions below it may be compacted). Never decreases.
    safe_point: u64,
}

impl GcState {
    /// A state with the GC worker's safe point at 0, as PD initialises it.
    pub(crate) fn new() -> Self {
        let mut state = Self::default();
        state.set_worker(0);
        state
    }

    fn set_worker(&mut self, safe_point: u64) {
        self.safe_point = safe_point;
        self.services.insert(
            GC_WORKER_SERVICE.to_owned(),
            ServicePoint { safe_point, expires_at: i64::MAX },
        );
    }

    /// The cluster's GC safe point.
    pub(crate) fn safe_point(&self) -> u64 {
        self.safe_point
    }

    /// The minimum unexpired service safe point, after dropping the expired ones.
    fn min(&mut self, now_secs: i64) -> MinServicePoint {
        self.services.retain(|_, p| p.expires_at > now_secs);
        let (id, point) = self
            .services
            .iter()
            .min_by_key(|(_, p)| p.safe_point)
            .expect("the gc_worker service point never expires");
        MinServicePoint {
            service_id: id.clone(),
            ttl_secs: point.expires_at.saturating_sub(now_secs),
            safe_point: point.safe_point,
        }
    }

    /// `UpdateServiceGCSafePoint`: saves (or with `ttl_secs <= 0` removes) the service's safe
    /// point unless it is below the minimum; answers with the minimum after the update. The GC
    /// worker's own point cannot be set this way (`None`).
    pub(crate) fn update_service(
        &mut self,
        service_id: &str,
        ttl_secs: i64,
        safe_point: u64,
        now_secs: i64,
    ) -> Option<MinServicePoint> {
        if service_id == GC_WORKER_SERVICE {
            return None;
        }
        if ttl_secs <= 0 {
            self.services.remove(service_id);
            return Some(self.min(now_secs));
        }
        let min = self.min(now_secs);
        if safe_point < min.safe_point {
            return Some(min);
        }
        let expires_at = now_secs.saturating_add(ttl_secs);
        self.services.insert(service_id.to_owned(), ServicePoint { safe_point, expires_at });
        Some(self.min(now_secs))
    }

    /// The GC worker's round: moves the safe point to `candidate` (now minus the life time),
    /// held back by the minimum unexpired service safe point and never moving back. Returns the
    /// safe point after the round.
    pub(crate) fn advance(&mut self, candidate: u64, now_secs: i64) -> u64 {
        self.services.retain(|_, p| p.expires_at > now_secs);
        let services_min = self
            .services
            .iter()
            .filter(|(id, _)| id.as_str() != GC_WORKER_SERVICE)
            .map(|(_, p)| p.safe_point)
            .min()
            .unwrap_or(u64::MAX);
        let next = candidate.min(services_min).max(self.safe_point);
        self.set_worker(next);
        next
    }

    /// A round after the service safe points below `candidate` expired (a client that could
    /// not reach PD for longer than its TTL): they are dropped and the safe point moves to
    /// `candidate`, never back.
    pub(crate) fn force(&mut self, candidate: u64) -> u64 {
        let next = candidate.max(self.safe_point);
        self.services.retain(|_, p| p.safe_point >= next);
        self.set_worker(next);
        next
    }

    /// Every service's safe point (the GC worker's included), by id.
    pub(crate) fn services(&self) -> Vec<(String, u64)> {
        self.services.iter().map(|(id, p)| (id.clone(), p.safe_point)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_below_the_minimum_is_refused() {
        let mut gc = GcState::new();
        let min = gc.update_service("cdc", 60, 100, 0).unwrap();
        assert_eq!((min.service_id.as_str(), min.safe_point), (GC_WORKER_SERVICE, 0));
        assert_eq!(gc.advance(500, 0), 100, "held back by the service");
        // Below the minimum (the service's own 100): refused, the answer names 100.
        let refused = gc.update_service("cdc", 60, 50, 1).unwrap();
        assert_eq!((refused.service_id.as_str(), refused.safe_point), ("cdc", 100));
        // Advancing is fine.
        let min = gc.update_service("cdc", 60, 300, 1).unwrap();
        assert_eq!(min.safe_point, 100, "the GC worker's point is now the minimum");
        assert_eq!(gc.advance(500, 2), 300);
    }

    #[test]
    fn expired_and_removed_points_stop_holding_gc_back() {
        let mut gc = GcState::new();
        gc.update_service("a", 10, 100, 0).unwrap();
        gc.update_service("b", 1000, 200, 0).unwrap();
        assert_eq!(gc.advance(1_000, 5), 100);
        assert_eq!(gc.advance(1_000, 10), 200, "a expired at 10 s");
        gc.update_service("b", 0, 0, 11).unwrap();
        assert_eq!(gc.advance(1_000, 11), 1_000);
        assert_eq!(gc.advance(900, 12), 1_000, "never back");
        assert_eq!(gc.services(), vec![(GC_WORKER_SERVICE.to_owned(), 1_000)]);
        assert!(gc.update_service(GC_WORKER_SERVICE, 10, 5, 12).is_none());
    }
}
