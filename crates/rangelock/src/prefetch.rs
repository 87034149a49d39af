//! Software prefetch: a hint that a cache line is needed soon, so that its miss overlaps other
//! work instead of following it.
//!
//! The crate's only `unsafe` code is here. A prefetch reads nothing into the program and never
//! faults, whatever the address, so any pointer may be passed, even a dangling one. On targets
//! other than x86-64 the hint is a no-op (the results are the same, only slower at scale).

#![allow(unsafe_code)]

/// Requests the cache line holding `p` into every cache level.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint: it does not access memory architecturally, never faults
    // (an invalid address is ignored), and SSE, which it requires, is part of the x86-64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
