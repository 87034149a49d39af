//! What moves between the client's stages: a locked region ([`Owned`]), the messages the
//! scheduler sends a region worker ([`WorkerMsg`], through [`Workers`]), and the message a worker
//! sends back when a region's registration ended ([`Finished`], naming the [`RegionEnd`]).
//!
//! The stages talk one way through these values: the scheduler hands regions to workers, the
//! workers hand finished regions back on a channel the scheduler reads; neither calls into the
//! other. This module imports no stage.
//!
//! Ownership is the correctness argument. A successful range-lock acquisition produces one
//! [`Owned`] value; it moves from the scheduler's request task into its worker and back to the
//! scheduler in a [`Finished`] message, and is never copied: every lock is released exactly once.

use std::time::Duration;

use kvfeed_rangelock::RegionHandle;
use kvfeed_regioncache::{RegionVerId, RpcContext};
use kvfeed_span::Span;
use kvfeed_transport::{EventCharge, RegionEvent, StreamError, TransportError};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::error::Error;
use crate::subscription::SubRef;

/// Capacity of each region worker's queue, in messages.
const WORKER_QUEUE: usize = 1024;

/// A region whose range this client holds in the subscription's range lock: the only handle
/// to that lock entry.
#[derive(Debug)]
pub(crate) struct Owned {
    pub(crate) sub: SubRef,
    pub(crate) region: RegionVerId,
    /// The part of the subscription's span the region covers.
    pub(crate) span: Span,
    /// Where the next registration starts: the region's resolved ts.
    pub(crate) checkpoint_ts: u64,
    /// The locked range in the subscription's range lock, taken when it was locked and kept
    /// until it is unlocked: the worker advances the region through it (no region-id lookup);
    /// a handle of an earlier lock of the slot is refused by the lock.
    pub(crate) handle: RegionHandle,
}

/// A message to a region worker.
#[derive(Debug)]
pub(crate) enum WorkerMsg {
    /// A region is about to be registered.
    Pending { owned: Owned, seq: u64, ctx: RpcContext, permit: OwnedSemaphorePermit },
    /// The register call of registration `seq` returned.
    Registered { sub: u64, region: u64, seq: u64, result: Option<TransportError> },
    /// Something happened to a region. The charge holds the event's bytes in the memory quota
    /// until the worker is done with it.
    Region { store_id: u64, sub: u64, region: u64, event: RegionEvent, charge: EventCharge },
    /// These regions of a subscription resolved up to `ts`, as the store said.
    Resolved { store_id: u64, sub: u64, regions: Vec<u64>, ts: u64 },
    /// The stream carrying the region failed.
    Failed { sub: u64, region: u64, cause: StreamError },
    /// The transport's marker after deregistering the region: no event of its old
    /// registration follows.
    Deregistered { sub: u64, region: u64 },
    /// The subscription stopped: release its regions.
    Stop { sub: u64 },
}

/// What becomes of a region whose registration ended, as its worker decided.
#[derive(Debug)]
pub(crate) enum RegionEnd {
    /// Request the same region again after the delay, keeping its range locked.
    Retry(Duration),
    /// Request the same region again once its subscription's own quota has room (it was full
    /// when the region had rows to deliver), keeping its range locked.
    AwaitQuota,
    /// Unlock and re-divide the range through PD after the delay (the region split, merged or
    /// moved).
    Reload(Duration),
    /// Unlock: the subscription stopped.
    Release,
    /// Unlock, and fail the subscription with the error.
    Fail(Box<Error>),
}

/// A region handed back to the scheduler by its worker.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) owned: Owned,
    pub(crate) end: RegionEnd,
}

/// The sending side of the workers' hand-back channel. Unbounded so that a worker never waits
/// for the scheduler: it holds at most one message per region, and regions are bounded by the
/// range locks.
pub(crate) type FinishedSender = mpsc::UnboundedSender<Finished>;
/// The scheduler's end of the hand-back channel.
pub(crate) type FinishedReceiver = mpsc::UnboundedReceiver<Finished>;

/// The region workers' queues: a region is pinned to `queues[seahash(id) % len]`.
#[derive(Clone, Debug)]
pub(crate) struct Workers {
    /// Invariant: not empty.
    queues: Vec<mpsc::Sender<WorkerMsg>>,
}

impl Workers {
    /// `count` (at least 1) worker queues, and their receiving ends in worker order.
    pub(crate) fn new(count: usize) -> (Self, Vec<mpsc::Receiver<WorkerMsg>>) {
        let (queues, receivers) = (0..count.max(1)).map(|_| mpsc::channel(WORKER_QUEUE)).unzip();
        (Self { queues }, receivers)
    }

    /// How many workers there are.
    pub(crate) fn len(&self) -> usize {
        self.queues.len()
    }

    /// The worker a region is pinned to.
    pub(crate) fn index_of(&self, region_id: u64) -> usize {
        let hash = seahash::hash(&region_id.to_le_bytes());
        (hash % self.queues.len() as u64) as usize
    }

    /// Sends to the worker the region is pinned to. Fails only when the worker stopped (the
    /// client is shutting down).
    pub(crate) async fn send_for(&self, region_id: u64, message: WorkerMsg) -> Result<(), ()> {
        self.send_to(self.index_of(region_id), message).await
    }

    /// Sends to worker `index`.
    pub(crate) async fn send_to(&self, index: usize, message: WorkerMsg) -> Result<(), ()> {
        self.queues[index].send(message).await.map_err(drop)
    }

    /// Tells every worker to release the subscription's regions.
    pub(crate) async fn stop_everywhere(&self, sub: u64) {
        for queue in &self.queues {
            let _ = queue.send(WorkerMsg::Stop { sub }).await;
        }
    }
}
