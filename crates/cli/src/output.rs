//! What `watch` and `snapshot` print: one JSON object per line (the format scripts rely on), or text.

use std::io::Write;

use kvfeed::{Event, Op};

/// Output formats of `watch` and `snapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// `{"kind":"row",...}`, `{"kind":"resolved","ts":N}`, `{"kind":"snapshot",...}` and
    /// `{"kind":"snapshot_done","ts":N}`, one per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Writes one event as one line.
pub(crate) fn write_event(
    out: &mut impl Write,
    format: Format,
    event: &Event,
) -> std::io::Result<()> {
    match (format, event) {
        (Format::Json, Event::Row(row)) => {
            write!(
                out,
                r#"{{"kind":"row","op":"{}","key":"{}","value":"{}","old_value":"#,
                op_name(row.op),
                hex(&row.key),
                hex(&row.value),
            )?;
            match &row.old_value {
                Some(old) => write!(out, r#""{}""#, hex(old))?,
                None => write!(out, "null")?,
            }
            writeln!(out, r#","start_ts":{},"commit_ts":{}}}"#, row.start_ts, row.commit_ts)
        }
        (Format::Json, Event::Resolved(ts)) => writeln!(out, r#"{{"kind":"resolved","ts":{ts}}}"#),
        (Format::Text, Event::Row(row)) => {
            let old = row.old_value.as_deref().map_or_else(|| "-".to_owned(), bytes_text);
            let value = if row.op == Op::Delete { "-".to_owned() } else { bytes_text(&row.value) };
            writeln!(
                out,
                "{:<8} {:<28} commit {} {}  value={value} old={old}",
                op_name(row.op),
                key_text(&row.key),
                row.commit_ts,
                tso_time(row.commit_ts),
            )
        }
        (Format::Text, Event::Resolved(ts)) => {
            writeln!(out, "{:<8} {:<28} resolved {ts} {}", "resolved", "", tso_time(*ts))
        }
        (Format::Json, Event::Snapshot(row)) => writeln!(
            out,
            r#"{{"kind":"snapshot","key":"{}","value":"{}"}}"#,
            hex(&row.key),
            hex(&row.value)
        ),
        (Format::Json, Event::SnapshotDone(ts)) => {
            writeln!(out, r#"{{"kind":"snapshot_done","ts":{ts}}}"#)
        }
        (Format::Text, Event::Snapshot(row)) => writeln!(
            out,
            "{:<8} {:<28} value={}",
            "snapshot",
            key_text(&row.key),
            bytes_text(&row.value)
        ),
        (Format::Text, Event::SnapshotDone(ts)) => {
            writeln!(out, "{:<8} {:<28} snapshot {ts} {}", "done", "", tso_time(*ts))
        }
        // A kind of event newer than this output format: nothing to print for it.
        (_, _) => Ok(()),
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Put => "put",
        Op::Delete => "delete",
    }
}

/// A raw key for people: TiDB record keys as `t{table}_r{handle}`, index keys as
/// `t{table}_i{index}_` and the rest in hex, other keys as text when printable, else hex.
fn key_text(key: &[u8]) -> String {
    if let Some((table, handle)) = kvfeed_span::table::record_handle_of(key) {
        return format!("t{table}_r{handle}");
    }
    if let Some(table) = kvfeed_span::table::table_id_of(key) {
        let rest = &key[9..];
        return match rest {
            [b'_', b'i', index @ ..] if index.len() >= 8 => {
                let id = kvfeed_span::table::decode_int(index[..8].try_into().unwrap_or([0; 8]));
                format!("t{table}_i{id}_{}", hex(&index[8..]))
            }
            [b'_', b'r', handle @ ..] => format!("t{table}_r{}", hex(handle)),
            _ => format!("t{table}_{}", hex(rest)),
        };
    }
    bytes_text(key)
}

/// Bytes for people: printable ASCII as a quoted string, anything else as hex.
fn bytes_text(bytes: &[u8]) -> String {
    if !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        hex(bytes)
    }
}

/// A TSO's wall-clock time, `(2026-12-04 21:13:51.870 UTC)`.
fn tso_time(ts: u64) -> String {
    let ms = u64::try_from(kvfeed_sim::physical_of(ts)).unwrap_or(0);
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_date(days);
    let (h, m, s, frac) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("({year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{frac:03} UTC)")
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    out
}

/// Parses hex (either case, even length).
pub(crate) fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in {text:?}"));
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("{:?} is not a hex digit in {text:?}", char::from(c))),
    };
    text.as_bytes().chunks_exact(2).map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kvfeed::RowEvent;

    use super::*;

    #[test]
    fn json_lines_are_exactly_the_documented_shape() {
        let key = Bytes::from_static(b"\x74\x01");
        let row = RowEvent::new(Op::Put, key.clone(), Bytes::from_static(b"v"), None, 5, 6);
        let mut out = Vec::new();
        write_event(&mut out, Format::Json, &Event::Row(row.clone())).unwrap();
        write_event(
            &mut out,
            Format::Json,
            &Event::Row(RowEvent::new(
                Op::Delete,
                key,
                Bytes::new(),
                Some(Bytes::from_static(b"\xff")),
                5,
                6,
            )),
        )
        .unwrap();
        write_event(&mut out, Format::Json, &Event::Resolved(7)).unwrap();
        let snapshot = kvfeed::SnapshotRow {
            key: Bytes::from_static(b"\x74"),
            value: Bytes::from_static(b"\x01"),
        };
        write_event(&mut out, Format::Json, &Event::Snapshot(snapshot)).unwrap();
        write_event(&mut out, Format::Json, &Event::SnapshotDone(8)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"kind":"row","op":"put","key":"7401","value":"76","old_value":null,"start_ts":5,"commit_ts":6}"#,
                "\n",
                r#"{"kind":"row","op":"delete","key":"7401","value":"","old_value":"ff","start_ts":5,"commit_ts":6}"#,
                "\n",
                r#"{"kind":"resolved","ts":7}"#,
                "\n",
                r#"{"kind":"snapshot","key":"74","value":"01"}"#,
                "\n",
                r#"{"kind":"snapshot_done","ts":8}"#,
                "\n"
            )
        );
    }

    #[test]
    fn text_lines_decode_keys_and_show_wall_clock_times() {
        let key = Bytes::from(kvfeed_span::table::record_key(100, 219));
        let ts = (1_796_418_831_870u64 << 18) | 5;
        let row = RowEvent::new(Op::Put, key, Bytes::from_static(b"v12-.."), None, ts - 1, ts);
        let mut out = Vec::new();
        write_event(&mut out, Format::Text, &Event::Row(row)).unwrap();
        write_event(&mut out, Format::Text, &Event::Resolved(ts)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "put      t100_r219                    commit {ts} (2026-12-04 21:13:51.870 UTC)  value=\"v12-..\" old=-"
            )
        );
        assert!(
            lines[1].starts_with("resolved ")
                && lines[1].ends_with("(2026-12-04 21:13:51.870 UTC)")
        );
        assert_eq!(key_text(b"\x01\x02"), "0102");
        assert_eq!(key_text(b"abc"), "\"abc\"");
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(unhex(&hex(b"\x00\x7f\xff")).unwrap(), b"\x00\x7f\xff");
        assert_eq!(unhex("AbCd").unwrap(), [0xab, 0xcd]);
        assert!(unhex("abc").unwrap_err().contains("odd"));
        assert!(unhex("zz").unwrap_err().contains("not a hex digit"));
    }
}
