//! The I/O loop of one CDC call: opening it on a leased connection, reading frames, handing
//! their events to the feed, and ending its [`Session`] (the bookkeeping, in [`crate::session`]).
//!
//! Both directions go down together: the request stream given to tonic ends when the task ends
//! (its [`oneshot`] guard drops), and the task ends when the response stream fails, ends, or the
//! session is asked to close. A failed call reports each of its regions
//! [`StreamEvent::RegionFailed`] once and retires its connection (unless it was only replaced).

use alloc::sync::Arc;
use core::future::Future as _;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::codec::Streaming;

use crate::budget::EventSender;
use crate::codec::FrameCodec;
use crate::demux::{Route, decode_frame};
use crate::error::StreamError;
use crate::event::StreamEvent;
use crate::pool::{Lease, Mode, path, v2_request};
use crate::request::WireRequest;
use crate::session::{CloseRequest, End, Session};

/// Everything a receive task needs.
pub(crate) struct SessionTask {
    pub(crate) session: Arc<Session>,
    pub(crate) lease: Lease,
    pub(crate) requests: mpsc::UnboundedReceiver<WireRequest>,
    pub(crate) events: EventSender,
    pub(crate) route: Route,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_decoding_message_size: usize,
}

/// The request stream handed to tonic: the session's requests, ending when the task ends.
struct RequestStream {
    requests: mpsc::UnboundedReceiver<WireRequest>,
    task_gone: oneshot::Receiver<()>,
}

impl tokio_stream::Stream for RequestStream {
    type Item = WireRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WireRequest>> {
        if Pin::new(&mut self.task_gone).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        self.requests.poll_recv(cx)
    }
}

/// What one turn of the receive loop saw.
enum Turn {
    Frame(Result<Option<Bytes>, tonic::Status>),
    Closing,
    IdleCheck,
}

impl SessionTask {
    /// Runs the call until it ends (see the module doc).
    pub(crate) async fn run(self) {
        let Self {
            session,
            lease,
            requests,
            events,
            route,
            idle_timeout,
            max_decoding_message_size,
        } = self;
        // Dropped when this task ends, however it ends: the request stream then ends too.
        let (_task_alive, task_gone) = oneshot::channel::<()>();
        let stream = RequestStream { requests, task_gone };
        let mut grpc = lease.grpc().max_decoding_message_size(max_decoding_message_size);
        let mode = session.mode();
        let request = match mode {
            Mode::Multiplexed => v2_request(stream),
            Mode::PerSubscription => tonic::Request::new(stream),
        };
        let ender = Ender { session: &session, lease: &lease, events: &events, route };
        // One timer for the whole task, reset only when the idle deadline moves (the first check
        // counts from the session's start, not from when the store answers), and one waiter for
        // close requests (the task returns once woken): nothing is registered anew per frame.
        let idle_check = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle_check);
        let closing = session.close_requested();
        tokio::pin!(closing);
        let opened = tokio::select! {
            biased;
            () = &mut closing => None,
            opened = async {
                grpc.ready().await.map_err(|error| tonic::Status::unavailable(crate::error::chain(&error)))?;
                grpc.streaming(request, path(mode), FrameCodec).await
            } => Some(opened),
        };
        let mut response: Streaming<Bytes> = match opened {
            None => return ender.on_close_request(false).await,
            Some(Ok(response)) => response.into_inner(),
            Some(Err(status)) => return ender.fail(StreamError::from_status(&status), false).await,
        };
        let mut healthy = false;
        loop {
            let turn = tokio::select! {
                biased;
                () = &mut closing => Turn::Closing,
                () = &mut idle_check => Turn::IdleCheck,
                frame = response.message() => Turn::Frame(frame),
            };
            let frame = match turn {
                Turn::Closing => return ender.on_close_request(healthy).await,
                Turn::IdleCheck => {
                    match ender.idle_check(idle_timeout) {
                        Some(next) => idle_check.as_mut().reset(next),
                        None => return,
                    }
                    continue;
                }
                Turn::Frame(Ok(Some(frame))) => frame,
                Turn::Frame(Ok(None)) => return ender.fail(StreamError::Eof, healthy).await,
                Turn::Frame(Err(status)) => {
                    return ender.fail(StreamError::from_status(&status), healthy).await;
                }
            };
            healthy = true;
            let demux = match decode_frame(frame, route) {
                Ok(demux) => demux,
                Err(error) => return ender.fail(StreamError::Decode(error), healthy).await,
            };
            for event in demux {
                // Room first, then admission and the send under the session's lock (see
                // `Session::admit_into`).
                let Some(reserved) = events.reserve(&event).await else {
                    // Nobody listens any more: stop quietly.
                    ender.finish(End::Closed);
                    return;
                };
                session.admit_into(event, reserved);
            }
        }
    }
}

/// Ends a session: reports its regions and lets a suspect connection go.
struct Ender<'a> {
    session: &'a Session,
    lease: &'a Lease,
    events: &'a EventSender,
    route: Route,
}

impl Ender<'_> {
    fn finish(&self, end: End) -> Vec<(u64, u64)> {
        self.session.finish(end)
    }

    /// Fails the session: every region on it is reported once.
    async fn fail(&self, cause: StreamError, healthy: bool) {
        let regions = self.finish(End::Failed { at: Instant::now(), healthy });
        if cause != StreamError::Replaced {
            // The connection is suspect; a replaced call says nothing about it.
            self.lease.retire();
        }
        tracing::debug!(
            store_id = self.route.store_id,
            regions = regions.len(),
            %cause,
            "stream failed"
        );
        for (request_id, region_id) in regions {
            let failed = StreamEvent::RegionFailed {
                store_id: self.route.store_id,
                request_id,
                region_id,
                cause: cause.clone(),
            };
            if self.events.send(failed).await.is_err() {
                return;
            }
        }
    }

    /// Obeys the owner's close request.
    async fn on_close_request(&self, healthy: bool) {
        let request = self.session.close_request();
        match request {
            Some(CloseRequest::Fail(cause)) => self.fail(cause, healthy).await,
            Some(CloseRequest::Quiet) | None => {
                // Quiet closes come after the regions were deregistered; anything registered
                // in between is still reported.
                let regions = self.finish(End::Closed);
                for (request_id, region_id) in regions {
                    let failed = StreamEvent::RegionFailed {
                        store_id: self.route.store_id,
                        request_id,
                        region_id,
                        cause: StreamError::SendClosed,
                    };
                    if self.events.send(failed).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Closes the session if it has had no regions for `idle_timeout`; otherwise returns when to
    /// check again.
    fn idle_check(&self, idle_timeout: Duration) -> Option<Instant> {
        let next = self.session.idle_check(idle_timeout);
        if next.is_none() {
            tracing::debug!(store_id = self.route.store_id, "stream closed as idle");
        }
        next
    }
}
