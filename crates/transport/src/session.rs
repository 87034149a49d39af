//! One CDC call (a "session") and its receive task.
//!
//! A session is shared by its stream slot (which registers and deregisters regions on it) and its
//! receive task (which reads frames, hands events to the feed and ends the session). The task is
//! the only one that ends a session; others ask it to by [`Session::request_close`]. Ending takes
//! the set of registered regions in one step under the session's lock and reports each region
//! [`StreamEvent::RegionFailed`] once, so a region registered before the end is reported exactly
//! once, and none can be registered after it.
//!
//! Both directions go down together: the request stream given to tonic ends when the task ends
//! (its [`oneshot`] guard drops), and the task ends when the response stream fails, ends, or the
//! session is asked to close.

use alloc::sync::Arc;
use core::future::Future as _;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tonic::codec::Streaming;

use crate::codec::FrameCodec;
use crate::demux::{Route, decode_frame};
use crate::error::StreamError;
use crate::event::{RegionEvent, StreamEvent};
use crate::pool::{Lease, Mode, path, v2_request};
use crate::request::WireRequest;

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
}

impl Session {
    /// A session for `mode` whose set starts with one pair.
    pub(crate) fn new(mode: Mode, first: (u64, u64)) -> Arc<Self> {
        let mut regions = RegionSet::default();
        regions.insert(first.0, first.1);
        Arc::new(Self {
            state: Mutex::new(SessionState {
                regions,
                empty_since: None,
                end: None,
                close_request: None,
            }),
            wake: Notify::new(),
            mode,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Registers a pair unless the session ended.
    pub(crate) fn insert(&self, request_id: u64, region_id: u64) -> Insert {
        let mut state = self.lock();
        if state.end.is_some() || state.close_request.is_some() {
            return Insert::Ended;
        }
        state.empty_since = None;
        if state.regions.insert(request_id, region_id) {
            Insert::Added
        } else {
            Insert::AlreadyThere
        }
    }

    /// Forgets a pair (deregistered, or ended by TiKV); false if it was not registered here.
    pub(crate) fn remove(&self, request_id: u64, region_id: u64) -> bool {
        let mut state = self.lock();
        let removed = state.regions.remove(request_id, region_id);
        state.mark_if_empty();
        removed
    }

    /// Forgets every region of a subscription; returns how many there were.
    pub(crate) fn remove_request(&self, request_id: u64) -> usize {
        let mut state = self.lock();
        let removed = state.regions.remove_request(request_id);
        state.mark_if_empty();
        removed
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

/// Everything a receive task needs.
pub(crate) struct SessionTask {
    pub(crate) session: Arc<Session>,
    pub(crate) lease: Lease,
    pub(crate) requests: mpsc::UnboundedReceiver<WireRequest>,
    pub(crate) events: mpsc::Sender<StreamEvent>,
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
        let closing = session.wake.notified();
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
                if let StreamEvent::Region {
                    request_id,
                    region_id,
                    event: RegionEvent::Error(error),
                    ..
                } = &event
                    && error.ends_registration()
                {
                    // TiKV dropped it: it must not be reported failed later.
                    session.remove(*request_id, *region_id);
                }
                if events.send(event).await.is_err() {
                    // Nobody listens any more: stop quietly.
                    ender.finish(End::Closed);
                    return;
                }
            }
        }
    }
}

/// Ends a session.
struct Ender<'a> {
    session: &'a Session,
    lease: &'a Lease,
    events: &'a mpsc::Sender<StreamEvent>,
    route: Route,
}

impl Ender<'_> {
    /// Marks the session ended and takes its regions, unless it already ended.
    fn finish(&self, end: End) -> Vec<(u64, u64)> {
        let mut state = self.session.lock();
        if state.end.is_some() {
            return Vec::new();
        }
        state.end = Some(end);
        state.regions.take()
    }

    /// Fails the session: every region on it is reported once.
    async fn fail(&self, cause: StreamError, healthy: bool) {
        let regions = self.finish(End::Failed { at: Instant::now(), healthy });
        self.lease.retire();
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
        let request = self.session.lock().close_request.clone();
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
        let now = Instant::now();
        let mut state = self.session.lock();
        if !state.regions.is_empty() {
            return Some(now + idle_timeout);
        }
        let since = *state.empty_since.get_or_insert(now);
        if now < since + idle_timeout {
            return Some(since + idle_timeout);
        }
        state.end = Some(End::Closed);
        tracing::debug!(store_id = self.route.store_id, "stream closed as idle");
        None
    }
}
