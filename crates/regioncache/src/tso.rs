//! The TSO client: one bidirectional `Tso` stream to the PD leader, fed by a background task that
//! batches concurrent requests.
//!
//! [`PdClient::get_ts`](crate::PdClient::get_ts) queues a one-shot reply slot; the task takes
//! every queued slot at once, asks PD for that many timestamps in one `TsoRequest`, and hands out
//! the batch in queue order. PD returns the largest timestamp of the batch; the batch is the
//! logical values `logical - count + 1 ..= logical` at the same physical time, composed as
//! `physical << 18 | logical`.
//!
//! Invariant: timestamps handed out strictly increase. The task checks every batch against the
//! last timestamp it handed out and fails the batch with [`Error::TsoNotMonotonic`] rather than
//! hand out a timestamp that went backwards. A failed stream is dropped and reopened on the
//! (possibly new) leader, with the client's retry policy.

use std::sync::Arc;

use kvfeed_proto::pdpb;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::conn::{Conn, Leader, missing_header};
use crate::error::Error;

/// Bits of the logical part of a timestamp.
pub const LOGICAL_BITS: u32 = 18;
/// The most timestamps asked for in one request.
const MAX_BATCH: usize = 10_000;
/// Queued requests before callers wait for room.
const QUEUE: usize = 1 << 16;

/// A slot the TSO task fills with one timestamp.
type Waiter = oneshot::Sender<Result<u64, Error>>;

/// The callers' side of the TSO task. The task ends when every handle is dropped.
#[derive(Clone)]
pub(crate) struct TsoHandle {
    queue: mpsc::Sender<Waiter>,
}

impl TsoHandle {
    /// Starts the TSO task on the current tokio runtime.
    pub(crate) fn spawn(conn: Arc<Conn>) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, requests));
        Self { queue }
    }

    /// One timestamp.
    pub(crate) async fn get_ts(&self) -> Result<u64, Error> {
        let (reply, ts) = oneshot::channel();
        self.queue.send(reply).await.map_err(|_| Error::Closed)?;
        ts.await.map_err(|_| Error::Closed)?
    }
}

/// An open `Tso` stream.
struct Stream {
    leader: Arc<Leader>,
    requests: mpsc::Sender<pdpb::TsoRequest>,
    responses: tonic::Streaming<pdpb::TsoResponse>,
}

/// The task: batches queued requests and serves them, one round trip at a time.
async fn run(conn: Arc<Conn>, mut queue: mpsc::Receiver<Waiter>) {
    let mut stream = None;
    let mut last = 0;
    let mut batch: Vec<Waiter> = Vec::new();
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(waiter) => batch.push(waiter),
                Err(_) => break,
            }
        }
        batch.retain(|w| !w.is_closed());
        if batch.is_empty() {
            continue;
        }
        // `batch.len() <= MAX_BATCH`, which fits a u32.
        let count = batch.len() as u32;
        match request(&conn, &mut stream, count, last).await {
            Ok(first_ts) => {
                last = first_ts + (u64::from(count) - 1);
                // `first_ts + offset` is at most the batch's largest timestamp: no overflow.
                for (offset, waiter) in (0..).zip(batch.drain(..)) {
                    let _ = waiter.send(Ok(first_ts + offset));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "TSO request failed");
                for waiter in batch.drain(..) {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Gets `count` timestamps above `last`, retrying on a fresh stream as the policy allows.
/// Returns the first timestamp of the batch.
async fn request(
    conn: &Conn,
    stream: &mut Option<Stream>,
    count: u32,
    last: u64,
) -> Result<u64, Error> {
    let mut retry = 0;
    loop {
        let error = match round_trip(conn, stream, count, last).await {
            Ok(first) => return Ok(first),
            Err(error) => error,
        };
        if !error.is_retryable() || retry >= conn.config.retries {
            return Err(error);
        }
        retry += 1;
        tokio::time::sleep(conn.retry_delay(retry)).await;
    }
}

/// One request on the stream (opened first if needed). The stream is kept only on success.
async fn round_trip(
    conn: &Conn,
    slot: &mut Option<Stream>,
    count: u32,
    last: u64,
) -> Result<u64, Error> {
    const METHOD: &str = "Tso";
    let request =
        pdpb::TsoRequest { header: Some(conn.header()), count, dc_location: String::new() };
    let mut stream = match slot.take() {
        Some(stream) => {
            if stream.requests.send(request).await.is_err() {
                conn.forget_leader(&stream.leader);
                return Err(unavailable("TSO stream closed"));
            }
            stream
        }
        None => open(conn, request).await?,
    };
    let message = tokio::time::timeout(conn.config.timeout, stream.responses.message()).await;
    let resp = match message {
        Ok(Ok(Some(resp))) => resp,
        Ok(Ok(None)) => {
            conn.forget_leader(&stream.leader);
            return Err(unavailable("TSO stream ended"));
        }
        Ok(Err(status)) => {
            let error = conn.status_error(METHOD, &status);
            if error.is_retryable() {
                conn.forget_leader(&stream.leader);
            }
            return Err(error);
        }
        Err(_) => {
            conn.forget_leader(&stream.leader);
            return Err(Error::Timeout { method: METHOD });
        }
    };
    // The cluster-id check is required on every response: PD always sends a header.
    let header = resp.header.as_ref().ok_or_else(|| missing_header(METHOD))?;
    conn.check_header(METHOD, header)?;
    let first = first_of_batch(&resp, count)?;
    if first <= last {
        return Err(Error::TsoNotMonotonic { last, got: first });
    }
    *slot = Some(stream);
    Ok(first)
}

/// Opens a `Tso` stream on the leader with `first` already queued (PD may send the response
/// headers only with the first answer).
async fn open(conn: &Conn, first: pdpb::TsoRequest) -> Result<Stream, Error> {
    let leader = conn.leader().await?;
    let (requests, outgoing) = mpsc::channel(4);
    requests.send(first).await.map_err(|_| unavailable("TSO stream closed"))?;
    let mut client = leader.client.clone();
    let opened =
        tokio::time::timeout(conn.config.timeout, client.tso(ReceiverStream::new(outgoing))).await;
    match opened {
        Ok(Ok(resp)) => Ok(Stream { leader, requests, responses: resp.into_inner() }),
        Ok(Err(status)) => {
            let error = conn.status_error("Tso", &status);
            if error.is_retryable() {
                conn.forget_leader(&leader);
            }
            Err(error)
        }
        Err(_) => {
            conn.forget_leader(&leader);
            Err(Error::Timeout { method: "Tso" })
        }
    }
}

/// The first timestamp of the batch a `TsoResponse` answers, checking the response against the
/// request.
pub(crate) fn first_of_batch(resp: &pdpb::TsoResponse, count: u32) -> Result<u64, Error> {
    let invalid = |reason: String| Error::InvalidResponse { method: "Tso", reason };
    if resp.count != count {
        return Err(invalid(format!("asked for {count} timestamps, got {}", resp.count)));
    }
    let ts = resp.timestamp.ok_or_else(|| invalid("no timestamp".to_owned()))?;
    let logical_max = 1i64 << LOGICAL_BITS;
    let physical_max = 1i64 << (64 - LOGICAL_BITS);
    if !(0..physical_max).contains(&ts.physical)
        || !(i64::from(count)..logical_max).contains(&ts.logical)
        || ts.suffix_bits != 0
    {
        return Err(invalid(format!(
            "timestamp {}.{} (suffix bits {}) cannot end a batch of {count}",
            ts.physical, ts.logical, ts.suffix_bits
        )));
    }
    // Both parts were range-checked above, so neither the shift nor the casts lose bits.
    let largest = ((ts.physical as u64) << LOGICAL_BITS) | ts.logical as u64;
    Ok(largest - u64::from(count) + 1)
}

fn unavailable(message: &str) -> Error {
    Error::Unavailable { method: "Tso", message: message.to_owned() }
}
