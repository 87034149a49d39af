//! Test doubles of the kvfeed workspace's tests and benchmarks (not published).
//!
//! - [`store`]: [`TestStore`](store::TestStore), a ChangeData server on loopback gRPC scripted
//!   reply by reply, and the frame builders its tests send.
//!
//! It serves the real gRPC service of `kvfeed-proto` on `127.0.0.1` ephemeral ports. The PD double
//! is not here: the simulator's PD (`kvfeed_sim::scripted::ScriptedPd`) is the repository's one PD.
//! The crate depends on no crate it helps test (`kvfeed-transport`, `kvfeed`), so each can
//! dev-depend on it.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod store;
