//! The check vectors of `tidb-encoding.md` (TiDB's tests and hand-derived bytes), decoded to
//! their stated values and, where the crate writes the form, written back to the same bytes.

use alloc::string::String;
use alloc::vec;

use super::hex;
use crate::codec::{
    Reader, decode_float, decode_int, encode_float, encode_int, put_uvarint, put_varint,
};
use crate::datum::Datum;
use crate::decimal::Decimal;
use crate::json::Json;
use crate::key::{self, Handle, MetaKey, RecordKey};
use crate::row::{Cell, RowValue};
use crate::schema::{DbInfo, TableInfo, tp};
use crate::time::{Duration, Time};
use crate::value::{self, Value};
use crate::{RowDecoder, render};

#[test]
fn memcomparable_bytes() {
    for (raw, encoded) in [
        ("", "0000000000000000f7"),
        ("010203", "0102030000000000fa"),
        ("01020300", "0102030000000000fb"),
        ("0102030405060708", "0102030405060708ff0000000000000000f7"),
        ("010203040506070809", "0102030405060708ff0900000000000000f8"),
        ("0000000000000000", "0000000000000000ff0000000000000000f7"),
    ] {
        let bytes = hex(encoded);
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.memcomparable_bytes("test").unwrap(), hex(raw), "{encoded}");
        assert!(reader.is_empty());
    }
}

#[test]
fn comparable_numbers_and_varints() {
    for (value, bytes) in [
        (0, "8000000000000000"),
        (1, "8000000000000001"),
        (-1, "7fffffffffffffff"),
        (i64::MIN, "0000000000000000"),
    ] {
        assert_eq!(encode_int(value).to_vec(), hex(bytes));
        assert_eq!(decode_int(encode_int(value)), value);
    }
    for (value, bytes) in [(1.0, "bff0000000000000"), (-1.0, "400fffffffffffff")] {
        assert_eq!(encode_float(value).to_vec(), hex(bytes));
        assert_eq!(decode_float(encode_float(value)), value);
    }
    for (value, bytes) in [(1, "02"), (-1, "01"), (100, "c801"), (-300, "d704")] {
        let mut out = vec![];
        put_varint(&mut out, value);
        assert_eq!(out, hex(bytes));
        assert_eq!(Reader::new(&out).varint("test"), Ok(value));
    }
    let mut out = vec![];
    put_uvarint(&mut out, 300);
    assert_eq!(out, hex("ac02"));
    assert_eq!(Reader::new(&out).uvarint("test"), Ok(300));
    // Eleven bytes of continuation, and a tenth byte above 1, overflow.
    assert!(Reader::new(&[0xFF; 11]).uvarint("test").is_err());
    assert!(Reader::new(&hex("ffffffffffffffffff02")).uvarint("test").is_err());
    assert_eq!(Reader::new(&hex("ffffffffffffffffff01")).uvarint("test"), Ok(u64::MAX));
}

#[test]
fn record_keys() {
    let key = RecordKey::decode(&hex("7480000000000000685f728000000000000001")).unwrap();
    assert_eq!(key, RecordKey { table_id: 104, handle: Handle::Int(1) });
    let key = RecordKey { table_id: 106, handle: Handle::Int(-1) };
    assert_eq!(key.encode(), hex("74 800000000000006a 5f72 7fffffffffffffff"));
    assert_eq!(RecordKey::decode(&key.encode()), Ok(key));
    // The memcomparable form of table 104 / handle 1.
    assert_eq!(
        kvfeed_span::key::encode(&hex("7480000000000000685f728000000000000001")),
        hex("7480000000000000 ff 685f728000000000 ff 000001 0000000000 fa")
    );
    // A common handle: (VARBINARY 'abc', INT 5).
    let handle = hex("01 6162630000000000fa 03 8000000000000005");
    let mut raw = hex("7480000000000000685f72");
    raw.extend_from_slice(&handle);
    let key = RecordKey::decode(&raw).unwrap();
    assert_eq!(key.handle, Handle::Common(handle));
    assert_eq!(key.handle.datums().unwrap(), vec![Datum::Bytes(b"abc".to_vec()), Datum::Int(5)]);
    // A keyspace prefix is stripped.
    let mut prefixed = hex("78000001");
    prefixed.extend_from_slice(&hex("7480000000000000685f728000000000000001"));
    assert_eq!(RecordKey::decode(&prefixed).unwrap().table_id, 104);
    // Not record keys.
    assert!(matches!(RecordKey::decode(b"m"), Err(crate::Error::NotA { .. })));
    assert!(RecordKey::decode(&hex("7480000000000000685f69")).is_err());
    assert!(RecordKey::decode(&hex("7480000000000000685f72")).is_err());
    assert!(RecordKey::decode(&hex("7480000000000000685f7280")).is_err());
}

#[test]
fn table_spans() {
    // The record span of table 8616, and of the DDL job table.
    let (start, end) = key::record_range(8616);
    assert_eq!(kvfeed_span::key::encode(&start), hex("7480000000000021FFA85F720000000000FA"));
    assert_eq!(kvfeed_span::key::encode(&end), hex("7480000000000021FFA85F730000000000FA"));
    assert_eq!(key::DDL_JOB_TABLE_ID, 281_474_976_710_654);
    let (start, end) = key::record_range(key::DDL_JOB_TABLE_ID);
    assert_eq!(kvfeed_span::key::encode(&start), hex("748000fffffffffffffe5f720000000000fa"));
    assert_eq!(kvfeed_span::key::encode(&end), hex("748000fffffffffffffe5f730000000000fa"));
    assert_eq!(key::table_id_of(&start), Some(key::DDL_JOB_TABLE_ID));
    // An index key: table 42, index 666, one int datum.
    let mut raw = hex("74800000000000002a5f69800000000000029a");
    raw.extend_from_slice(&hex("038000000000000005"));
    let index = key::IndexKey::decode(&raw).unwrap();
    assert_eq!((index.table_id, index.index_id, index.datums), (42, 666, vec![Datum::Int(5)]));
}

#[test]
fn meta_keys() {
    let key = MetaKey::decode(&hex("6d44423a3536000000fc00000000000000685449443a31303800fe"));
    assert_eq!(key, Ok(MetaKey::HashField { key: b"DB:56".to_vec(), field: b"TID:108".to_vec() }));
    for (key, bytes) in [
        (
            MetaKey::HashField { key: key::DBS_KEY.to_vec(), field: key::db_key(2) },
            "6d 4442730000000000fa 0000000000000068 44423a3200000000fb",
        ),
        (
            MetaKey::HashField { key: key::db_key(2), field: key::table_field(106) },
            "6d 44423a3200000000fb 0000000000000068 5461626c653a3130ff 3600000000000000f8",
        ),
        (
            MetaKey::String { key: key::SCHEMA_VERSION_KEY.to_vec() },
            "6d 536368656d615665ff 7273696f6e4b6579ff 0000000000000000f7 0000000000000073",
        ),
        (MetaKey::String { key: b"Diff:57".to_vec() }, "6d 446966663a353700fe 0000000000000073"),
    ] {
        assert_eq!(key.encode(), hex(bytes));
        assert_eq!(MetaKey::decode(&hex(bytes)), Ok(key));
    }
    let (start, end) = key::hash_range(&key::db_key(2));
    assert_eq!(start, hex("6d 44423a3200000000fb 0000000000000068"));
    assert_eq!(end, hex("6d 44423a3200000000fb 0000000000000069"));
    // The list of DDL jobs of TiDB before 6.2 starts at element 0 of `DDLJobList`.
    let list = MetaKey::ListElement { key: b"DDLJobList".to_vec(), index: 0 }.encode();
    assert!(list.starts_with(&hex("6d44444c4a6f624c69ff7374000000000000f9000000000000006c")));
    assert_eq!(key::parse_db_key(b"DB:56"), Some(56));
    assert_eq!(key::parse_table_field(b"Table:106"), Some(106));
    assert_eq!(key::parse_table_field(b"TID:106"), None);
}

#[test]
fn decimals() {
    let positive = Decimal::from_bin(&hex("810DFB38D204D2"), 14, 4, 0).unwrap();
    assert_eq!(alloc::format!("{positive}"), "1234567890.1234");
    let negative = Decimal::from_bin(&hex("7EF204C72DFB2D"), 14, 4, 0).unwrap();
    assert_eq!(alloc::format!("{negative}"), "-1234567890.1234");
    assert_eq!(positive.to_bin(14, 4).unwrap(), hex("810DFB38D204D2"));
    assert_eq!(negative.to_bin(14, 4).unwrap(), hex("7EF204C72DFB2D"));
    // 3.14 as DECIMAL(3,2) in a v2 value: precision, scale, bin.
    let bytes = hex("0302830e");
    let mut reader = Reader::new(&bytes);
    assert_eq!(alloc::format!("{}", Decimal::read(&mut reader).unwrap()), "3.14");
    // A group out of range, a precision TiDB never writes, a short input.
    assert!(Decimal::from_bin(&hex("FF"), 2, 0, 0).is_err());
    assert!(Decimal::read(&mut Reader::new(&hex("4200"))).is_err());
    assert!(Decimal::read(&mut Reader::new(&hex("0302"))).is_err());
    // Rounding half up when the stored scale exceeds the column's.
    let d = Decimal::parse("2.345").unwrap();
    assert_eq!(alloc::format!("{}", d.rescale(2)), "2.35");
    assert_eq!(alloc::format!("{}", Decimal::parse("-9.995").unwrap().rescale(2)), "-10.00");
    assert_eq!(alloc::format!("{}", Decimal::parse("0.004").unwrap().rescale(2)), "0.00");
    assert_eq!(alloc::format!("{}", Decimal::parse("1.5").unwrap().rescale(3)), "1.500");
}

#[test]
fn times_and_durations() {
    let ts = Time::from_packed(1_840_446_893_366_133_311, 6, 0).unwrap();
    assert_eq!(alloc::format!("{ts}"), "2011-11-10 11:11:11.999999");
    assert_eq!(crate::codec::compact_uint(&hex("3f420fcbb2948a19"), 0), Ok(ts.to_packed()));
    let datetime = Time::parse("2024-02-29 13:45:10.5", 6).unwrap();
    assert_eq!(datetime.to_packed(), 1_851_747_847_805_313_312);
    let mut out = vec![];
    crate::codec::put_compact_uint(&mut out, datetime.to_packed());
    assert_eq!(out, hex("20a1074adbbab219"));
    assert_eq!(
        Time::parse("2024-02-29", 0).unwrap().to_packed().to_le_bytes().to_vec(),
        hex("0000000000bab219")
    );
    assert_eq!(Time::from_packed(0, 0, 0).unwrap(), Time::ZERO);
    assert_eq!(alloc::format!("{}", Time { fsp: 3, ..datetime }), "2024-02-29 13:45:10.500");
    // An hour of 31 is not a time.
    assert!(
        Time::from_packed(Time { hour: 0, ..datetime }.to_packed() | (31 << 36), 0, 0).is_err()
    );

    let d = Duration::parse("01:02:03", 0).unwrap();
    let mut out = vec![];
    crate::codec::put_compact_int(&mut out, d.nanos);
    assert_eq!(out, hex("00ae17d462030000"));
    let d = Duration::parse("-00:00:01", 0).unwrap();
    let mut out = vec![];
    crate::codec::put_compact_int(&mut out, d.nanos);
    assert_eq!(out, hex("003665c4"));
    assert_eq!(
        alloc::format!("{}", Duration { nanos: -3_723_500_000_000, fsp: 2 }),
        "-01:02:03.50"
    );
    assert_eq!(alloc::format!("{}", Duration::parse("838:59:59", 0).unwrap()), "838:59:59");
    // Any i64 formats (hostile values included).
    let _ = alloc::format!("{}", Duration { nanos: i64::MIN, fsp: 6 });
}

#[test]
fn binary_json() {
    let bytes =
        hex("01 02000000 42000000 1e000000 0100 1f000000 0100 03 20000000 04 01000000 61 62
         02000000 22000000 09 12000000 09 1a000000 0100000000000000 0200000000000000");
    let json = Json::decode(&bytes, 0).unwrap();
    let expected = Json::Object(vec![
        (String::from("a"), Json::Array(vec![Json::Int(1), Json::Int(2)])),
        (String::from("b"), Json::Bool(true)),
    ]);
    assert_eq!(json, expected);
    assert_eq!(crate::json::encode(&expected), bytes);
    assert_eq!(Json::peek_len(&bytes, 0), Ok(bytes.len()));
    assert_eq!(serde_json::to_string(&json.to_serde()).unwrap(), r#"{"a":[1,2],"b":true}"#);
    // Truncated, an offset out of the container, an unknown type, a bad literal.
    assert!(Json::decode(&bytes[..bytes.len() - 1], 0).is_err());
    let mut bad = bytes.clone();
    bad[22] = 0xF0;
    assert!(Json::decode(&bad, 0).is_err());
    assert!(Json::decode(&hex("42"), 0).is_err());
    assert!(Json::decode(&hex("0403"), 0).is_err());
    // Scalars.
    assert_eq!(Json::decode(&hex("0c 03 616263"), 0), Ok(Json::String("abc".into())));
    assert_eq!(Json::decode(&hex("0a ffffffffffffffff"), 0), Ok(Json::Uint(u64::MAX)));
    // A string or opaque length of u64::MAX is refused, not added to the header (fuzz finding).
    assert!(Json::decode(&hex("0c ffffffffffffffffff01"), 0).is_err());
    assert!(Json::decode(&hex("0d 04 ffffffffffffffffff01"), 0).is_err());
    crate::fuzzing::decode(&hex(
        "0a0d04ffffffffffffffffff0100000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffff020900",
    ));
}

#[test]
fn exponential_json_is_refused() {
    // Forty arrays, each with two entries pointing at the next one: 2^40 values by offsets.
    let mut inner = hex("09 0100000000000000");
    let mut kind = 0x09;
    for _ in 0..40 {
        let size = 8 + 2 * 5 + inner.len() - 1;
        let mut body = vec![];
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&(size as u32).to_le_bytes());
        for _ in 0..2 {
            body.push(kind);
            body.extend_from_slice(&18u32.to_le_bytes());
        }
        body.extend_from_slice(&inner[1..]);
        inner = vec![0x03];
        inner.extend(body);
        kind = 0x03;
    }
    assert!(Json::decode(&inner, 0).is_err());
}

#[test]
fn rows_v2_and_v1() {
    let v2 = hex("80000300010001020403010003000500076869d4fe");
    let v1 = hex("0802080e080402046869080600080808d704");
    for bytes in [&v2, &v1] {
        let row = RowValue::parse(bytes).unwrap();
        match (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5)) {
            (a, b, Cell::Null, d, Cell::Absent) => {
                let int = |cell: Cell<'_>| match cell {
                    Cell::V2(bytes, _) => crate::codec::compact_int(bytes, 0).unwrap(),
                    Cell::V1(Datum::Int(i)) => *i,
                    other => panic!("{other:?}"),
                };
                assert_eq!((int(a), int(d)), (7, -300));
                match b {
                    Cell::V2(bytes, _) => assert_eq!(bytes, b"hi"),
                    Cell::V1(datum) => assert_eq!(datum, &Datum::Bytes(b"hi".to_vec())),
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }
    // The writers give the same bytes.
    let written = crate::row::write::v2(&[
        (4, Some(hex("d4fe"))),
        (1, Some(vec![7])),
        (3, None),
        (2, Some(b"hi".to_vec())),
    ]);
    assert_eq!(written, v2);
    let written = crate::row::write::v1(&[
        (1, Datum::Int(7)),
        (2, Datum::Bytes(b"hi".to_vec())),
        (3, Datum::Null),
        (4, Datum::Int(-300)),
    ]);
    assert_eq!(written, v1);
    // A row of no columns in each format.
    assert!(matches!(RowValue::parse(&hex("800000000000")).unwrap().get(1), Cell::Absent));
    assert!(matches!(RowValue::parse(&hex("00")).unwrap().get(1), Cell::Absent));
    // A checksum after the data is skipped; bytes beyond it are refused.
    let mut checksummed = v2.clone();
    checksummed[1] = 0x02;
    checksummed.extend_from_slice(&hex("01 78563412"));
    assert!(RowValue::parse(&checksummed).is_ok());
    checksummed.push(0);
    assert!(RowValue::parse(&checksummed).is_err());
    // Decreasing offsets, a short data part, an id that is no integer in v1.
    assert!(RowValue::parse(&hex("80000200 0000 0102 0300 0100 616263")).is_err());
    assert!(RowValue::parse(&hex("80000100 0000 01 0500 6869")).is_err());
    assert!(RowValue::parse(&hex("0203616263 0802")).is_err());
}

/// The TableInfo example of the reference (§4.3), as TiDB writes it.
pub(crate) const ORDERS: &str = r#"{
  "id": 106, "name": {"O": "orders", "L": "orders"},
  "charset": "utf8mb4", "collate": "utf8mb4_bin",
  "cols": [
    {"id": 1, "name": {"O": "id", "L": "id"}, "offset": 0,
     "origin_default": null, "default": null, "default_bit": null, "default_is_expr": false,
     "generated_expr_string": "", "generated_stored": false, "dependences": null,
     "type": {"Tp": 8, "Flag": 4099, "Flen": 20, "Decimal": 0, "Charset": "binary",
              "Collate": "binary", "Elems": null, "ElemsIsBinaryLit": null, "Array": false},
     "state": 5, "comment": "", "hidden": false, "change_state_info": null, "version": 2},
    {"id": 2, "name": {"O": "status", "L": "status"}, "offset": 1,
     "origin_default": "new", "default": "new", "default_bit": null,
     "type": {"Tp": 247, "Flag": 0, "Flen": 4, "Decimal": 0, "Charset": "utf8mb4",
              "Collate": "utf8mb4_bin", "Elems": ["new", "paid"], "ElemsIsBinaryLit": null, "Array": false},
     "state": 5, "hidden": false, "version": 2},
    {"id": 3, "name": {"O": "amount", "L": "amount"}, "offset": 2, "origin_default": null, "default": null,
     "type": {"Tp": 246, "Flag": 0, "Flen": 10, "Decimal": 2, "Charset": "binary", "Collate": "binary",
              "Elems": null, "ElemsIsBinaryLit": null, "Array": false},
     "state": 5, "hidden": false, "version": 2},
    {"id": 4, "name": {"O": "created_at", "L": "created_at"}, "offset": 3, "origin_default": null, "default": null,
     "type": {"Tp": 7, "Flag": 128, "Flen": 23, "Decimal": 3, "Charset": "binary", "Collate": "binary",
              "Elems": null, "ElemsIsBinaryLit": null, "Array": false},
     "state": 5, "hidden": false, "version": 2}
  ],
  "index_info": [
    {"id": 1, "idx_name": {"O": "idx_status", "L": "idx_status"}, "tbl_name": {"O": "", "L": ""},
     "idx_cols": [{"name": {"O": "status", "L": "status"}, "offset": 1, "length": -1}],
     "state": 5, "backfill_state": 0, "comment": "", "index_type": 1, "is_unique": false,
     "is_primary": false, "is_invisible": false, "is_global": false, "mv_index": false, "vector_index": null}
  ],
  "constraint_info": null, "fk_info": null, "state": 5,
  "pk_is_handle": true, "is_common_handle": false, "common_handle_version": 0,
  "comment": "", "auto_inc_id": 0, "auto_id_cache": 0, "auto_rand_id": 0,
  "max_col_id": 4, "max_idx_id": 1, "max_fk_id": 0, "max_cst_id": 0,
  "update_timestamp": 452113870453751810, "ShardRowIDBits": 0, "max_shard_row_id_bits": 0,
  "auto_random_bits": 0, "auto_random_range_bits": 0, "pre_split_regions": 0,
  "partition": {"type": 1, "expr": "`id`", "columns": null, "enable": true, "is_empty_columns": false,
    "definitions": [
      {"id": 107, "name": {"O": "p0", "L": "p0"}, "less_than": ["1000"], "in_values": null, "policy_ref_info": null},
      {"id": 108, "name": {"O": "p1", "L": "p1"}, "less_than": ["MAXVALUE"], "in_values": null, "policy_ref_info": null}],
    "adding_definitions": null, "dropping_definitions": null, "NewPartitionIDs": null,
    "states": null, "num": 2, "ddl_state": 0, "new_table_id": 0, "ddl_type": 0, "ddl_expr": "", "ddl_columns": null},
  "compression": "", "view": null, "sequence": null, "Lock": null, "version": 5,
  "tiflash_replica": null, "is_columnar": false, "temp_table_type": 0, "cache_table_status": 0,
  "policy_ref_info": null, "stats_options": null, "exchange_partition_info": null, "ttl_info": null,
  "revision": 1
}"#;

#[test]
fn the_reference_table_info_decodes_its_rows() {
    let table = TableInfo::from_json(ORDERS.as_bytes()).unwrap();
    assert_eq!((table.id, table.name.o.as_str(), table.pk_is_handle), (106, "orders", true));
    assert_eq!(table.physical_ids(), vec![107, 108]);
    assert_eq!(table.cols[1].field_type.elems, vec!["new", "paid"]);
    assert_eq!(table.cols[0].field_type.tp, tp::LONGLONG);
    let decoder = RowDecoder::new(table).unwrap();
    // A row of partition p0, handle 42: status 2 ("paid"), amount 3.14, created_at in UTC.
    let key = RecordKey { table_id: 107, handle: Handle::Int(42) };
    let created = Time::parse("2024-02-29 13:45:10.5", 3).unwrap();
    let mut created_bytes = vec![];
    crate::codec::put_compact_uint(&mut created_bytes, created.to_packed());
    let value = crate::row::write::v2(&[
        (2, Some(vec![2])),
        (3, Some(hex("0302830e"))),
        (4, Some(created_bytes)),
    ]);
    let row = decoder.decode(&key, &value).unwrap().unwrap();
    assert_eq!(row.get(0), Some(&Value::Int(42)));
    assert_eq!(row.get(1), Some(&Value::Enum { index: 2, name: "paid".into() }));
    assert_eq!(row.get(2), Some(&Value::Decimal(Decimal::parse("3.14").unwrap())));
    assert_eq!(row.get(3), Some(&Value::Timestamp(created)));
    let line = render::event_line(
        render::Kind::Insert,
        "shop.orders",
        Some(9),
        &decoder,
        None,
        Some(&row),
    );
    assert_eq!(
        line,
        r#"{"kind":"insert","table":"shop.orders","commit_ts":9,"before":null,"after":{"id":42,"status":"paid","amount":"3.14","created_at":"2024-02-29 13:45:10.500"}}"#
    );
    // A row written before `status` existed takes its origin default.
    let old = crate::row::write::v2(&[(3, Some(hex("0302830e"))), (4, None)]);
    let row = decoder.decode(&key, &old).unwrap().unwrap();
    assert_eq!(row.get(1), Some(&Value::Enum { index: 1, name: "new".into() }));
    assert_eq!(row.get(3), Some(&Value::Null));
    // A delete without an old value: the key's columns only.
    let row = decoder.decode_key(&key).unwrap();
    assert_eq!(row.iter().collect::<alloc::vec::Vec<_>>(), vec![(0, &Value::Int(42))]);
    assert!(!row.is_complete());
}

#[test]
fn db_info_and_names() {
    let db = DbInfo::from_json(
        br#"{"id": 2, "db_name": {"O": "shop", "L": "shop"}, "charset": "utf8mb4",
            "collate": "utf8mb4_bin", "Deprecated": {}, "state": 5, "policy_ref_info": null,
            "read_only": false, "archived": false}"#,
    )
    .unwrap();
    assert_eq!((db.id, db.db_name.o.as_str(), db.state), (2, "shop", 5));
    // A bare string is a name too; lowercase is derived.
    let db = DbInfo::from_json(br#"{"id": 3, "db_name": "Shop"}"#).unwrap();
    assert_eq!((db.db_name.o.as_str(), db.db_name.l.as_str()), ("Shop", "shop"));
    assert!(matches!(DbInfo::from_json(b"{\"id\": \"x\"}"), Err(crate::Error::Schema(_))));
}

#[test]
fn value_conversion_by_type() {
    let table = crate::fuzzing::every_type_table();
    let col = |i: usize| &table.cols[i - 1];
    let v2 = |i: usize, bytes: &[u8]| value::from_v2(&col(i).field_type, bytes, 0);
    assert_eq!(v2(2, &[0xFF]), Ok(Value::Uint(255)));
    assert_eq!(v2(3, &[0xFF]), Ok(Value::Int(-1)));
    assert!(v2(1, &[1, 2, 3]).is_err());
    assert_eq!(v2(4, &encode_float(1.5)), Ok(Value::Float(1.5)));
    assert_eq!(v2(15, &[3]), Ok(Value::Enum { index: 3, name: "c".into() }));
    assert!(v2(15, &[4]).is_err());
    assert_eq!(v2(16, &[3]), Ok(Value::Set { bits: 3, names: "x,y".into() }));
    assert!(v2(16, &[4]).is_err());
    assert_eq!(v2(14, &[0xE9]), Ok(Value::Text("é".into())));
    assert!(v2(12, &[0xE9]).is_err());
    assert_eq!(v2(13, &[0xE9]), Ok(Value::Bytes(vec![0xE9])));
    assert_eq!(v2(19, &hex("01000000 0000803f")), Ok(Value::Vector(vec![1.0])));
    assert!(v2(19, &hex("02000000 0000803f")).is_err());
    assert_eq!(
        v2(10, &hex("00ae17d462030000")),
        Ok(Value::Duration(Duration { nanos: 3_723_000_000_000, fsp: 2 }))
    );
    // A datum of the wrong kind for its column.
    assert!(value::from_datum(col(4), &Datum::Bytes(vec![])).is_err());
}
