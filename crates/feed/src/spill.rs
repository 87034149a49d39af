//! Byte records on local disk: where the prewrite cache puts values past its memory share.
//!
//! Records are appended to segment files and read back once, by the [`SpillRef`] their append
//! returned. Each segment is an anonymous temporary file (unlinked as it is created, so nothing
//! is left behind by a process that dies), at most `segment_bytes` long unless one record is
//! longer. A segment no longer written to is closed, and its disk space given back, as soon as
//! every record in it was taken or freed; the segment being written to starts again from its
//! beginning when it empties. So the disk held is about the live records plus one segment, and
//! a long-lived record pins at most its own segment.
//!
//! Small records are gathered in a write buffer and written with one call; a record is in the
//! buffer or in the file, never split between them. All reads and writes are positioned
//! (`pread`/`pwrite`): no file cursor is shared.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use hashbrown::HashMap;

/// The default length of a segment file.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;

/// Records this long or longer skip the write buffer.
const WRITE_BUFFER: usize = 256 << 10;

/// Where one record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpillRef {
    segment: u32,
    len: u32,
    offset: u64,
}

impl SpillRef {
    /// The record's length in bytes.
    pub(crate) fn len(self) -> usize {
        self.len as usize
    }
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    file: File,
    /// Bytes of its records not yet taken or freed. A segment other than the current one is
    /// removed when this reaches 0.
    live: u64,
}

/// The segment files of one store.
#[derive(Debug)]
pub(crate) struct SpillFiles {
    /// Where segment files are created.
    dir: PathBuf,
    segment_bytes: u64,
    /// Open segments by id. Invariant: each holds at least one live record, except the
    /// current one.
    segments: HashMap<u32, Segment>,
    /// The segment records are appended to (`None` until the first record).
    current: Option<u32>,
    next_id: u32,
    /// Bytes of the current segment written to its file; the buffered ones follow.
    written: u64,
    /// Records of the current segment not written to its file yet, from offset `written`.
    buffer: Vec<u8>,
    /// Bytes of all live records.
    live: u64,
    /// Makes every file write fail (tests of the error paths).
    #[cfg(test)]
    fail_writes: bool,
}

impl SpillFiles {
    /// A store creating its segment files in `dir`; nothing is created before the first record.
    pub(crate) fn new(dir: PathBuf, segment_bytes: u64) -> Self {
        Self {
            dir,
            segment_bytes: segment_bytes.max(1),
            segments: HashMap::new(),
            current: None,
            next_id: 0,
            written: 0,
            buffer: Vec::new(),
            live: 0,
            #[cfg(test)]
            fail_writes: false,
        }
    }

    /// Bytes of the records not yet taken or freed.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn live_bytes(&self) -> u64 {
        self.live
    }

    /// Open segment files.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Appends the concatenation of `parts` as one record.
    pub(crate) fn append(&mut self, parts: &[&[u8]]) -> io::Result<SpillRef> {
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let len = u32::try_from(total).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "a spilled record is limited to 4 GiB")
        })?;
        let end = self.written + self.buffer.len() as u64;
        let segment = match self.current {
            Some(id) if end == 0 || end + u64::from(len) <= self.segment_bytes => id,
            _ => self.start_segment()?,
        };
        let offset = self.written + self.buffer.len() as u64;
        if total >= WRITE_BUFFER {
            self.flush()?;
            let mut at = offset;
            for part in parts {
                self.write_at(segment, part, at)?;
                at += part.len() as u64;
            }
            self.written += u64::from(len);
        } else {
            let before = self.buffer.len();
            for part in parts {
                self.buffer.extend_from_slice(part);
            }
            if self.buffer.len() >= WRITE_BUFFER
                && let Err(error) = self.flush()
            {
                // The record was not stored: the buffer keeps only the records before it.
                self.buffer.truncate(before);
                return Err(error);
            }
        }
        self.segments.get_mut(&segment).expect("the current segment is open").live +=
            u64::from(len);
        self.live += u64::from(len);
        Ok(SpillRef { segment, len, offset })
    }

    /// Reads a record back and frees it.
    pub(crate) fn take(&mut self, at: SpillRef) -> io::Result<Vec<u8>> {
        let bytes = self.read(at);
        self.free(at);
        bytes
    }

    /// Reads a record.
    fn read(&self, at: SpillRef) -> io::Result<Vec<u8>> {
        if at.len == 0 {
            return Ok(Vec::new());
        }
        let missing = || io::Error::new(io::ErrorKind::NotFound, "no such spilled record");
        let segment = self.segments.get(&at.segment).ok_or_else(missing)?;
        let end = at.offset + u64::from(at.len);
        if self.current == Some(at.segment) && at.offset >= self.written {
            let start = usize::try_from(at.offset - self.written).map_err(|_| missing())?;
            let bytes = self.buffer.get(start..start + at.len()).ok_or_else(missing)?;
            return Ok(bytes.to_vec());
        }
        if self.current == Some(at.segment) && end > self.written {
            return Err(missing());
        }
        let mut bytes = vec![0; at.len()];
        read_exact_at(&segment.file, &mut bytes, at.offset)?;
        Ok(bytes)
    }

    /// Forgets a record. A segment left without live records is closed (or, if it is the
    /// current one, written again from its start).
    pub(crate) fn free(&mut self, at: SpillRef) {
        let Some(segment) = self.segments.get_mut(&at.segment) else { return };
        let len = u64::from(at.len).min(segment.live);
        segment.live -= len;
        self.live -= len;
        if segment.live > 0 {
            return;
        }
        if self.current == Some(at.segment) {
            // Dropping the file's blocks is only housekeeping: a failure leaves them to be
            // overwritten.
            let _ = segment.file.set_len(0);
            self.written = 0;
            self.buffer.clear();
        } else {
            self.segments.remove(&at.segment);
        }
    }

    /// Writes the buffered records to the current segment's file.
    fn flush(&mut self) -> io::Result<()> {
        let Some(id) = self.current else { return Ok(()) };
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.write_at(id, &self.buffer, self.written)?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    fn write_at(&self, segment: u32, bytes: &[u8], offset: u64) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_writes {
            return Err(io::Error::other("writes fail (test)"));
        }
        write_all_at(&self.segments[&segment].file, bytes, offset)
    }

    /// Seals the current segment (closing it if it has no live record) and opens a new one.
    fn start_segment(&mut self) -> io::Result<u32> {
        let file = tempfile::tempfile_in(&self.dir)?;
        self.flush()?;
        if let Some(old) = self.current.take()
            && self.segments.get(&old).is_some_and(|segment| segment.live == 0)
        {
            self.segments.remove(&old);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.segments.insert(id, Segment { file, live: 0 });
        self.current = Some(id);
        self.written = 0;
        Ok(id)
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(unix)]
fn read_exact_at(file: &File, bytes: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut bytes: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, bytes, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        bytes = &mut bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
