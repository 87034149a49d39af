//! Snapshot reads: a span's keys as of a ts ([`Client::snapshot`](crate::Client::snapshot)), and
//! point reads on the same path ([`Client::get`](crate::Client::get),
//! [`Client::batch_get`](crate::Client::batch_get)).
//!
//! A snapshot is read in *parts*, one per region the span covered when PD was asked, each read by
//! a task of its own with `KvScan` pages from the region's leader. A part outlives the region it
//! started in: after a split, a merge or a leader move (a region error), the part finds the
//! region holding its cursor again and reads on from there, so every key is read once. Locks the
//! read meets are resolved as the resolver stage resolves them (only expired transactions are
//! rolled back), and the keys read again; a live transaction is waited for.
//!
//! Concurrency and memory: at most [`READ_AHEAD`] parts are read ahead of the one delivered, at
//! most [`Config::snapshot_store_concurrency`](crate::Config::snapshot_store_concurrency) pages
//! are asked of one store at once, and each part holds at most two pages it has read. The pages
//! of the part being delivered are free; the pages read ahead take the client's memory quota for
//! delivered rows (the part being delivered never waits for it, so reading ahead cannot stall
//! the reader). Rows come out in key order.
//!
//! The client's GC safe point is held at the read ts while the snapshot runs; a ts below the
//! cluster's safe point is refused at once, and a read whose ts PD's minimum passed fails.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use kvfeed_base::Backoff;
use kvfeed_regioncache::Region;
use kvfeed_span::{EncodedKey, Span};
use kvfeed_transport::{KvError, LockInfo, Read, RegionError, RegionTarget, Scan};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::error::Error;
use crate::event::SnapshotRow;
use crate::resolver;
use crate::safepoint::ReadHold;
use crate::shared::Shared;

/// Parts read ahead of the one being delivered.
pub(crate) const READ_AHEAD: usize = 16;

/// Consecutive failures (region errors, unreachable stores, live locks) of one part without a
/// key read before the snapshot fails.
const MAX_FAILURES: u32 = 40;

/// The backoff between attempts of a part that failed.
const RETRY: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));

/// Where an interrupted snapshot continues: after the last key it delivered
/// ([`Snapshot::cursor`]), given to [`Client::resume_snapshot`](crate::Client::resume_snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotCursor {
    last_key: Bytes,
}

impl SnapshotCursor {
    /// A cursor after the raw key `last_key`: a snapshot resumed from it starts at the next key.
    pub fn after(last_key: impl Into<Bytes>) -> Self {
        Self { last_key: last_key.into() }
    }

    /// The raw key delivered last.
    pub fn last_key(&self) -> &Bytes {
        &self.last_key
    }

    /// The encoded key the rest of the snapshot starts at: the smallest key after `last_key`.
    fn next_start(&self) -> EncodedKey {
        let mut next = self.last_key.to_vec();
        next.push(0);
        EncodedKey::encode(&next)
    }
}

/// How far a snapshot got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotProgress {
    /// Parts (regions, as PD divided the span when the snapshot started) read to their end.
    pub parts_done: u64,
    /// Parts known so far (PD is asked for the span's regions in batches, as the read goes).
    pub parts_known: u64,
    /// Rows delivered.
    pub rows: u64,
}

/// A page a part read, with the quota it holds (none for the part being delivered).
struct Page {
    rows: Vec<SnapshotRow>,
    _quota: Option<OwnedSemaphorePermit>,
}

type PartReceiver = mpsc::Receiver<Result<Page, Error>>;

/// Counters shared by the reading tasks and the stream.
#[derive(Debug, Default)]
struct Counters {
    parts_done: AtomicU64,
    parts_known: AtomicU64,
}

/// The rows of a span as of a ts, in key order: a [`Stream`] of [`SnapshotRow`]s, ending after
/// the last key, or after an error. Dropping it stops the read.
pub struct Snapshot {
    ts: u64,
    parts: mpsc::Receiver<PartReceiver>,
    current: Option<PartReceiver>,
    /// Rows of the page being delivered.
    page: VecDeque<SnapshotRow>,
    page_quota: Option<OwnedSemaphorePermit>,
    /// The index of the part being delivered (its pages skip the quota).
    head: watch::Sender<u64>,
    cursor: Option<SnapshotCursor>,
    rows: u64,
    counters: Arc<Counters>,
    ended: bool,
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("ts", &self.ts)
            .field("cursor", &self.cursor)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The read ts.
    pub fn ts(&self) -> u64 {
        self.ts
    }

    /// After the last row delivered (`None` before the first): where to resume an interrupted
    /// snapshot.
    pub fn cursor(&self) -> Option<&SnapshotCursor> {
        self.cursor.as_ref()
    }

    /// How far the read got.
    pub fn progress(&self) -> SnapshotProgress {
        SnapshotProgress {
            parts_done: self.counters.parts_done.load(Ordering::Relaxed),
            parts_known: self.counters.parts_known.load(Ordering::Relaxed),
            rows: self.rows,
        }
    }

    /// The next row; `None` after the last one, or after an error was returned.
    pub async fn recv(&mut self) -> Option<Result<SnapshotRow, Error>> {
        std::future::poll_fn(|cx| self.poll_row(cx)).await
    }

    pub(crate) fn poll_row(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<SnapshotRow, Error>>> {
        loop {
            if let Some(row) = self.page.pop_front() {
                self.rows += 1;
                self.cursor = Some(SnapshotCursor::after(row.key.clone()));
                return Poll::Ready(Some(Ok(row)));
            }
            self.page_quota = None;
            if self.ended {
                return Poll::Ready(None);
            }
            let current = match &mut self.current {
                Some(current) => current,
                None => match std::task::ready!(self.parts.poll_recv(cx)) {
                    Some(part) => self.current.insert(part),
                    None => {
                        self.ended = true;
                        return Poll::Ready(None);
                    }
                },
            };
            match std::task::ready!(current.poll_recv(cx)) {
                Some(Ok(page)) => {
                    self.page = page.rows.into();
                    self.page_quota = page._quota;
                }
                Some(Err(error)) => {
                    self.ended = true;
                    self.driver.abort();
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    // The part is read: the next one is delivered, and reads without quota.
                    self.current = None;
                    self.head.send_modify(|head| *head += 1);
                }
            }
        }
    }
}

impl Stream for Snapshot {
    type Item = Result<SnapshotRow, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_row(cx)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What every part of one snapshot shares.
struct Reader {
    shared: Arc<Shared>,
    ts: u64,
    hold: ReadHold,
    page_size: u32,
    /// Pages asked of each store at once.
    store_slots: std::sync::Mutex<HashMap<u64, Arc<Semaphore>>>,
    head: watch::Receiver<u64>,
    counters: Arc<Counters>,
}

/// The part of `span` after `cursor`'s key; `None` when nothing of it is left.
pub(crate) fn rest_after(span: &Span, cursor: &SnapshotCursor) -> Option<Span> {
    let next = cursor.next_start();
    if kvfeed_span::cmp_start(next.as_bytes(), span.start().as_bytes())
        != std::cmp::Ordering::Greater
    {
        return Some(span.clone());
    }
    Span::new(next, span.end().clone()).ok()
}

/// Starts reading `span` at `ts` (nothing, for `None`).
pub(crate) fn start(shared: Arc<Shared>, span: Option<Span>, ts: u64, hold: ReadHold) -> Snapshot {
    let (parts_tx, parts) = mpsc::channel(READ_AHEAD);
    let (head, head_rx) = watch::channel(0);
    let counters = Arc::new(Counters::default());
    let reader = Arc::new(Reader {
        page_size: shared.config.snapshot_page_size,
        shared: Arc::clone(&shared),
        ts,
        hold,
        store_slots: std::sync::Mutex::default(),
        head: head_rx,
        counters: Arc::clone(&counters),
    });
    let driver = shared.spawn_handle(divide(reader, span, parts_tx));
    Snapshot {
        ts,
        parts,
        current: None,
        page: VecDeque::new(),
        page_quota: None,
        head,
        cursor: None,
        rows: 0,
        counters,
        ended: false,
        driver,
    }
}

/// Divides the span into parts by PD's regions, in batches, and starts a task per part; a part's
/// channel goes to the stream in key order (waiting while [`READ_AHEAD`] parts are ahead).
async fn divide(reader: Arc<Reader>, span: Option<Span>, parts: mpsc::Sender<PartReceiver>) {
    let Some(mut rest) = span else { return };
    let mut index = 0u64;
    let mut failures = 0u32;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let limit = reader.shared.config.region_scan_limit;
        let batch = match reader.shared.source.load_regions(&rest, limit).await {
            Ok(batch) => batch,
            Err(error) => {
                failures += 1;
                let other_cluster =
                    matches!(error, kvfeed_regioncache::Error::ClusterIdMismatch { .. });
                if failures >= MAX_FAILURES || other_cluster {
                    let (tx, rx) = mpsc::channel(1);
                    let _ = tx.try_send(Err(Error::from(error)));
                    let _ = parts.send(rx).await;
                    return;
                }
                tokio::time::sleep(crate::backoff::delay(&RETRY, failures, index)).await;
                continue;
            }
        };
        failures = 0;
        // The regions and the holes between them, clipped to the span, in key order: a hole is
        // read like a region (its part finds the region PD reports there when it reads).
        let mut pieces: Vec<Span> = batch
            .regions
            .iter()
            .filter_map(|region| region.span().intersect(&rest).ok())
            .chain(batch.holes.iter().filter_map(|hole| hole.intersect(&rest).ok()))
            .collect();
        pieces.sort_by(|a, b| kvfeed_span::cmp_start(a.start().as_bytes(), b.start().as_bytes()));
        reader.counters.parts_known.fetch_add(pieces.len() as u64, Ordering::Relaxed);
        for piece in pieces {
            let (tx, rx) = mpsc::channel(2);
            if parts.send(rx).await.is_err() {
                return; // The stream was dropped.
            }
            tasks.spawn(read_part(Arc::clone(&reader), piece, index, tx));
            index += 1;
            // Finished tasks are reaped as the read goes (their results went to their channels).
            while tasks.try_join_next().is_some() {}
        }
        match batch.resume {
            Some(resume) => match Span::new(resume, rest.end().clone()) {
                Ok(next) => rest = next,
                Err(_) => break,
            },
            None => break,
        }
    }
    // The stream ends after the last part: wait for the tasks (dropping `parts` first would not
    // end the stream early: it reads the parts it was given to their end).
    drop(parts);
    while tasks.join_next().await.is_some() {}
}

/// Reads one part to its end, page by page, into `out`. A failure is sent as the part's last
/// item.
async fn read_part(
    reader: Arc<Reader>,
    part: Span,
    index: u64,
    out: mpsc::Sender<Result<Page, Error>>,
) {
    if let Err(error) = read_part_pages(&reader, &part, index, &out).await {
        let _ = out.send(Err(error)).await;
    } else {
        reader.counters.parts_done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn read_part_pages(
    reader: &Reader,
    part: &Span,
    index: u64,
    out: &mpsc::Sender<Result<Page, Error>>,
) -> Result<(), Error> {
    let shared = &reader.shared;
    let mut from = part.start().clone();
    let mut failures = 0u32;
    let mut lock_waits = 0u32;
    loop {
        if let Some(error) = reader.hold.lost() {
            return Err(error);
        }
        if failures > 0 {
            if failures >= MAX_FAILURES {
                return Err(read_error(reader.ts, &from, "the read kept failing (see the logs)"));
            }
            tokio::time::sleep(crate::backoff::delay(&RETRY, failures, index)).await;
        }
        failures += 1;
        let Some((region, ctx)) = locate(shared, from.as_bytes()).await? else { continue };
        let target = RegionTarget::from(&ctx);
        // The page ends at the region's end or the part's, whichever comes first.
        let stop = if kvfeed_span::cmp_end(region.span().end().as_bytes(), part.end().as_bytes())
            == std::cmp::Ordering::Less
        {
            region.span().end().clone()
        } else {
            part.end().clone()
        };
        let scan = Scan {
            start_key: raw_of(reader.ts, &from)?,
            end_key: raw_of(reader.ts, &stop)?,
            version: reader.ts,
            limit: reader.page_size,
            key_only: false,
        };
        let reads = {
            let slot = reader.store_slot(ctx.peer.store_id);
            let _slot = slot.acquire_owned().await.map_err(|_| Error::Shutdown)?;
            shared.transport.scan(&target, &scan).await
        };
        let reads = match reads {
            Ok(reads) => reads,
            Err(error) => {
                on_read_error(shared, &region, &ctx, &error)?;
                tracing::debug!(region = ?region.ver_id(), %error, "snapshot page failed; retrying");
                continue;
            }
        };
        let full = reads.len() >= reader.page_size as usize;
        let mut rows = Vec::with_capacity(reads.len());
        let mut locked = None;
        for read in reads {
            match read {
                Read::Value { key, value } => rows.push(SnapshotRow { key, value }),
                Read::Locked(lock) => {
                    locked = Some(lock);
                    break;
                }
            }
        }
        let next = match (&locked, rows.last()) {
            (Some(lock), _) => EncodedKey::encode(&lock.key),
            (None, Some(last)) if full => SnapshotCursor::after(last.key.clone()).next_start(),
            (None, _) => stop.clone(),
        };
        if !rows.is_empty() {
            failures = 0;
            reader.send(index, rows, out).await?;
        }
        if let Some(lock) = locked {
            match resolve(shared, &lock).await {
                LockOutcome::Settled => failures = 0,
                // A live transaction is waited for (its TTL bounds the wait, unless it keeps
                // sending heartbeats, as TiDB's long transactions do): not a failure.
                LockOutcome::Alive => {
                    failures = 0;
                    lock_waits += 1;
                    tokio::time::sleep(crate::backoff::delay(&RETRY, lock_waits, index)).await;
                }
                LockOutcome::Failed => {}
            }
        } else if !full && stop == *part.end() {
            return Ok(());
        } else if !full {
            failures = 0;
        }
        from = next;
    }
}

impl Reader {
    fn store_slot(&self, store_id: u64) -> Arc<Semaphore> {
        let per_store = self.shared.config.snapshot_store_concurrency;
        let mut slots = kvfeed_base::lock(&self.store_slots);
        Arc::clone(slots.entry(store_id).or_insert_with(|| Arc::new(Semaphore::new(per_store))))
    }

    /// Sends a page of part `index`: free if the part is being delivered, else once the
    /// client's quota has room for it (or the part becomes the one delivered).
    async fn send(
        &self,
        index: u64,
        rows: Vec<SnapshotRow>,
        out: &mpsc::Sender<Result<Page, Error>>,
    ) -> Result<(), Error> {
        let bytes: usize = rows.iter().map(|row| row.key.len() + row.value.len() + 64).sum();
        let wanted = bytes.min(self.shared.delivered_quota).min(u32::MAX as usize) as u32;
        let mut head = self.head.clone();
        let quota = if *head.borrow() >= index {
            None
        } else {
            tokio::select! {
                permit = Arc::clone(&self.shared.quota).acquire_many_owned(wanted) => {
                    Some(permit.map_err(|_| Error::Shutdown)?)
                }
                _ = head.wait_for(|head| *head >= index) => None,
            }
        };
        out.send(Ok(Page { rows, _quota: quota })).await.map_err(|_| Error::Shutdown)
    }
}

/// What a failed page means: a region error or an unreachable store is retried (after telling
/// the region cache); anything else fails the snapshot.
fn on_read_error(
    shared: &Shared,
    region: &Region,
    ctx: &kvfeed_regioncache::RpcContext,
    error: &KvError,
) -> Result<(), Error> {
    match error {
        KvError::Region { error: RegionError::NotLeader { leader }, .. } => {
            let leader = leader.as_ref().map(|peer| kvfeed_regioncache::Peer {
                id: peer.id,
                store_id: peer.store_id,
                role: kvfeed_regioncache::PeerRole::Voter,
                is_witness: false,
            });
            shared.source.on_not_leader(region.ver_id(), leader);
            Ok(())
        }
        KvError::Region {
            error: RegionError::ServerIsBusy { .. } | RegionError::Congested,
            ..
        } => Ok(()),
        KvError::Region { .. } => {
            shared.source.invalidate(region.ver_id());
            Ok(())
        }
        KvError::Grpc { .. } | KvError::Timeout { .. } => {
            shared.source.on_send_fail(ctx);
            Ok(())
        }
        KvError::Key { .. } | KvError::Transport(_) => {
            Err(Error::Read { key: Bytes::new(), message: error.to_string() })
        }
    }
}

/// What resolving a lock a read met came to.
enum LockOutcome {
    /// Its transaction is committed or rolled back: read the key again.
    Settled,
    /// Its transaction is alive: wait, then read the key again.
    Alive,
    /// PD or a store failed on the way (logged): a failure of the read, retried.
    Failed,
}

async fn resolve(shared: &Shared, lock: &LockInfo) -> LockOutcome {
    match resolver::resolve_read_lock(shared, lock).await {
        Ok(true) => LockOutcome::Settled,
        Ok(false) => LockOutcome::Alive,
        Err(error) => {
            tracing::debug!(start_ts = lock.start_ts, %error, "resolving a lock a read met failed");
            LockOutcome::Failed
        }
    }
}

/// The region holding the encoded `key` and where to ask for it; `None` (to try again after a
/// backoff) while PD cannot say or the region has no usable peer. Only a PD of another cluster
/// is an error.
async fn locate(
    shared: &Shared,
    key: &[u8],
) -> Result<Option<(Region, kvfeed_regioncache::RpcContext)>, Error> {
    let found = match shared.source.region_at(key).await {
        Ok(found) => found,
        Err(error @ kvfeed_regioncache::Error::ClusterIdMismatch { .. }) => {
            return Err(error.into());
        }
        Err(error) => {
            tracing::debug!(%error, "finding a region to read failed");
            return Ok(None);
        }
    };
    let Some(region) = found else { return Ok(None) };
    match shared.source.rpc_context(region.ver_id()).await {
        Ok(Some(ctx)) => Ok(Some((region, ctx))),
        Ok(None) => {
            shared.source.invalidate(region.ver_id());
            Ok(None)
        }
        Err(error @ kvfeed_regioncache::Error::ClusterIdMismatch { .. }) => Err(error.into()),
        Err(error) => {
            tracing::debug!(%error, "finding a region's leader failed");
            Ok(None)
        }
    }
}

/// The raw key of an encoded bound (empty for an unbounded one).
fn raw_of(ts: u64, key: &EncodedKey) -> Result<Bytes, Error> {
    if key.is_empty() {
        return Ok(Bytes::new());
    }
    key.decode()
        .map(|raw| Bytes::copy_from_slice(raw.as_bytes()))
        .map_err(|_| read_error(ts, key, "a region boundary is not an encoded key"))
}

fn read_error(ts: u64, at: &EncodedKey, why: &str) -> Error {
    let key = at.decode().map(|raw| Bytes::copy_from_slice(raw.as_bytes())).unwrap_or_default();
    Error::Read { key, message: format!("snapshot at {ts}: {why}") }
}

/// `KvBatchGet`s of `keys` at the hold's ts, one per region, locks resolved and region errors
/// retried: the keys that have a value, in the order asked, each once.
pub(crate) async fn batch_get(
    shared: &Shared,
    hold: &ReadHold,
    keys: &[Bytes],
) -> Result<Vec<SnapshotRow>, Error> {
    let ts = hold.ts();
    let mut wanted: Vec<Bytes> = Vec::with_capacity(keys.len());
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        if seen.insert(key.clone()) {
            wanted.push(key.clone());
        }
    }
    let mut found: HashMap<Bytes, Bytes> = HashMap::new();
    let mut pending = wanted.clone();
    let (mut failures, mut lock_waits) = (0u32, 0u32);
    while let Some(first) = pending.first().cloned() {
        if let Some(error) = hold.lost() {
            return Err(error);
        }
        if failures > 0 {
            if failures >= MAX_FAILURES {
                let why = "the read kept failing (see the logs)";
                return Err(Error::Read { key: first, message: format!("read at {ts}: {why}") });
            }
            tokio::time::sleep(crate::backoff::delay(&RETRY, failures, 0)).await;
        }
        failures += 1;
        let Some((region, ctx)) = locate(shared, EncodedKey::encode(&first).as_bytes()).await?
        else {
            continue;
        };
        let (mine, rest): (Vec<Bytes>, Vec<Bytes>) =
            pending.iter().cloned().partition(|key| region.span().contains_raw_key(key));
        let reads = match shared.transport.batch_get(&RegionTarget::from(&ctx), &mine, ts).await {
            Ok(reads) => reads,
            Err(error) => {
                on_read_error(shared, &region, &ctx, &error)?;
                continue;
            }
        };
        pending = rest;
        let mut locks: Vec<LockInfo> = Vec::new();
        for read in reads {
            match read {
                Read::Value { key, value } => {
                    found.insert(key, value);
                }
                Read::Locked(lock) => {
                    pending.push(lock.key.clone());
                    if !locks.iter().any(|other| other.start_ts == lock.start_ts) {
                        locks.push(lock);
                    }
                }
            }
        }
        let mut alive = false;
        let mut failed = false;
        for lock in &locks {
            match resolve(shared, lock).await {
                LockOutcome::Settled => {}
                LockOutcome::Alive => alive = true,
                LockOutcome::Failed => failed = true,
            }
        }
        if !failed {
            failures = 0;
        }
        if alive {
            lock_waits += 1;
            tokio::time::sleep(crate::backoff::delay(&RETRY, lock_waits, 0)).await;
        }
    }
    Ok(wanted
        .into_iter()
        .filter_map(|key| found.remove(&key).map(|value| SnapshotRow { key, value }))
        .collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn span_of(start: &[u8], end: &[u8]) -> Option<Span> {
        let bound = |raw: &[u8]| {
            if raw.is_empty() { EncodedKey::default() } else { EncodedKey::encode(raw) }
        };
        Span::new(bound(start), bound(end)).ok()
    }

    proptest! {
        /// The rest of a span after a cursor holds exactly the span's keys above the cursor's.
        #[test]
        fn the_rest_after_a_cursor_is_the_keys_above_it(
            start in proptest::collection::vec(0u8..4, 0..3),
            end in proptest::collection::vec(0u8..4, 0..3),
            last in proptest::collection::vec(0u8..4, 0..4),
            probes in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..4), 1..40),
        ) {
            let Some(span) = span_of(&start, &end) else { return Ok(()) };
            let cursor = SnapshotCursor::after(last.clone());
            let rest = rest_after(&span, &cursor);
            for probe in probes {
                let wanted = span.contains_raw_key(&probe) && probe > last;
                let got = rest.as_ref().is_some_and(|rest| rest.contains_raw_key(&probe));
                prop_assert_eq!(got, wanted, "probe {:?}, last {:?}, span {:?}", probe, last, span);
            }
        }
    }

    #[test]
    fn a_cursor_names_the_key_after_its_own() {
        let cursor = SnapshotCursor::after(Bytes::from_static(b"k"));
        assert_eq!(cursor.last_key().as_ref(), b"k");
        assert_eq!(cursor.next_start(), EncodedKey::encode(b"k\0"));
    }
}
