//! Test doubles of the kvfeed workspace's tests and benchmarks (not published).
//!
//! - [`store`]: [`TestStore`](store::TestStore), a ChangeData server on loopback gRPC scripted
//!   reply by reply, and the frame builders its tests send.
//! - [`pd`]: [`FakePd`](pd::FakePd), a small in-process PD whose members, leader, regions, stores
//!   and misbehaviour a test sets between calls.
//!
//! Both serve the real gRPC services of `kvfeed-proto` on `127.0.0.1` ephemeral ports. The crate
//! depends on no crate it helps test (`kvfeed-transport`, `kvfeed-regioncache`, `kvfeed`), so each
//! can dev-depend on it.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod pd;
pub mod store;
