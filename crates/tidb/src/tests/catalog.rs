//! The catalog across DDL: which schema decodes which row, name lookups after renames and
//! truncates, jobs that must not be applied, and forgetting old schemas.

use alloc::format;
use alloc::string::String;
use alloc::vec;

use crate::Catalog;
use crate::schema::{CiStr, DbInfo, HistoryInfo, Job, TableInfo, action, job_state};

fn db(id: i64, name: &str) -> DbInfo {
    DbInfo { id, db_name: CiStr::new(name), state: 5, ..DbInfo::default() }
}

/// A table with columns `id` (int handle) and the given extra INT columns, ids 2...
fn table(id: i64, name: &str, extra: &[&str]) -> TableInfo {
    let mut cols =
        String::from(r#"{"id": 1, "name": "id", "state": 5, "type": {"Tp": 8, "Flag": 3}}"#);
    for (i, col) in extra.iter().enumerate() {
        cols.push_str(&format!(
            r#",{{"id": {}, "name": "{col}", "state": 5, "type": {{"Tp": 3}}}}"#,
            i + 2
        ));
    }
    let json =
        format!(r#"{{"id": {id}, "name": "{name}", "pk_is_handle": true, "cols": [{cols}]}}"#);
    TableInfo::from_json(json.as_bytes()).unwrap()
}

fn job(
    id: i64,
    kind: u32,
    schema_id: i64,
    table_id: i64,
    version: i64,
    info: Option<TableInfo>,
) -> Job {
    Job {
        id,
        action: kind,
        schema_id,
        table_id,
        state: job_state::DONE,
        query: format!("job {id}"),
        binlog: HistoryInfo { schema_version: version, table_info: info, ..HistoryInfo::default() },
        ..Job::default()
    }
}

fn catalog() -> Catalog {
    Catalog::from_snapshot(
        10,
        vec![db(2, "Shop"), db(3, "archive")],
        vec![(2, table(106, "Orders", &["a"]))],
    )
    .unwrap()
}

fn columns(catalog: &Catalog, id: i64, commit_ts: u64) -> Option<usize> {
    catalog.decoder_at(id, commit_ts).map(|d| d.columns().len())
}

#[test]
fn a_row_is_decoded_by_the_schema_before_a_ddl_at_its_commit_ts() {
    let mut catalog = catalog();
    assert_eq!(catalog.table_by_name("shop", "ORDERS").map(|t| t.id), Some(106));
    assert_eq!(columns(&catalog, 106, 50), Some(2));
    let change = catalog.apply(
        &job(1, action::ADD_COLUMN, 2, 106, 11, Some(table(106, "Orders", &["a", "b"]))),
        100,
    );
    let change = change.unwrap().unwrap();
    assert_eq!(
        (change.db.as_str(), change.table.as_str(), change.finished_ts),
        ("Shop", "Orders", 100)
    );
    assert_eq!(change.physical_ids, vec![106]);
    // A row committed at the DDL's ts was written under the old schema; one after, the new.
    assert_eq!(columns(&catalog, 106, 100), Some(2));
    assert_eq!(columns(&catalog, 106, 101), Some(3));
    assert_eq!(catalog.schema_version(), 11);
}

#[test]
fn jobs_not_done_no_ops_and_replays_are_not_applied() {
    let mut catalog = catalog();
    let mut running = job(1, action::DROP_TABLE, 2, 106, 11, None);
    running.state = job_state::RUNNING;
    assert_eq!(catalog.apply(&running, 100), Ok(None));
    assert_eq!(catalog.apply(&job(1, action::DROP_TABLE, 2, 106, 0, None), 100), Ok(None));
    assert_eq!(catalog.apply(&job(1, action::DROP_TABLE, 2, 106, 10, None), 100), Ok(None));
    assert_eq!(columns(&catalog, 106, 200), Some(2));
    assert!(catalog.apply(&job(1, action::DROP_TABLE, 2, 106, 11, None), 100).unwrap().is_some());
    assert_eq!(columns(&catalog, 106, 101), None);
    assert_eq!(columns(&catalog, 106, 100), Some(2));
    assert!(catalog.table_by_name("shop", "orders").is_none());
    // A job without the TableInfo it needs is a schema error.
    assert!(catalog.apply(&job(2, action::TRUNCATE_TABLE, 2, 106, 12, None), 110).is_err());
}

#[test]
fn a_truncated_table_is_followed_by_name_under_its_new_id() {
    let mut catalog = catalog();
    let change = catalog
        .apply(&job(1, action::TRUNCATE_TABLE, 2, 106, 11, Some(table(110, "Orders", &["a"]))), 100)
        .unwrap()
        .unwrap();
    assert_eq!(change.physical_ids, vec![106, 110]);
    assert_eq!(catalog.table_by_name("shop", "orders").map(|t| t.id), Some(110));
    assert_eq!((columns(&catalog, 106, 100), columns(&catalog, 106, 101)), (Some(2), None));
    assert_eq!((columns(&catalog, 110, 100), columns(&catalog, 110, 101)), (None, Some(2)));
}

#[test]
fn renames_move_tables_between_databases() {
    let mut catalog = catalog();
    let mut renamed =
        job(1, action::RENAME_TABLE, 3, 106, 11, Some(table(106, "old_orders", &["a"])));
    renamed.schema_name = "archive".into();
    catalog.apply(&renamed, 100).unwrap().unwrap();
    assert!(catalog.table_by_name("shop", "orders").is_none());
    assert_eq!(catalog.table_by_name("archive", "old_orders").map(|t| t.id), Some(106));
    assert_eq!(catalog.table(106).map(|(d, _)| d.id), Some(3));
    // RENAME TABLES, version 1 arguments: [old schema ids, new schema ids, names, table ids].
    let mut batch = job(2, action::RENAME_TABLES, 0, 0, 12, None);
    batch.binlog.multiple_table_infos = vec![table(106, "orders", &["a"])];
    batch.raw_args = serde_json::json!([[3], [2], ["orders"], [106], ["archive"], ["old_orders"]]);
    catalog.apply(&batch, 200).unwrap().unwrap();
    assert_eq!(catalog.table_by_name("shop", "orders").map(|t| t.id), Some(106));
}

#[test]
fn databases_come_and_go_with_their_tables() {
    let mut catalog = catalog();
    let mut create = job(1, action::CREATE_SCHEMA, 4, 0, 11, None);
    create.binlog.db_info = Some(db(4, "new"));
    catalog.apply(&create, 100).unwrap().unwrap();
    catalog
        .apply(&job(2, action::CREATE_TABLE, 4, 120, 12, Some(table(120, "t", &[]))), 110)
        .unwrap();
    assert_eq!(catalog.table_by_name("new", "t").map(|t| t.id), Some(120));
    let change = catalog.apply(&job(3, action::DROP_SCHEMA, 2, 0, 13, None), 120).unwrap().unwrap();
    assert_eq!(change.physical_ids, vec![106]);
    assert!(catalog.db(2).is_none());
    assert_eq!(columns(&catalog, 106, 121), None);
    assert_eq!(columns(&catalog, 120, 121), Some(1));
}

#[test]
fn old_schemas_are_forgotten_once_no_row_needs_them() {
    let mut catalog = catalog();
    catalog
        .apply(
            &job(1, action::ADD_COLUMN, 2, 106, 11, Some(table(106, "Orders", &["a", "b"]))),
            100,
        )
        .unwrap();
    catalog
        .apply(
            &job(2, action::ADD_COLUMN, 2, 106, 12, Some(table(106, "Orders", &["a", "b", "c"]))),
            200,
        )
        .unwrap();
    catalog.forget_before(150);
    assert_eq!(columns(&catalog, 106, 160), Some(3));
    assert_eq!(columns(&catalog, 106, 201), Some(4));
    catalog.apply(&job(3, action::DROP_TABLE, 2, 106, 13, None), 300).unwrap();
    catalog.forget_before(400);
    assert_eq!(columns(&catalog, 106, 401), None);
}
