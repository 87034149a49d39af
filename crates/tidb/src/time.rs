//! DATE, DATETIME and TIMESTAMP values (packed into a u64 as TiDB stores them) and TIME
//! durations (signed nanoseconds).
//!
//! Packed form, from the top bit down: one zero bit, 17 bits of `year * 13 + month`, 5 of day,
//! 5 of hour, 6 of minute, 6 of second, 24 of microseconds. MySQL's zero dates (month or day 0,
//! `0000-00-00`) are representable and kept. Inside binary JSON TiDB uses its in-memory layout
//! instead ([`Time::from_core_time`]). The fractional-second precision (fsp, 0..=6) is not
//! stored; it comes from the column's `Decimal`, and the value carries it for display.
//! TIMESTAMP values are stored in UTC and are given in UTC here.

use core::fmt;

use crate::Error;

/// The largest fsp MySQL allows.
pub const MAX_FSP: u8 = 6;

/// A calendar date and time of day with microseconds, as MySQL understands it (zero dates
/// allowed), and the fsp it is shown with.
///
/// Invariant: month <= 12, day <= 31, hour < 24, minute < 60, second < 60,
/// microsecond < 1_000_000, year <= 9999, fsp <= 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Time {
    /// Year, 0..=9999.
    pub year: u16,
    /// Month, 0..=12 (0 in zero dates).
    pub month: u8,
    /// Day, 0..=31 (0 in zero dates).
    pub day: u8,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=59.
    pub second: u8,
    /// Microsecond, 0..=999_999.
    pub microsecond: u32,
    /// Digits of fraction shown, 0..=6.
    pub fsp: u8,
}

impl Time {
    /// The zero time `0000-00-00 00:00:00`.
    pub const ZERO: Self =
        Self { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0, microsecond: 0, fsp: 0 };

    /// Decodes the packed storage form; `offset` places errors.
    pub fn from_packed(packed: u64, fsp: u8, offset: usize) -> Result<Self, Error> {
        let microsecond = (packed & 0xFF_FFFF) as u32;
        let rest = packed >> 24;
        let hms = rest & 0x1_FFFF;
        let ymd = rest >> 17;
        let year_month = ymd >> 5;
        let time = Self {
            year: u16::try_from(year_month / 13).unwrap_or(u16::MAX),
            month: (year_month % 13) as u8,
            day: (ymd & 31) as u8,
            hour: (hms >> 12) as u8,
            minute: ((hms >> 6) & 63) as u8,
            second: (hms & 63) as u8,
            microsecond,
            fsp: fsp.min(MAX_FSP),
        };
        time.checked("packed time", offset)
    }

    /// Decodes TiDB's in-memory layout, used for dates and times inside binary JSON: year in
    /// bits 50..64, month 46..50, day 41..46, hour 36..41, minute 30..36, second 24..30,
    /// microsecond 4..24.
    pub fn from_core_time(bits: u64, fsp: u8, offset: usize) -> Result<Self, Error> {
        let field = |shift: u32, width: u32| (bits >> shift) & ((1 << width) - 1);
        let time = Self {
            year: field(50, 14) as u16,
            month: field(46, 4) as u8,
            day: field(41, 5) as u8,
            hour: field(36, 5) as u8,
            minute: field(30, 6) as u8,
            second: field(24, 6) as u8,
            microsecond: field(4, 20) as u32,
            fsp: fsp.min(MAX_FSP),
        };
        time.checked("JSON time", offset)
    }

    fn checked(self, what: &'static str, offset: usize) -> Result<Self, Error> {
        let valid = self.year <= 9999
            && self.month <= 12
            && self.day <= 31
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
            && self.microsecond < 1_000_000;
        if valid { Ok(self) } else { Err(Error::invalid(what, offset)) }
    }

    /// The packed storage form.
    pub fn to_packed(&self) -> u64 {
        let ymd = ((u64::from(self.year) * 13 + u64::from(self.month)) << 5) | u64::from(self.day);
        let hms =
            (u64::from(self.hour) << 12) | (u64::from(self.minute) << 6) | u64::from(self.second);
        (((ymd << 17) | hms) << 24) | u64::from(self.microsecond)
    }

    /// TiDB's in-memory layout (the inverse of [`Time::from_core_time`]).
    pub fn to_core_time(&self) -> u64 {
        (u64::from(self.year) << 50)
            | (u64::from(self.month) << 46)
            | (u64::from(self.day) << 41)
            | (u64::from(self.hour) << 36)
            | (u64::from(self.minute) << 30)
            | (u64::from(self.second) << 24)
            | (u64::from(self.microsecond) << 4)
    }

    /// Parses `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` (how schemas write time defaults).
    pub fn parse(text: &str, fsp: u8) -> Option<Self> {
        let (date, time) = text.trim().split_once([' ', 'T']).unwrap_or((text.trim(), ""));
        let mut parts = date.splitn(3, '-');
        let mut out = Self { fsp: fsp.min(MAX_FSP), ..Self::ZERO };
        out.year = parts.next()?.parse().ok()?;
        out.month = parts.next()?.parse().ok()?;
        out.day = parts.next()?.parse().ok()?;
        if !time.is_empty() {
            let (hms, micros) = time.split_once('.').unwrap_or((time, ""));
            let mut parts = hms.splitn(3, ':');
            out.hour = parts.next()?.parse().ok()?;
            out.minute = parts.next()?.parse().ok()?;
            out.second = parts.next()?.parse().ok()?;
            out.microsecond = parse_micros(micros)?;
        }
        out.checked("time", 0).ok()
    }

    /// The date part alone, for display.
    fn date_only(&self) -> DateOnly<'_> {
        DateOnly(self)
    }
}

/// Displays a [`Time`] as `YYYY-MM-DD`.
struct DateOnly<'a>(&'a Time);

impl fmt::Display for DateOnly<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.0.year, self.0.month, self.0.day)
    }
}

/// A DATE value's text, `YYYY-MM-DD`.
pub fn date_text(time: &Time) -> alloc::string::String {
    alloc::format!("{}", time.date_only())
}

impl fmt::Display for Time {
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`, with `fsp` fraction digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:02}:{:02}:{:02}", self.date_only(), self.hour, self.minute, self.second)?;
        write_fraction(f, self.microsecond, self.fsp)
    }
}

/// A TIME value: signed nanoseconds (MySQL's range is ±838:59:59.999999) and the fsp it is
/// shown with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duration {
    /// Signed nanoseconds.
    pub nanos: i64,
    /// Digits of fraction shown, 0..=6.
    pub fsp: u8,
}

impl Duration {
    /// Parses `[-]HH:MM:SS[.ffffff]` (how schemas write TIME defaults).
    pub fn parse(text: &str, fsp: u8) -> Option<Self> {
        let text = text.trim();
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (hms, micros) = body.split_once('.').unwrap_or((body, ""));
        let mut parts = hms.splitn(3, ':');
        let hours: i64 = parts.next()?.parse().ok()?;
        let minutes: i64 = parts.next()?.parse().ok()?;
        let seconds: i64 = parts.next()?.parse().ok()?;
        if hours > 838 || minutes >= 60 || seconds >= 60 {
            return None;
        }
        let micros = i64::from(parse_micros(micros)?);
        let nanos = ((hours * 3600 + minutes * 60 + seconds) * 1_000_000 + micros) * 1000;
        Some(Self { nanos: if negative { -nanos } else { nanos }, fsp: fsp.min(MAX_FSP) })
    }
}

impl fmt::Display for Duration {
    /// `[-]HH:MM:SS[.ffffff]` (hours may exceed 24), with `fsp` fraction digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.nanos.unsigned_abs();
        let micros = nanos / 1000;
        let seconds = micros / 1_000_000;
        if self.nanos < 0 {
            f.write_str("-")?;
        }
        write!(f, "{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)?;
        write_fraction(f, (micros % 1_000_000) as u32, self.fsp)
    }
}

fn write_fraction(f: &mut fmt::Formatter<'_>, microsecond: u32, fsp: u8) -> fmt::Result {
    if fsp == 0 {
        return Ok(());
    }
    let fsp = usize::from(fsp.min(MAX_FSP));
    let digits = alloc::format!("{microsecond:06}");
    write!(f, ".{}", &digits[..fsp])
}

fn parse_micros(text: &str) -> Option<u32> {
    if text.len() > 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value = 0u32;
    for i in 0..6 {
        value = value * 10 + text.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
    }
    Some(value)
}
