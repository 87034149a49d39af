//! The sequencer: events in commit-ts order with DDL between the rows, schemas by commit ts,
//! subscriptions following a truncated table, duplicates dropped, jobs that must not apply.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use alloc::{format, vec};

use kvfeed_span::table::record_key;

use crate::key::DDL_JOB_TABLE_ID;
use crate::row::write;
use crate::schema::{CiStr, DbInfo, HistoryInfo, Job, TableInfo, action, job_state};
use crate::{Catalog, Output, RawChange, Sequencer, Source, TableEvent, TableName, Value};

/// `shop.orders` (id 106): `id` (int handle) and INT columns `extra` with ids 2...; each
/// column after the first has origin default 7.
fn table(id: i64, extra: &[&str]) -> TableInfo {
    let mut cols =
        String::from(r#"{"id": 1, "name": "id", "state": 5, "type": {"Tp": 8, "Flag": 3}}"#);
    for (i, col) in extra.iter().enumerate() {
        cols.push_str(&format!(
            r#",{{"id": {}, "name": "{col}", "state": 5, "origin_default": {}, "type": {{"Tp": 3}}}}"#,
            i + 2,
            if i == 0 { "null" } else { "\"7\"" }
        ));
    }
    let json =
        format!(r#"{{"id": {id}, "name": "orders", "pk_is_handle": true, "cols": [{cols}]}}"#);
    TableInfo::from_json(json.as_bytes()).unwrap()
}

fn sequencer() -> Sequencer {
    let db = DbInfo { id: 2, db_name: CiStr::new("shop"), state: 5, ..DbInfo::default() };
    let catalog = Catalog::from_snapshot(10, vec![db], vec![(2, table(106, &["a"]))]).unwrap();
    Sequencer::new(catalog, None, &[TableName::parse("Shop.Orders").unwrap()], 10).unwrap()
}

/// A row of `table` with handle `handle` and INT values for column ids 2...
fn row(table: i64, handle: i64, values: &[i64], old: Option<&[i64]>, ts: u64) -> RawChange {
    let value = |values: &[i64]| {
        let cols: Vec<(i64, Option<Vec<u8>>)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut bytes = Vec::new();
                crate::codec::put_compact_int(&mut bytes, *v);
                (i as i64 + 2, Some(bytes))
            })
            .collect();
        write::v2(&cols)
    };
    RawChange {
        delete: false,
        key: record_key(table, handle),
        value: value(values),
        old_value: old.map(value),
        start_ts: ts - 1,
        commit_ts: ts,
    }
}

fn job_row(job: &Job, ts: u64) -> RawChange {
    let meta = serde_json::to_vec(job).unwrap();
    RawChange {
        delete: false,
        key: record_key(DDL_JOB_TABLE_ID, job.id),
        value: write::v2(&[(5, Some(meta)), (6, Some(vec![job.action as u8]))]),
        old_value: None,
        start_ts: ts - 1,
        commit_ts: ts,
    }
}

fn job(id: i64, kind: u32, table_id: i64, version: i64, info: TableInfo) -> Job {
    Job {
        id,
        action: kind,
        schema_id: 2,
        table_id,
        state: job_state::DONE,
        query: format!("job {id}"),
        binlog: HistoryInfo {
            schema_version: version,
            table_info: Some(info),
            ..Default::default()
        },
        ..Job::default()
    }
}

fn advance(sequencer: &mut Sequencer) -> Vec<Output> {
    let mut out = Vec::new();
    sequencer.advance(&mut out).unwrap();
    out
}

/// `kind@ts` per event, `sub:id@ts` / `unsub:id` per subscription change.
fn summary(out: &[Output]) -> Vec<String> {
    out.iter()
        .map(|o| match o {
            Output::Event(TableEvent::Insert(r)) => format!("insert@{}", r.commit_ts),
            Output::Event(TableEvent::Update(r)) => format!("update@{}", r.commit_ts),
            Output::Event(TableEvent::Delete(r)) => format!("delete@{}", r.commit_ts),
            Output::Event(TableEvent::Ddl(d)) => format!("ddl@{}", d.commit_ts),
            Output::Event(TableEvent::Resolved(ts)) => format!("resolved@{ts}"),
            Output::Subscribe { physical_id, from_ts } => format!("sub:{physical_id}@{from_ts}"),
            Output::Unsubscribe { physical_id } => format!("unsub:{physical_id}"),
        })
        .collect()
}

#[test]
fn rows_and_ddl_come_in_commit_ts_order_with_the_ddl_after_the_rows_of_its_ts() {
    let mut s = sequencer();
    assert_eq!(s.initial_subscriptions().map(|(id, _)| id).collect::<Vec<_>>(), [106]);
    // Delivered out of order, the job first, one row twice.
    s.push(
        Source::Jobs,
        job_row(&job(1, action::ADD_COLUMN, 106, 11, table(106, &["a", "b"])), 30),
    );
    s.push(Source::Table(106), row(106, 2, &[5, 8], Some(&[4]), 40));
    s.push(Source::Table(106), row(106, 1, &[4], None, 30));
    s.push(Source::Table(106), row(106, 1, &[3], None, 20));
    s.push(Source::Table(106), row(106, 1, &[3], None, 20));
    s.resolved(Source::Jobs, 50);
    assert!(advance(&mut s).is_empty(), "the table's source has not resolved");
    s.resolved(Source::Table(106), 35);
    let out = advance(&mut s);
    assert_eq!(summary(&out), ["insert@20", "insert@30", "ddl@30", "resolved@35"]);
    // The row at the DDL's ts is decoded by the schema before it: no column b.
    let Output::Event(TableEvent::Insert(at_ddl)) = &out[1] else { panic!() };
    assert_eq!(at_ddl.schema.columns().len(), 2);
    let Output::Event(TableEvent::Ddl(ddl)) = &out[2] else { panic!() };
    assert_eq!((ddl.table.to_string().as_str(), ddl.query.as_str()), ("Shop.Orders", "job 1"));
    s.resolved(Source::Table(106), 60);
    let out = advance(&mut s);
    assert_eq!(summary(&out), ["update@40", "resolved@50"]);
    let Output::Event(TableEvent::Update(update)) = &out[0] else { panic!() };
    let (before, after) = (update.before.as_ref().unwrap(), update.after.as_ref().unwrap());
    // The old value predates column b: it reads b's origin default.
    assert_eq!(update.value(before, "b"), Some(&Value::Int(7)));
    assert_eq!(update.value(after, "B"), Some(&Value::Int(8)));
    assert_eq!(update.value(before, "id"), Some(&Value::Int(2)));
    assert_eq!(
        update_event(&out[0]).to_json_line(),
        r#"{"kind":"update","table":"Shop.Orders","commit_ts":40,"before":{"id":2,"a":4,"b":7},"after":{"id":2,"a":5,"b":8}}"#
    );
}

#[test]
fn a_truncated_table_is_followed_under_its_new_id_without_reordering() {
    let mut s = sequencer();
    s.push(Source::Jobs, job_row(&job(1, action::TRUNCATE_TABLE, 106, 11, table(107, &["a"])), 30));
    s.push(Source::Table(106), row(106, 1, &[1], None, 25));
    s.resolved(Source::Jobs, 100);
    s.resolved(Source::Table(106), 100);
    let out = advance(&mut s);
    assert_eq!(summary(&out), ["insert@25", "ddl@30", "unsub:106", "sub:107@30", "resolved@30"]);
    // The new table's rows wait for its own subscription to resolve.
    s.push(Source::Table(107), row(107, 1, &[2], None, 40));
    s.push(Source::Table(106), row(106, 9, &[9], None, 45));
    assert_eq!(summary(&advance(&mut s)), Vec::<String>::new());
    s.resolved(Source::Table(107), 100);
    let out = advance(&mut s);
    assert_eq!(summary(&out), ["insert@40", "resolved@100"], "the old table's source is gone");
    let Output::Event(TableEvent::Insert(insert)) = &out[0] else { panic!() };
    assert_eq!((insert.physical_id, insert.table.table.as_str()), (107, "Orders"));
}

#[test]
fn jobs_not_done_deleted_or_already_applied_change_nothing() {
    let mut s = sequencer();
    let mut running = job(1, action::ADD_COLUMN, 106, 11, table(106, &["a", "b"]));
    running.state = job_state::RUNNING;
    s.push(Source::Jobs, job_row(&running, 20));
    let stale = job(2, action::ADD_COLUMN, 106, 10, table(106, &["a", "b"]));
    s.push(Source::Jobs, job_row(&stale, 21));
    let mut deleted = job_row(&job(3, action::ADD_COLUMN, 106, 12, table(106, &["a", "b"])), 22);
    deleted.delete = true;
    s.push(Source::Jobs, deleted);
    let mut other = job(4, action::ADD_COLUMN, 900, 13, table(900, &["x"]));
    other.table_id = 900;
    s.push(Source::Jobs, job_row(&other, 23));
    s.resolved(Source::Jobs, 30);
    s.resolved(Source::Table(106), 30);
    assert_eq!(summary(&advance(&mut s)), ["resolved@30"]);
    assert_eq!(s.catalog().schema_version(), 13, "the other table's job was applied");
}

#[test]
fn unknown_tables_and_bad_names_are_refused_and_bad_rows_name_themselves() {
    let db = DbInfo { id: 2, db_name: CiStr::new("shop"), state: 5, ..DbInfo::default() };
    let catalog = Catalog::from_snapshot(10, vec![db], vec![(2, table(106, &["a"]))]).unwrap();
    let missing = Sequencer::new(catalog, None, &[TableName::new("shop", "nope")], 10);
    assert!(missing.unwrap_err().to_string().contains("shop.nope does not exist at ts 10"));
    for bad in ["shop", "shop.", ".t", "a.b.c", "`a.b`.`c"] {
        assert!(TableName::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(TableName::parse("`a.b`.c").unwrap(), TableName::new("a.b", "c"));
    let mut s = sequencer();
    let mut bad = row(106, 1, &[1], None, 20);
    bad.value = vec![0x80, 0, 9];
    s.push(Source::Table(106), bad);
    s.resolved(Source::Jobs, 30);
    s.resolved(Source::Table(106), 30);
    let error = s.advance(&mut Vec::new()).unwrap_err().to_string();
    assert!(error.contains("row of Shop.Orders (table 106) at commit ts 20"), "{error}");
}

fn update_event(out: &Output) -> TableEvent {
    let Output::Event(event) = out else { panic!("not an event") };
    event.clone()
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 256,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(21),
        ..proptest::test_runner::Config::default()
    })]

    /// The fuzz target's checks on random change streams: no panic, order kept.
    #[test]
    fn random_change_streams_keep_the_order(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        crate::fuzzing::sequence(&data);
    }
}

/// Found by fuzzing: two job rows at one commit ts (hostile: TiDB commits one per
/// transaction), the first bringing a table into view. The second still comes before the
/// resolved ts of that ts.
#[test]
fn every_job_of_a_ts_comes_before_its_resolved_ts() {
    let mut s = sequencer();
    s.push(Source::Jobs, job_row(&job(1, action::TRUNCATE_TABLE, 106, 11, table(107, &["a"])), 30));
    s.push(
        Source::Jobs,
        job_row(&job(2, action::ADD_COLUMN, 107, 12, table(107, &["a", "b"])), 30),
    );
    s.resolved(Source::Jobs, 40);
    s.resolved(Source::Table(106), 40);
    let out = advance(&mut s);
    assert_eq!(
        summary(&out),
        ["ddl@30", "unsub:106", "sub:107@30", "ddl@30", "resolved@30"],
        "both jobs, then the resolved ts"
    );
}
