//! Round trips against the crate's writers: random tables (every column type, each handle
//! kind, ids past 255 for large v2 rows, columns missing from old rows) and random values,
//! written as v2 or v1 rows and decoded back; decimals and binary JSON alone; and the fuzz
//! checks on random and on damaged valid input.

use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

use proptest::prelude::*;

use crate::datum::Datum;
use crate::decimal::Decimal;
use crate::json::Json;
use crate::key::{Handle, RecordKey};
use crate::schema::{
    CiStr, ColumnInfo, FieldType, IndexColumn, IndexInfo, TableInfo, flag, state, tp,
};
use crate::time::{Duration, Time};
use crate::value::{self, Value};
use crate::{RowDecoder, fuzzing};

/// The column types of the every-type table, by position.
fn column_types() -> Vec<FieldType> {
    fuzzing::every_type_table().cols.into_iter().map(|c| c.field_type).collect()
}

/// Integers of every compact width (uniform i64s would almost all take 8 bytes).
fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i8>().prop_map(i64::from),
        any::<i16>().prop_map(i64::from),
        any::<i32>().prop_map(i64::from),
        any::<i64>(),
    ]
}

fn uint() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u8>().prop_map(u64::from),
        any::<u16>().prop_map(u64::from),
        any::<u32>().prop_map(u64::from),
        any::<u64>(),
    ]
}

fn time(fsp: u8, date_only: bool) -> impl Strategy<Value = Time> {
    (0u16..=9999, 0u8..=12, 0u8..=31, 0u8..24, 0u8..60, 0u8..60, 0u32..1_000_000).prop_map(
        move |(year, month, day, hour, minute, second, microsecond)| {
            if date_only {
                Time { year, month, day, ..Time::ZERO }
            } else {
                Time { year, month, day, hour, minute, second, microsecond, fsp }
            }
        },
    )
}

fn decimal(scale: usize) -> impl Strategy<Value = Decimal> {
    (any::<bool>(), "[0-9]{0,20}", proptest::collection::vec(0u8..10, scale)).prop_map(
        |(negative, int, frac)| {
            let frac: String = frac.iter().map(|d| char::from(b'0' + d)).collect();
            let text = format!(
                "{}{}.{frac}",
                if negative { "-" } else { "" },
                if int.is_empty() { "0" } else { &int }
            );
            Decimal::parse(&text).unwrap()
        },
    )
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        int().prop_map(Json::Int),
        any::<u64>().prop_map(Json::Uint),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Json::Double),
        ".{0,12}".prop_map(Json::String),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(type_code, bytes)| Json::Opaque { type_code, bytes }),
        time(6, false).prop_map(Json::Datetime),
        time(6, false).prop_map(Json::Timestamp),
        (any::<i64>(), 0u8..=6).prop_map(|(nanos, fsp)| Json::Time(Duration { nanos, fsp })),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|fields| Json::Object(fields.into_iter().collect())),
        ]
    })
}

/// A value of the `position`-th type of the every-type table (never NULL).
fn value_of(position: usize) -> BoxedStrategy<Value> {
    let ft = &column_types()[position];
    match ft.tp {
        tp::LONG if ft.is_unsigned() => uint().prop_map(Value::Uint).boxed(),
        tp::LONGLONG | tp::TINY | tp::YEAR => int().prop_map(Value::Int).boxed(),
        tp::FLOAT => {
            any::<f32>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::Float).boxed()
        }
        tp::DOUBLE => {
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::Double).boxed()
        }
        tp::NEW_DECIMAL => decimal(ft.decimal as usize).prop_map(Value::Decimal).boxed(),
        tp::DATE => time(0, true).prop_map(Value::Date).boxed(),
        tp::DATETIME => time(ft.fsp(), false).prop_map(Value::Datetime).boxed(),
        tp::TIMESTAMP => time(ft.fsp(), false).prop_map(Value::Timestamp).boxed(),
        tp::DURATION => {
            let fsp = ft.fsp();
            int().prop_map(move |nanos| Value::Duration(Duration { nanos, fsp })).boxed()
        }
        tp::VARCHAR => ".{0,16}".prop_map(Value::Text).boxed(),
        tp::BLOB => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes).boxed(),
        tp::STRING => "[\u{0}-\u{ff}]{0,16}".prop_map(Value::Text).boxed(),
        tp::ENUM => {
            let elems = ft.elems.clone();
            (0..=elems.len() as u64)
                .prop_map(move |index| Value::Enum {
                    index,
                    name: if index == 0 {
                        String::new()
                    } else {
                        elems[index as usize - 1].clone()
                    },
                })
                .boxed()
        }
        tp::SET => {
            let elems = ft.elems.clone();
            (0u64..1 << elems.len())
                .prop_map(move |bits| Value::Set {
                    bits,
                    names: elems
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| bits & (1 << i) != 0)
                        .map(|(_, e)| e.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                })
                .boxed()
        }
        tp::BIT => uint().prop_map(Value::Bit).boxed(),
        tp::JSON => json().prop_map(|j| Value::Json(sorted(j))).boxed(),
        tp::VECTOR_FLOAT32 => {
            proptest::collection::vec(any::<f32>().prop_filter("finite", |f| f.is_finite()), 0..8)
                .prop_map(Value::Vector)
                .boxed()
        }
        other => unreachable!("type {other} is not in the every-type table"),
    }
}

/// A document as decoding gives it back: object keys sorted by bytes, duplicates impossible.
fn sorted(json: Json) -> Json {
    match json {
        Json::Array(items) => Json::Array(items.into_iter().map(sorted).collect()),
        Json::Object(mut fields) => {
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Json::Object(fields.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        other => other,
    }
}

/// How a generated row's column is stored.
#[derive(Clone, Debug)]
enum Stored {
    Value(Value),
    Null,
    /// Left out of the row (a column added later, nullable, no origin default).
    Missing,
}

fn stored(position: usize) -> impl Strategy<Value = Stored> {
    prop_oneof![
        6 => value_of(position).prop_map(Stored::Value),
        1 => Just(Stored::Null),
        1 => Just(Stored::Missing),
    ]
}

#[derive(Clone, Copy, Debug)]
enum HandleKind {
    RowId,
    IntPk { unsigned: bool },
    Common,
}

fn handle_kind() -> impl Strategy<Value = HandleKind> {
    prop_oneof![
        Just(HandleKind::RowId),
        any::<bool>().prop_map(|unsigned| HandleKind::IntPk { unsigned }),
        Just(HandleKind::Common),
    ]
}

fn column(id: i64, name: &str, field_type: FieldType) -> ColumnInfo {
    ColumnInfo {
        id,
        name: CiStr::new(name),
        state: state::PUBLIC,
        field_type,
        ..ColumnInfo::default()
    }
}

/// A table: the handle's columns first (ids 1 and 2), then the chosen types with ids from
/// `first_id` up.
fn table(kind: HandleKind, types: &[usize], first_id: i64) -> TableInfo {
    let all = column_types();
    let mut cols = Vec::new();
    let mut index_info = Vec::new();
    match kind {
        HandleKind::RowId => {}
        HandleKind::IntPk { unsigned } => {
            let mut ft = FieldType {
                tp: tp::LONGLONG,
                flag: flag::PRI_KEY | flag::NOT_NULL,
                ..FieldType::default()
            };
            if unsigned {
                ft.flag |= flag::UNSIGNED;
            }
            cols.push(column(1, "pk", ft));
        }
        HandleKind::Common => {
            let int = FieldType {
                tp: tp::LONGLONG,
                flag: flag::PRI_KEY | flag::NOT_NULL,
                ..FieldType::default()
            };
            let bin = FieldType {
                tp: tp::VARCHAR,
                flag: flag::PRI_KEY | flag::NOT_NULL | flag::BINARY,
                charset: "binary".into(),
                collate: "binary".into(),
                ..FieldType::default()
            };
            cols.push(column(1, "pk_int", int));
            cols.push(column(2, "pk_bin", bin));
            index_info.push(IndexInfo {
                id: 1,
                idx_name: CiStr::new("PRIMARY"),
                idx_cols: ["pk_bin", "pk_int"]
                    .iter()
                    .map(|&n| IndexColumn { name: CiStr::new(n), offset: 0, length: -1 })
                    .collect(),
                state: state::PUBLIC,
                is_unique: true,
                is_primary: true,
            });
        }
    }
    for (n, &position) in types.iter().enumerate() {
        let id = first_id + n as i64;
        cols.push(column(id, &format!("c{id}"), all[position].clone()));
    }
    TableInfo {
        id: 77,
        name: CiStr::new("t"),
        cols,
        index_info,
        pk_is_handle: matches!(kind, HandleKind::IntPk { .. }),
        is_common_handle: matches!(kind, HandleKind::Common),
        state: state::PUBLIC,
        ..TableInfo::default()
    }
}

fn case() -> impl Strategy<Value = (HandleKind, i64, Vec<u8>, Vec<usize>, Vec<Stored>, i64, bool)> {
    let types = proptest::collection::vec(0..column_types().len(), 0..12);
    (
        handle_kind(),
        int(),
        proptest::collection::vec(any::<u8>(), 0..12),
        types,
        prop_oneof![Just(3i64), Just(250i64), Just(70_000i64)],
        any::<bool>(),
    )
        .prop_flat_map(|(kind, int, bin, types, first_id, v1)| {
            let stored: Vec<_> = types.iter().map(|&p| stored(p)).collect();
            (Just(kind), Just(int), Just(bin), Just(types), stored, Just(first_id), Just(v1))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(21), ..ProptestConfig::default() })]

    #[test]
    fn rows_round_trip((kind, int, bin, types, values, first_id, v1) in case()) {
        let table = table(kind, &types, first_id);
        let decoder = RowDecoder::new(table.clone()).unwrap();
        let handle = match kind {
            HandleKind::RowId | HandleKind::IntPk { .. } => Handle::Int(int),
            HandleKind::Common => {
                let mut bytes = Vec::new();
                crate::datum::write::key(&mut bytes, &Datum::Bytes(bin.clone()));
                crate::datum::write::key(&mut bytes, &Datum::Int(int));
                Handle::Common(bytes)
            }
        };
        let key = RecordKey { table_id: 77, handle };
        // The key survives its own encoding.
        prop_assert_eq!(RecordKey::decode(&key.encode()), Ok(key.clone()));

        let offset = table.cols.len() - types.len();
        let mut v2_cols = Vec::new();
        let mut v1_cols = Vec::new();
        let mut expected: Vec<Value> = Vec::new();
        match kind {
            HandleKind::RowId => {}
            HandleKind::IntPk { unsigned } => {
                expected.push(if unsigned { Value::Uint(int as u64) } else { Value::Int(int) })
            }
            HandleKind::Common => {
                expected.push(Value::Int(int));
                expected.push(Value::Bytes(bin.clone()));
            }
        }
        for (n, stored) in values.iter().enumerate() {
            let column = &table.cols[offset + n];
            match stored {
                Stored::Value(value) => {
                    v2_cols.push((column.id, value::write::v2(&column.field_type, value)));
                    v1_cols.push((column.id, value::write::datum(&column.field_type, value)));
                    expected.push(value.clone());
                }
                Stored::Null => {
                    v2_cols.push((column.id, None));
                    v1_cols.push((column.id, Datum::Null));
                    expected.push(Value::Null);
                }
                Stored::Missing => expected.push(Value::Null),
            }
        }
        let bytes = if v1 { crate::row::write::v1(&v1_cols) } else { crate::row::write::v2(&v2_cols) };
        let row = decoder.decode(&key, &bytes).unwrap().unwrap();
        let got: Vec<Value> = (0..decoder.columns().len()).map(|i| row.get(i).cloned().unwrap()).collect();
        prop_assert_eq!(got, expected);
        // Every decoded row renders as one JSON object.
        let mut line = String::new();
        crate::render::write_row(&mut line, &decoder, &row);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(parsed.as_object().map(|o| o.len()), Some(decoder.columns().len()));
        // The fuzz checks hold on the valid bytes and on every single-byte damage of them.
        fuzzing::decode(&bytes);
        for i in 0..bytes.len().min(64) {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x5A;
            let _ = decoder.decode(&key, &damaged);
            fuzzing::decode(&damaged);
            let _ = decoder.decode(&key, &bytes[..i]);
        }
    }

    #[test]
    fn decimals_round_trip(value in (0usize..=30).prop_flat_map(decimal), extra in 0u8..10) {
        let (precision, scale) = value.natural_precision();
        let precision = (precision + extra).min(crate::decimal::MAX_PRECISION);
        if let Some(bin) = value.to_bin(precision, scale) {
            prop_assert_eq!(bin.len(), crate::decimal::bin_size(precision, scale));
            prop_assert_eq!(Decimal::from_bin(&bin, precision, scale, 0), Ok(value.clone()));
        }
        prop_assert_eq!(Decimal::parse(&format!("{value}")), Some(value));
    }

    #[test]
    fn json_round_trips(doc in json()) {
        let bytes = crate::json::encode(&doc);
        prop_assert_eq!(Json::decode(&bytes, 0), Ok(sorted(doc)));
        prop_assert_eq!(Json::peek_len(&bytes, 0), Ok(bytes.len()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        fuzzing::decode(&data);
        let mut v2 = vec![crate::row::V2_VERSION];
        v2.extend_from_slice(&data);
        fuzzing::decode(&v2);
    }
}
