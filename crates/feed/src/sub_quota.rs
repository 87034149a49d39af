//! A subscription's own quota of unread row bytes ([`Config::subscription_quota`]): a soft
//! limit, checked before a batch is delivered and given back as the batch is read.
//!
//! Soft, because a worker that finds the subscription below its limit delivers its whole batch,
//! which may take the subscription past it: so the unread bytes stay under the limit plus one
//! batch per region worker (batches are sliced to a few MiB, see
//! [`Shared::batch_bytes`](crate::shared::Shared)). A region refused (the subscription at or over
//! its limit) waits for [`SubQuota::room`] without holding anything, so waiting regions never
//! starve the ones still delivering, and once it is woken its next batch is admitted.
//!
//! [`Config::subscription_quota`]: crate::Config::subscription_quota

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Unread bytes of one subscription against its limit.
#[derive(Debug)]
pub(crate) struct SubQuota {
    limit: usize,
    /// Bytes of delivered batches not yet read. May exceed `limit` by the batches admitted
    /// while it was below.
    used: AtomicUsize,
    /// Woken when `used` falls to half of `limit` or below.
    freed: Notify,
}

/// Bytes charged to a [`SubQuota`] by one batch, given back on drop.
#[derive(Debug)]
pub(crate) struct SubCharge {
    quota: Arc<SubQuota>,
    bytes: usize,
}

impl SubQuota {
    /// A quota of `limit` bytes (at least 1).
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit: limit.max(1), used: AtomicUsize::new(0), freed: Notify::new() })
    }

    fn half(&self) -> usize {
        self.limit / 2
    }

    /// Charges `bytes` if the subscription is below its limit; `None` if it is not.
    pub(crate) fn try_charge(self: &Arc<Self>, bytes: usize) -> Option<SubCharge> {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used >= self.limit {
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used.saturating_add(bytes),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(SubCharge { quota: Arc::clone(self), bytes }),
                Err(now) => used = now,
            }
        }
    }

    /// Resolves once at most half of the limit is in use.
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            // Registered before the check: a release between the check and the await wakes it.
            notified.as_mut().enable();
            if self.used.load(Ordering::Acquire) <= self.half() {
                return;
            }
            notified.await;
        }
    }

    /// Bytes in use.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl SubCharge {
    /// Gives back all but `bytes` of the charge (rows dropped from its batch).
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            let freed = std::mem::replace(&mut self.bytes, bytes) - bytes;
            // Dropping a charge of `freed` gives it back (and wakes waiters at half).
            drop(SubCharge { quota: Arc::clone(&self.quota), bytes: freed });
        }
    }
}

impl Drop for SubCharge {
    fn drop(&mut self) {
        let quota = &self.quota;
        let before = quota.used.fetch_sub(self.bytes, Ordering::AcqRel);
        let after = before - self.bytes;
        if before > quota.half() && after <= quota.half() {
            quota.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_admitted_below_the_limit_and_refused_at_it() {
        let quota = SubQuota::new(100);
        let first = quota.try_charge(60).expect("below the limit");
        // 60 < 100: admitted, and it takes the subscription past its limit (soft).
        let second = quota.try_charge(60).expect("still below the limit");
        assert_eq!(quota.used(), 120);
        assert!(quota.try_charge(1).is_none());
        drop(first);
        assert_eq!(quota.used(), 60);
        assert!(quota.try_charge(1).is_some_and(|charge| charge.bytes == 1));
        drop(second);
        assert_eq!(quota.used(), 0);
    }

    #[test]
    fn a_charge_shrinks_to_what_its_batch_kept() {
        let quota = SubQuota::new(100);
        let mut charge = quota.try_charge(80).expect("room");
        charge.shrink_to(30);
        assert_eq!(quota.used(), 30);
        charge.shrink_to(50);
        assert_eq!(quota.used(), 30, "a charge only shrinks");
        drop(charge);
        assert_eq!(quota.used(), 0);
    }

    #[test]
    fn a_batch_larger_than_the_limit_gets_through_an_empty_quota() {
        let quota = SubQuota::new(10);
        let charge = quota.try_charge(1_000).expect("nothing unread");
        assert!(quota.try_charge(1).is_none());
        drop(charge);
        assert_eq!(quota.used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn room_waits_for_half_the_limit_without_holding_any() {
        let quota = SubQuota::new(100);
        let mut charges: Vec<_> = (0..4).map(|_| quota.try_charge(25).expect("room")).collect();
        let waiter = tokio::spawn({
            let quota = Arc::clone(&quota);
            async move { quota.room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // The waiter holds nothing: another region's batch is still admitted at 75 bytes.
        charges.pop();
        let other = quota.try_charge(25).expect("the waiter reserves nothing");
        drop(other);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "75 bytes unread is above half");
        charges.pop();
        waiter.await.expect("woken at half");
        assert_eq!(quota.used(), 50);
    }
}
