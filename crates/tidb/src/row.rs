//! Row values: format v2 (TiDB 4.0 and later) and format v1 (older clusters and rows not
//! rewritten since), parsed into a lookup by column id.
//!
//! Format v2, little-endian: version `0x80`, flags (`0x01` large, `0x02` checksum), the counts of
//! not-null and null columns (u16 each), the not-null column ids (u8, or u32 when large), the
//! null column ids, the end offset of each not-null value (u16, or u32 when large), the values
//! concatenated, then an optional checksum (a header byte, a u32 and, when the header's bit 3 is
//! set, another u32). Ids are ascending within each list.
//!
//! Format v1 is `id datum, value datum` pairs ([`crate::datum`]); a single `00` byte is a row of
//! no columns.
//!
//! [`RowValue::parse`] checks the whole layout up front (counts, offsets, trailing bytes), so
//! lookups afterwards cannot fail.

use alloc::vec::Vec;

use crate::Error;
use crate::codec::Reader;
use crate::datum::Datum;

/// The first byte of a v2 row.
pub const V2_VERSION: u8 = 0x80;
const FLAG_LARGE: u8 = 0x01;
const FLAG_CHECKSUM: u8 = 0x02;
const CHECKSUM_EXTRA: u8 = 0x08;

/// What a row value says about one column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'r> {
    /// The column is not in the value (its value comes from the handle or the schema's default).
    Absent,
    /// The column is NULL.
    Null,
    /// A v2 value's bytes, to be read by the column's type.
    V2(&'r [u8], usize),
    /// A v1 datum.
    V1(&'r Datum),
}

/// A parsed row value.
#[derive(Clone, Debug)]
pub enum RowValue<'a> {
    /// Format v2.
    V2(RowV2<'a>),
    /// Format v1: (column id, datum), in the order stored.
    V1(Vec<(i64, Datum)>),
}

impl<'a> RowValue<'a> {
    /// Parses a non-empty row value of either format.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        match bytes.first() {
            None => Err(Error::truncated("row value", 0)),
            Some(&V2_VERSION) => RowV2::parse(bytes).map(Self::V2),
            Some(_) => parse_v1(bytes).map(Self::V1),
        }
    }

    /// What the value holds for column `id`.
    pub fn get(&self, id: i64) -> Cell<'_> {
        match self {
            Self::V2(row) => row.get(id),
            Self::V1(pairs) => match pairs.iter().find(|(col, _)| *col == id) {
                None => Cell::Absent,
                Some((_, Datum::Null)) => Cell::Null,
                Some((_, datum)) => Cell::V1(datum),
            },
        }
    }
}

fn parse_v1(bytes: &[u8]) -> Result<Vec<(i64, Datum)>, Error> {
    if bytes == [0] {
        return Ok(Vec::new());
    }
    let mut reader = Reader::new(bytes);
    let mut pairs = Vec::new();
    while !reader.is_empty() {
        let at = reader.offset();
        let id = match Datum::read(&mut reader)? {
            Datum::Int(id) => id,
            _ => return Err(Error::invalid("v1 row column id (not an integer datum)", at)),
        };
        pairs.push((id, Datum::read(&mut reader)?));
    }
    Ok(pairs)
}

/// A parsed v2 row: slices into the value, checked.
///
/// Invariant: `not_null` holds `n` ids and `offsets` `n` end offsets, non-decreasing and at most
/// `data.len()`, the last equal to it; `null` holds the null ids.
#[derive(Clone, Debug)]
pub struct RowV2<'a> {
    large: bool,
    n: usize,
    not_null: &'a [u8],
    null: &'a [u8],
    offsets: &'a [u8],
    data: &'a [u8],
    data_start: usize,
}

impl<'a> RowV2<'a> {
    /// Parses a v2 row value.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut reader = Reader::new(bytes);
        if reader.u8("row v2 version")? != V2_VERSION {
            return Err(Error::invalid("row v2 version", 0));
        }
        let flags = reader.u8("row v2 flags")?;
        let large = flags & FLAG_LARGE != 0;
        let n = usize::from(reader.u16_le("row v2 not-null count")?);
        let m = usize::from(reader.u16_le("row v2 null count")?);
        let (id_width, offset_width) = if large { (4, 4) } else { (1, 2) };
        let not_null = reader.take(n * id_width, "row v2 not-null ids")?;
        let null = reader.take(m * id_width, "row v2 null ids")?;
        let offsets_at = reader.offset();
        let offsets = reader.take(n * offset_width, "row v2 offsets")?;
        let mut row = Self { large, n, not_null, null, offsets, data: &[], data_start: 0 };
        let mut previous = 0;
        for i in 0..n {
            let end = row.offset(i);
            if end < previous {
                return Err(Error::invalid(
                    "row v2 offsets (decreasing)",
                    offsets_at + i * offset_width,
                ));
            }
            previous = end;
        }
        row.data_start = reader.offset();
        row.data = reader.take(previous, "row v2 data")?;
        if flags & FLAG_CHECKSUM != 0 {
            let header = reader.u8("row v2 checksum header")?;
            reader.take(4, "row v2 checksum")?;
            if header & CHECKSUM_EXTRA != 0 {
                reader.take(4, "row v2 extra checksum")?;
            }
        }
        reader.finish("row v2")?;
        Ok(row)
    }

    fn id(list: &[u8], large: bool, i: usize) -> i64 {
        if large {
            let b = &list[i * 4..i * 4 + 4];
            i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        } else {
            i64::from(list[i])
        }
    }

    fn offset(&self, i: usize) -> usize {
        if self.large {
            let b = &self.offsets[i * 4..i * 4 + 4];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
        } else {
            usize::from(u16::from_le_bytes([self.offsets[i * 2], self.offsets[i * 2 + 1]]))
        }
    }

    fn find(list: &[u8], large: bool, id: i64) -> Option<usize> {
        let width = if large { 4 } else { 1 };
        let (mut lo, mut hi) = (0, list.len() / width);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match Self::id(list, large, mid).cmp(&id) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// What the row holds for column `id`.
    pub fn get(&self, id: i64) -> Cell<'a> {
        if let Some(i) = Self::find(self.not_null, self.large, id) {
            let start = if i == 0 { 0 } else { self.offset(i - 1) };
            let end = self.offset(i);
            Cell::V2(&self.data[start..end], self.data_start + start)
        } else if Self::find(self.null, self.large, id).is_some() {
            Cell::Null
        } else {
            Cell::Absent
        }
    }

    /// The number of not-null columns.
    pub fn not_null_count(&self) -> usize {
        self.n
    }
}

/// Writing rows, for tests and the simulator.
#[cfg(any(test, feature = "encode"))]
pub mod write {
    use alloc::vec::Vec;

    use super::{FLAG_LARGE, V2_VERSION};
    use crate::datum::Datum;

    /// A v2 row of `(column id, value bytes or None for NULL)`; ids need not be sorted.
    pub fn v2(columns: &[(i64, Option<Vec<u8>>)]) -> Vec<u8> {
        let mut not_null: Vec<(i64, &[u8])> = Vec::new();
        let mut null: Vec<i64> = Vec::new();
        for (id, value) in columns {
            match value {
                Some(bytes) => not_null.push((*id, bytes)),
                None => null.push(*id),
            }
        }
        not_null.sort_by_key(|(id, _)| *id);
        null.sort_unstable();
        let data_len: usize = not_null.iter().map(|(_, b)| b.len()).sum();
        let large = data_len > usize::from(u16::MAX)
            || not_null.iter().map(|(id, _)| *id).chain(null.iter().copied()).any(|id| id > 255);
        let mut out = alloc::vec![V2_VERSION, if large { FLAG_LARGE } else { 0 }];
        out.extend_from_slice(&(not_null.len() as u16).to_le_bytes());
        out.extend_from_slice(&(null.len() as u16).to_le_bytes());
        let put_id = |out: &mut Vec<u8>, id: i64| {
            if large {
                out.extend_from_slice(&(id as u32).to_le_bytes());
            } else {
                out.push(id as u8);
            }
        };
        for (id, _) in &not_null {
            put_id(&mut out, *id);
        }
        for id in &null {
            put_id(&mut out, *id);
        }
        let mut end = 0usize;
        for (_, bytes) in &not_null {
            end += bytes.len();
            if large {
                out.extend_from_slice(&(end as u32).to_le_bytes());
            } else {
                out.extend_from_slice(&(end as u16).to_le_bytes());
            }
        }
        for (_, bytes) in &not_null {
            out.extend_from_slice(bytes);
        }
        out
    }

    /// A v1 row of `(column id, datum)`.
    pub fn v1(columns: &[(i64, Datum)]) -> Vec<u8> {
        if columns.is_empty() {
            return alloc::vec![0];
        }
        let mut out = Vec::new();
        for (id, datum) in columns {
            crate::datum::write::value(&mut out, &Datum::Int(*id));
            crate::datum::write::value(&mut out, datum);
        }
        out
    }
}
