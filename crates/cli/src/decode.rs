//! `kvfeed decode`: one key-value pair decoded against a TableInfo JSON file, printed as the
//! JSON line `kvfeed watch --table db.tbl` prints for it (for debugging a single pair).
//!
//! The kind follows the pair: a value and no old value is an insert, both an update, no value a
//! delete (whose `before` is the old value, or only the key's columns without one).

use std::path::PathBuf;

use kvfeed_tidb::render::{self, Kind};
use kvfeed_tidb::{RecordKey, RowDecoder, TableInfo};

use crate::Failure;
use crate::output::unhex;

/// Arguments of `kvfeed decode`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A TableInfo JSON file as TiDB stores it (the value of the meta key `DB:{db}` /
    /// `Table:{id}`, or a DDL job's `binlog.TableInfo`).
    #[arg(long, value_name = "FILE")]
    table_info: PathBuf,
    /// The raw row key, hex (as `kvfeed watch` prints it).
    #[arg(long, value_name = "HEX")]
    key: String,
    /// The row value, hex (absent or empty: a delete).
    #[arg(long, value_name = "HEX")]
    value: Option<String>,
    /// The old value, hex (absent or empty: none).
    #[arg(long, value_name = "HEX")]
    old_value: Option<String>,
    /// A commit ts to print with the row.
    #[arg(long, value_name = "TS")]
    commit_ts: Option<u64>,
}

pub(crate) fn run(args: &Args) -> Result<(), Failure> {
    let text = std::fs::read(&args.table_info).map_err(|e| {
        Failure::usage(format!("cannot read --table-info {}: {e}", args.table_info.display()))
    })?;
    let table = TableInfo::from_json(&text)
        .map_err(|e| Failure::usage(format!("--table-info {}: {e}", args.table_info.display())))?;
    let name = table.name.o.clone();
    let decoder = RowDecoder::new(table)
        .map_err(|e| Failure::usage(format!("--table-info {}: {e}", args.table_info.display())))?;
    let bytes = |flag: &str, text: Option<&str>| {
        text.map_or(Ok(Vec::new()), unhex).map_err(|e| Failure::usage(format!("{flag}: {e}")))
    };
    let key = bytes("--key", Some(&args.key))?;
    let value = bytes("--value", args.value.as_deref())?;
    let old_value = bytes("--old-value", args.old_value.as_deref())?;
    let line = decode(&decoder, &name, args.commit_ts, &key, &value, &old_value)
        .map_err(|e| Failure::runtime(format!("cannot decode the pair: {e}")))?;
    println!("{line}");
    Ok(())
}

/// The JSON line of one pair.
fn decode(
    decoder: &RowDecoder,
    table: &str,
    commit_ts: Option<u64>,
    key: &[u8],
    value: &[u8],
    old_value: &[u8],
) -> Result<String, kvfeed_tidb::Error> {
    let key = RecordKey::decode(key)?;
    let after = decoder.decode(&key, value)?;
    let before = decoder.decode(&key, old_value)?;
    let (kind, before) = match (&after, before) {
        (Some(_), None) => (Kind::Insert, None),
        (Some(_), Some(before)) => (Kind::Update, Some(before)),
        (None, Some(before)) => (Kind::Delete, Some(before)),
        (None, None) => (Kind::Delete, Some(decoder.decode_key(&key)?)),
    };
    Ok(render::event_line(kind, table, commit_ts, decoder, before.as_ref(), after.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"{"id": 104, "name": {"O": "t", "L": "t"}, "pk_is_handle": true,
        "cols": [{"id": 1, "name": "id", "state": 5, "type": {"Tp": 8, "Flag": 3}},
                 {"id": 2, "name": "note", "state": 5,
                  "type": {"Tp": 15, "Charset": "utf8mb4", "Collate": "utf8mb4_bin"}}]}"#;

    #[test]
    fn a_pair_decodes_to_its_kind() {
        let decoder = RowDecoder::new(TableInfo::from_json(TABLE.as_bytes()).unwrap()).unwrap();
        let key = unhex("7480000000000000685f728000000000000001").unwrap();
        let hi = unhex("8000010000000202006869").unwrap();
        let ho = unhex("800001000000020200686f").unwrap();
        let line =
            |value: &[u8], old: &[u8]| decode(&decoder, "t", Some(5), &key, value, old).unwrap();
        assert_eq!(
            line(&hi, &[]),
            r#"{"kind":"insert","table":"t","commit_ts":5,"before":null,"after":{"id":1,"note":"hi"}}"#
        );
        assert_eq!(
            line(&ho, &hi),
            r#"{"kind":"update","table":"t","commit_ts":5,"before":{"id":1,"note":"hi"},"after":{"id":1,"note":"ho"}}"#
        );
        assert_eq!(
            line(&[], &[]),
            r#"{"kind":"delete","table":"t","commit_ts":5,"before":{"id":1},"after":null}"#
        );
        assert!(decode(&decoder, "t", None, &key[..12], &hi, &[]).is_err());
    }
}
