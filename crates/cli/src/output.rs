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
            let old = row.old_value.as_deref().map_or_else(|| "-".to_owned(), hex);
            writeln!(
                out,
                "{:<6} key={} value={} old={} start_ts={} commit_ts={}",
                op_name(row.op),
                hex(&row.key),
                hex(&row.value),
                old,
                row.start_ts,
                row.commit_ts,
            )
        }
        (Format::Text, Event::Resolved(ts)) => writeln!(out, "resolved {ts}"),
        (Format::Json, Event::Snapshot(row)) => writeln!(
            out,
            r#"{{"kind":"snapshot","key":"{}","value":"{}"}}"#,
            hex(&row.key),
            hex(&row.value)
        ),
        (Format::Json, Event::SnapshotDone(ts)) => {
            writeln!(out, r#"{{"kind":"snapshot_done","ts":{ts}}}"#)
        }
        (Format::Text, Event::Snapshot(row)) => {
            writeln!(out, "snapshot key={} value={}", hex(&row.key), hex(&row.value))
        }
        (Format::Text, Event::SnapshotDone(ts)) => writeln!(out, "snapshot_done {ts}"),
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
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(unhex(&hex(b"\x00\x7f\xff")).unwrap(), b"\x00\x7f\xff");
        assert_eq!(unhex("AbCd").unwrap(), [0xab, 0xcd]);
        assert!(unhex("abc").unwrap_err().contains("odd"));
        assert!(unhex("zz").unwrap_err().contains("not a hex digit"));
    }
}
