//! TiDB table keys and spans (§4, §10 H item 27).

use super::hex;
use crate::key::encode;
use crate::table::{
    decode_int, encode_int, record_handle_of, record_key, record_prefix, table_id_of, table_prefix,
    table_span,
};

const IDS: [i64; 8] = [i64::MIN, -1, 0, 1, 42, 8616, 1 << 40, i64::MAX];
const HANDLES: [i64; 6] = [i64::MIN, -1, 0, 1, 1 << 33, i64::MAX];

#[test]
fn int_encoding() {
    #[track_caller]
    fn check(value: i64, bytes: &str) {
        assert_eq!(encode_int(value).as_slice(), hex(bytes), "encode_int({value})");
        assert_eq!(decode_int(encode_int(value)), value, "decode_int");
    }
    check(i64::MIN, "0000000000000000");
    check(-1, "7FFFFFFFFFFFFFFF");
    check(0, "8000000000000000");
    check(1, "8000000000000001");
    check(8616, "80000000000021A8");
    check(i64::MAX, "FFFFFFFFFFFFFFFF");
    // Signed order is byte order.
    for pair in IDS.windows(2) {
        assert!(encode_int(pair[0]) < encode_int(pair[1]), "{pair:?}");
    }
}

#[test]
fn table_range_properties() {
    // §10 H item 27: start < end; start >= the record prefix; end <= the prefix with its last
    // byte incremented; every record of the table inside, index keys and other tables outside.
    for id in IDS {
        let span = table_span(id);
        let prefix = record_prefix(id);
        let mut next = prefix.clone();
        *next.last_mut().unwrap() += 1;
        assert!(span.start() < span.end(), "table {id}");
        assert!(!span.is_start_unbounded() && !span.is_end_unbounded());
        assert!(span.start().as_bytes() >= encode(&prefix).as_slice(), "table {id}");
        assert!(span.end().as_bytes() <= encode(&next).as_slice(), "table {id}");
        for handle in HANDLES {
            let row = record_key(id, handle);
            assert!(span.contains_raw_key(&row), "row {handle} of table {id}");
            assert!(span.contains_key(&encode(&row)));
            assert_eq!(record_handle_of(&row), Some((id, handle)));
            assert_eq!(table_id_of(&row), Some(id));
        }
        let mut index_key = table_prefix(id).to_vec();
        index_key.extend_from_slice(b"_i\x80\x00\x00\x00\x00\x00\x00\x01");
        assert!(!span.contains_raw_key(&index_key), "index keys are left out");
        assert!(!span.contains_raw_key(&table_prefix(id)), "the bare table prefix is left out");
        if let Some(following) = id.checked_add(1) {
            assert!(!span.overlaps(&table_span(following)));
            assert!(span < table_span(following), "tables sort by id");
            assert!(!span.contains_raw_key(&record_key(following, i64::MIN)));
        }
    }
}

#[test]
fn key_parsing() {
    #[track_caller]
    fn check(raw: &[u8], table: Option<i64>, handle: Option<(i64, i64)>) {
        assert_eq!(table_id_of(raw), table, "table_id_of({raw:02X?})");
        assert_eq!(record_handle_of(raw), handle, "record_handle_of({raw:02X?})");
    }
    check(b"", None, None);
    check(b"t", None, None);
    check(b"m\x80\x00\x00\x00\x00\x00\x00\x01", None, None);
    check(&hex("74 80000000000021A8"), Some(8616), None);
    check(&hex("74 80000000000021A8 5F69 8000000000000001"), Some(8616), None);
    check(&hex("74 80000000000021A8 5F72 80000000000000"), Some(8616), None);
    check(&hex("74 80000000000021A8 5F72 8000000000000001"), Some(8616), Some((8616, 1)));
    check(&hex("74 80000000000021A8 5F72 8000000000000001 00"), Some(8616), None);
    check(&record_key(-5, -7), Some(-5), Some((-5, -7)));
}
