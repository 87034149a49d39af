//! The event channel's byte budget: events waiting on the channel hold at most
//! [`TransportConfig::event_channel_bytes`](crate::TransportConfig::event_channel_bytes) bytes
//! (their [`StreamEvent::footprint`]), besides at most
//! [`event_channel_capacity`](crate::TransportConfig::event_channel_capacity) of them.
//!
//! Every event is charged before it goes on the channel ([`EventSender`]), travels with its
//! charge, and the charge is given back when the receiver takes it ([`Events::recv`]), when the
//! receiver drops the [`EventCharge`] it took it with ([`Events::recv_charged`]: the budget then
//! also covers what the receiver does with the event), or when the event is dropped unsent (a
//! session may drop or trim an event it admits).
//!
//! [`Events::recv`]: crate::Events::recv
//! [`Events::recv_charged`]: crate::Events::recv_charged While the budget is spent the streams stop reading, and HTTP/2 flow control slows
//! the stores down: a frame of large rows weighs what it holds, not one slot of a count.
//!
//! Invariant: the permits taken from the semaphore are exactly the charges of the events on the
//! channel plus those of events being sent; each charge is given back once, as carried.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use crate::event::StreamEvent;

/// An event on the channel, with the charge it holds.
pub(crate) type Charged = (StreamEvent, u32);

/// The byte budget of the event channel.
#[derive(Debug)]
pub(crate) struct EventBudget {
    semaphore: Semaphore,
    /// The budget; no single charge is larger (so any one event fits).
    capacity: usize,
}

impl EventBudget {
    /// A budget of `bytes` (at least 1, at most what a semaphore holds).
    pub(crate) fn new(bytes: usize) -> Self {
        let capacity = bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Self { semaphore: Semaphore::new(capacity), capacity }
    }

    /// What `event` is charged: its footprint, at least 1, at most the whole budget.
    pub(crate) fn charge_of(&self, event: &StreamEvent) -> u32 {
        // `capacity` fits a u32 (see `new`).
        event.footprint().clamp(1, self.capacity) as u32
    }

    /// Takes `event`'s charge, waiting for room. `None` when the budget is closed (never).
    async fn take(&self, event: &StreamEvent) -> Option<u32> {
        let charge = self.charge_of(event);
        self.semaphore.acquire_many(charge).await.ok()?.forget();
        Some(charge)
    }

    /// Gives a charge back.
    pub(crate) fn give_back(&self, charge: u32) {
        self.semaphore.add_permits(charge as usize);
    }

    /// Bytes charged now (events on the channel or being sent).
    pub(crate) fn used(&self) -> usize {
        self.capacity - self.semaphore.available_permits()
    }
}

/// The charge of an event taken off the channel: given back to the budget when dropped.
#[derive(Debug)]
pub struct EventCharge {
    budget: Arc<EventBudget>,
    bytes: u32,
}

impl EventCharge {
    pub(crate) fn new(budget: Arc<EventBudget>, bytes: u32) -> Self {
        Self { budget, bytes }
    }

    /// The bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }
}

impl Drop for EventCharge {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// The sending side of the event channel: every event is charged to the budget first.
#[derive(Clone, Debug)]
pub(crate) struct EventSender {
    sender: mpsc::Sender<Charged>,
    budget: Arc<EventBudget>,
}

/// A place on the channel with the charge of one event taken; dropped unsent, it gives both
/// back.
pub(crate) struct Reserved<'a> {
    /// `None` once sent.
    permit: Option<mpsc::Permit<'a, Charged>>,
    budget: &'a EventBudget,
    charge: u32,
}

impl EventSender {
    pub(crate) fn new(sender: mpsc::Sender<Charged>, budget: Arc<EventBudget>) -> Self {
        Self { sender, budget }
    }

    /// Bytes charged now (events on the channel or being sent).
    pub(crate) fn used(&self) -> usize {
        self.budget.used()
    }

    /// Charges and sends `event`. Fails (giving the charge back) when nobody listens.
    pub(crate) async fn send(&self, event: StreamEvent) -> Result<(), ()> {
        let reserved = self.reserve(&event).await.ok_or(())?;
        reserved.send(event);
        Ok(())
    }

    /// Waits for the charge of `event` and a place on the channel; `None` when nobody listens.
    pub(crate) async fn reserve(&self, event: &StreamEvent) -> Option<Reserved<'_>> {
        let charge = self.budget.take(event).await?;
        match self.sender.reserve().await {
            Ok(permit) => Some(Reserved { permit: Some(permit), budget: &self.budget, charge }),
            Err(_) => {
                self.budget.give_back(charge);
                None
            }
        }
    }
}

impl Reserved<'_> {
    /// Sends the event the charge was taken for; the receiver gives the charge back.
    pub(crate) fn send(mut self, event: StreamEvent) {
        if let Some(permit) = self.permit.take() {
            permit.send((event, self.charge));
        }
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.permit.is_some() {
            self.budget.give_back(self.charge);
        }
    }
}
