//! The timestamp oracle shared by PD and the stores.
//!
//! A timestamp is `physical_ms << 18 | logical`, as PD composes it. The physical part follows
//! the wall clock plus a test-controlled offset ([`Tso::advance`]) and never goes back; the
//! logical part counts up within a millisecond and carries into the physical part on overflow.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of the logical part of a timestamp.
pub const LOGICAL_BITS: u32 = 18;

/// Composes a timestamp from its physical (ms) and logical parts.
#[must_use]
pub const fn compose(physical_ms: i64, logical: i64) -> u64 {
    ((physical_ms as u64) << LOGICAL_BITS) | (logical as u64 & ((1 << LOGICAL_BITS) - 1))
}

/// The physical part (ms since the Unix epoch) of a timestamp.
#[must_use]
pub const fn physical_of(ts: u64) -> i64 {
    (ts >> LOGICAL_BITS) as i64
}

/// A monotonic timestamp oracle.
#[derive(Debug, Clone)]
pub(crate) struct Tso {
    physical: i64,
    logical: i64,
    offset_ms: i64,
}

impl Default for Tso {
    fn default() -> Self {
        Self::new()
    }
}

impl Tso {
    /// A fresh oracle at the current wall-clock time.
    #[must_use]
    pub(crate) fn new() -> Self {
        Self { physical: wall_ms(), logical: 0, offset_ms: 0 }
    }

    /// Moves the physical clock `ms` milliseconds ahead of the wall clock (lock TTLs expire).
    pub(crate) fn advance(&mut self, ms: i64) {
        self.offset_ms = self.offset_ms.saturating_add(ms.max(0));
    }

    /// Hands out `count` (at least 1) timestamps; returns `(physical, largest logical)`.
    pub(crate) fn allocate(&mut self, count: u32) -> (i64, i64) {
        let count = i64::from(count.max(1));
        let now = wall_ms().saturating_add(self.offset_ms);
        if now > self.physical {
            self.physical = now;
            self.logical = 0;
        }
        if self.logical + count >= 1 << LOGICAL_BITS {
            self.physical += 1;
            self.logical = 0;
        }
        self.logical += count;
        (self.physical, self.logical)
    }

    /// One new timestamp, larger than every one handed out before.
    pub(crate) fn next(&mut self) -> u64 {
        let (physical, logical) = self.allocate(1);
        compose(physical, logical)
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX >> LOGICAL_BITS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_batched() {
        let mut tso = Tso::new();
        let mut last = 0;
        for _ in 0..10_000 {
            let ts = tso.next();
            assert!(ts > last);
            last = ts;
        }
        let (p, l) = tso.allocate(10);
        assert!(compose(p, l - 9) > last);
        tso.advance(5_000);
        assert!(physical_of(tso.next()) >= physical_of(last) + 5_000);
    }
}
