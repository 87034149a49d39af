//! End-to-end tests of the built `kvfeed` binary: `watch` (with and without `--snapshot`) and
//! `snapshot` against `sim serve` (their JSON lines checked by the verifier), `demo --chaos`
//! with a fixed seed, and every user error with its message and exit code.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvfeed_sim::{CommittedRow, FeedEvent, Op, RowEvent, compose};
use kvfeed_sim::{state_at, verify_snapshot, verify_up_to};
use kvfeed_span::table::table_span;

const BIN: &str = env!("CARGO_BIN_EXE_kvfeed");

fn kvfeed(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run kvfeed")
}

/// Asserts a failed run: the exit code and one stderr line containing `needle`.
fn assert_fails(output: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
}

#[test]
fn bad_hex_is_a_usage_error() {
    let output = kvfeed(&["watch", "--pd", "127.0.0.1:9", "--span", "zz.."]);
    assert_fails(&output, 2, "bad hex");
}

#[test]
fn start_not_below_end_is_a_usage_error() {
    let key = "6100000000000000f9"; // memcomparable "a"
    let output = kvfeed(&["watch", "--pd", "127.0.0.1:9", "--span", &format!("{key}..{key}")]);
    assert_fails(&output, 2, "start must be below end");
}

#[test]
fn an_unencoded_key_is_a_usage_error() {
    let output = kvfeed(&["watch", "--pd", "127.0.0.1:9", "--span", "61..62"]);
    assert_fails(&output, 2, "not a memcomparable-encoded key");
}

#[test]
fn unknown_table_is_a_usage_error() {
    let output = kvfeed(&["watch", "--pd", "127.0.0.1:9", "--table", "-4"]);
    assert_fails(&output, 2, "unknown table -4");
}

#[test]
fn a_zero_stuck_timeout_is_a_usage_error() {
    let output =
        kvfeed(&["watch", "--pd", "127.0.0.1:9", "--table", "1", "--region-stuck-timeout", "0"]);
    assert_fails(&output, 2, "--region-stuck-timeout must be at least 1 second");
}

#[test]
fn unreadable_tls_file_is_a_usage_error() {
    let output =
        kvfeed(&["watch", "--pd", "127.0.0.1:9", "--table", "1", "--ca", "/nonexistent/ca.pem"]);
    assert_fails(&output, 2, "cannot read TLS file /nonexistent/ca.pem");
}

#[test]
fn unreachable_pd_fails_within_the_timeout() {
    let started = Instant::now();
    let output = kvfeed(&["watch", "--pd", "127.0.0.1:9", "--table", "1", "--timeout", "2"]);
    assert_fails(&output, 1, "PD at 127.0.0.1:9");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

/// A `kvfeed sim serve` process, interrupted (and reaped) on drop.
struct Served {
    child: Child,
    pd: String,
}

impl Served {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["sim", "serve", "--stores", "2", "--regions", "8", "--rate", "200"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sim serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("PD line");
        Self { child, pd: first.trim().to_owned() }
    }

    /// Interrupts the process and waits for it to exit 0.
    fn interrupt(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "sim serve exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "sim serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_zero_memory_quota_is_a_usage_error() {
    let output = kvfeed(&["watch", "--pd", "127.0.0.1:1", "--table", "100", "--memory-quota", "0"]);
    assert_fails(&output, 2, "--memory-quota");
}

#[test]
fn an_unusable_spill_dir_is_a_usage_error() {
    let missing = std::env::temp_dir().join("kvfeed-cli-test-no-such-dir");
    let missing = missing.to_str().expect("utf-8 path");
    let started = Instant::now();
    let output =
        kvfeed(&["watch", "--pd", "127.0.0.1:1", "--table", "100", "--spill-dir", missing]);
    assert_fails(&output, 2, "spill_dir");
    assert!(started.elapsed() < Duration::from_secs(10), "refused before PD is tried");
}

#[test]
fn a_zero_value_len_is_a_usage_error() {
    let output = kvfeed(&["sim", "serve", "--value-len", "0"]);
    assert_fails(&output, 2, "--value-len");
}

#[test]
fn a_start_ts_below_the_gc_safe_point_is_a_usage_error() {
    let served = Served::start(&["--gc-life-time", "0"]);
    let started = Instant::now();
    let output = kvfeed(&["watch", "--pd", &served.pd, "--table", "100", "--start-ts", "1"]);
    assert_fails(&output, 2, "below the GC safe point");
    assert!(started.elapsed() < Duration::from_secs(10), "refused at once");
    served.interrupt();
}

#[test]
fn cluster_id_mismatch_is_reported() {
    let served = Served::start(&[]);
    let output = kvfeed(&["watch", "--pd", &served.pd, "--table", "100", "--cluster-id", "1"]);
    assert_fails(&output, 1, "cluster id mismatch");
    served.interrupt();
}

/// The value of `"name":` in a JSON line of our fixed shape.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line.find(&format!("\"{name}\":")).unwrap_or_else(|| panic!("{name} in {line}"))
        + name.len()
        + 3;
    let rest = &line[start..];
    let end = rest.find([',', '}']).expect("field end");
    rest[..end].trim_matches('"')
}

fn bytes_of(hex: &str) -> Bytes {
    Bytes::from(
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect::<Vec<u8>>(),
    )
}

fn row_of(line: &str) -> RowEvent {
    RowEvent {
        key: bytes_of(field(line, "key")),
        op: if field(line, "op") == "put" { Op::Put } else { Op::Delete },
        value: bytes_of(field(line, "value")),
        old_value: match field(line, "old_value") {
            "null" => None,
            hex => Some(bytes_of(hex)),
        },
        start_ts: field(line, "start_ts").parse().expect("start_ts"),
        commit_ts: field(line, "commit_ts").parse().expect("commit_ts"),
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[test]
fn watch_against_sim_serve_delivers_what_the_verifier_expects() {
    let commits_file =
        std::env::temp_dir().join(format!("kvfeed-e2e-{}.jsonl", std::process::id()));
    let served = Served::start(&["--commits", commits_file.to_str().unwrap()]);
    // From now, until three seconds of workload are resolved.
    let (start_ts, until) = (compose(now_ms(), 0), compose(now_ms() + 3000, 0));
    let output = kvfeed(&[
        "watch",
        "--pd",
        &served.pd,
        "--table",
        "100",
        "--start-ts",
        &start_ts.to_string(),
        "--until-resolved",
        &until.to_string(),
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "watch: {}", String::from_utf8_lossy(&output.stderr));
    served.interrupt();

    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let (log, last_resolved) = parse_watch(&stdout);
    assert!(last_resolved >= until, "watch exits once the resolved ts reaches --until-resolved");
    let commits = commits_of(&commits_file);
    let _ = std::fs::remove_file(&commits_file);
    // Rows committed after the last resolved ts may legitimately not have been seen yet.
    let report = verify_up_to(&commits, &table_span(100), start_ts, &log, last_resolved);
    assert!(report.ok(), "{report:#?}");
    assert!(report.expected > 100, "three seconds at 200 txn/s wrote rows: {report:?}");
}

/// `--output FILE --rotate-size 4K --rotate-keep 1000`: the lines go to the files instead of
/// stdout, each file stays within the size, and together, oldest first, they are the exact
/// feed; an unwritable `--output` is refused before connecting.
#[test]
fn output_to_rotated_files() {
    let dir = std::env::temp_dir().join(format!("kvfeed-e2e-output-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let commits_file = dir.join("commits.jsonl");
    let served = Served::start(&["--commits", commits_file.to_str().unwrap()]);
    let (start_ts, until) = (compose(now_ms(), 0), compose(now_ms() + 2000, 0));
    let out = dir.join("feed.jsonl");
    let output = kvfeed(&[
        "watch",
        "--pd",
        &served.pd,
        "--table",
        "100",
        "--start-ts",
        &start_ts.to_string(),
        "--until-resolved",
        &until.to_string(),
        "--output",
        out.to_str().unwrap(),
        "--rotate-size",
        "4K",
        "--rotate-keep",
        "1000",
    ]);
    assert!(output.status.success(), "watch: {}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty(), "nothing on stdout");
    served.interrupt();
    let rotated = (1..).take_while(|n| dir.join(format!("feed.jsonl.{n}")).exists()).count();
    assert!(rotated >= 2, "rotated: {rotated} files");
    let mut text = String::new();
    for n in (1..=rotated).rev() {
        let file = std::fs::read_to_string(dir.join(format!("feed.jsonl.{n}"))).unwrap();
        assert!(file.len() <= 4096 && file.ends_with('\n'), "whole lines within the size");
        text.push_str(&file);
    }
    text.push_str(&std::fs::read_to_string(&out).unwrap());
    let (log, last_resolved) = parse_watch(&text);
    assert!(last_resolved >= until);
    let commits = commits_of(&commits_file);
    let report = verify_up_to(&commits, &table_span(100), start_ts, &log, last_resolved);
    assert!(report.ok(), "{report:#?}");
    assert!(report.expected > 50, "{report:?}");
    let output = kvfeed(&[
        "watch",
        "--pd",
        "127.0.0.1:9",
        "--table",
        "100",
        "--output",
        dir.join("no/such/dir/feed").to_str().unwrap(),
    ]);
    assert_fails(&output, 2, "cannot write");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn commits_of(file: &std::path::Path) -> Vec<CommittedRow> {
    std::fs::read_to_string(file)
        .expect("commit log")
        .lines()
        .map(|line| {
            let row = row_of(line);
            CommittedRow {
                key: row.key,
                op: row.op,
                value: row.value,
                old_value: row.old_value,
                start_ts: row.start_ts,
                commit_ts: row.commit_ts,
            }
        })
        .collect()
}

/// `watch --snapshot`: the snapshot lines are the table at the start ts, and the snapshot plus
/// the changes after it is the table's state at the last resolved ts; `kvfeed snapshot` at the
/// same ts prints the same lines.
#[test]
fn watch_with_a_snapshot_prints_the_whole_history_and_snapshot_agrees() {
    let commits_file =
        std::env::temp_dir().join(format!("kvfeed-e2e-snapshot-{}.jsonl", std::process::id()));
    let served = Served::start(&["--commits", commits_file.to_str().unwrap()]);
    // Not a synchronisation: it gives the workload time to write rows for the snapshot.
    std::thread::sleep(Duration::from_secs(1));
    let until = compose(now_ms() + 2000, 0);
    let output = kvfeed(&[
        "watch",
        "--pd",
        &served.pd,
        "--table",
        "100",
        "--snapshot",
        "--until-resolved",
        &until.to_string(),
    ]);
    assert!(output.status.success(), "watch: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let mut snapshot = Vec::new();
    let mut snapshot_ts = None;
    let mut log = Vec::new();
    let mut last_resolved = 0;
    for line in stdout.lines() {
        match field(line, "kind") {
            "snapshot" => {
                assert!(snapshot_ts.is_none(), "snapshot lines come before snapshot_done");
                snapshot.push((bytes_of(field(line, "key")), bytes_of(field(line, "value"))));
            }
            "snapshot_done" => snapshot_ts = Some(field(line, "ts").parse::<u64>().expect("ts")),
            "row" => {
                assert!(snapshot_ts.is_some(), "changes come after snapshot_done");
                log.push(FeedEvent::Row(row_of(line)));
            }
            "resolved" => {
                last_resolved = field(line, "ts").parse().expect("ts");
                log.push(FeedEvent::Resolved(last_resolved));
            }
            other => panic!("unknown kind {other}"),
        }
    }
    let ts = snapshot_ts.expect("snapshot_done");
    let printed =
        kvfeed(&["snapshot", "--pd", &served.pd, "--table", "100", "--ts", &ts.to_string()]);
    assert!(printed.status.success(), "snapshot: {}", String::from_utf8_lossy(&printed.stderr));
    served.interrupt();
    let commits = commits_of(&commits_file);
    let _ = std::fs::remove_file(&commits_file);
    let span = table_span(100);
    let report = verify_snapshot(&commits, &span, ts, &snapshot);
    assert!(report.ok() && report.rows > 0, "{report:?}");
    let changes = verify_up_to(&commits, &span, ts, &log, last_resolved);
    assert!(changes.ok(), "{changes:#?}");
    // The snapshot plus the changes (the newest of each key, as a replica applies them) is
    // the state at the last resolved ts.
    let mut state: std::collections::BTreeMap<Bytes, (u64, Option<Bytes>)> =
        snapshot.iter().map(|(key, value)| (key.clone(), (ts, Some(value.clone())))).collect();
    for event in &log {
        if let FeedEvent::Row(row) = event
            && row.commit_ts <= last_resolved
            && state.get(&row.key).is_none_or(|(at, _)| *at < row.commit_ts)
        {
            let value = (row.op == Op::Put).then(|| row.value.clone());
            state.insert(row.key.clone(), (row.commit_ts, value));
        }
    }
    let applied: Vec<(Bytes, Bytes)> =
        state.into_iter().filter_map(|(key, (_, value))| value.map(|value| (key, value))).collect();
    assert_eq!(applied, state_at(&commits, &span, last_resolved));
    // `kvfeed snapshot` at the same ts prints the same keys and values, then its done line.
    let lines: Vec<&str> = std::str::from_utf8(&printed.stdout).expect("utf-8").lines().collect();
    let (done, rows) = lines.split_last().expect("a done line");
    assert_eq!(*done, format!(r#"{{"kind":"snapshot_done","ts":{ts}}}"#));
    let rows: Vec<(Bytes, Bytes)> = rows
        .iter()
        .map(|line| (bytes_of(field(line, "key")), bytes_of(field(line, "value"))))
        .collect();
    assert_eq!(rows, snapshot);
}

#[test]
fn demo_with_chaos_and_a_fixed_seed_passes() {
    let output = kvfeed(&[
        "demo",
        "--chaos",
        "--seed",
        "7",
        "--duration",
        "6",
        "--regions",
        "16",
        "--tables",
        "2",
        "--rate",
        "200",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("verdict            OK"), "{stdout}");
    assert!(stdout.contains("missing            0"), "{stdout}");
    assert!(stdout.contains("duplicates         0"), "exactly once under chaos: {stdout}");
    let faults: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("faults injected"))
        .and_then(|n| n.trim().parse().ok())
        .expect("faults line");
    assert!(faults > 0, "chaos injected faults: {stdout}");
}

/// `demo --seed` reproduces a run: the same transactions (`--rate` x `--duration`, however
/// fast the machine), the same rows committed (the summary's fingerprint); another seed, others.
#[test]
fn demo_seed_reproduces_the_run() {
    let run = |seed: &str, raw: bool| {
        let mut args = vec![
            "demo",
            "--seed",
            seed,
            "--duration",
            "1",
            "--rate",
            "80",
            "--regions",
            "8",
            "--tables",
            "2",
        ];
        if raw {
            args.push("--raw");
        }
        let output = kvfeed(&args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains(", 80 transactions in "), "{stdout}");
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("fingerprint"))
            .map(|f| f.trim().to_owned())
            .expect("a fingerprint line")
    };
    for raw in [false, true] {
        let first = run("11", raw);
        assert_eq!(run("11", raw), first, "raw {raw}");
        assert_ne!(run("12", raw), first, "raw {raw}");
    }
}

/// The rows and resolved ts of `watch` JSON lines.
fn parse_watch(stdout: &str) -> (Vec<FeedEvent>, u64) {
    let mut log = Vec::new();
    let mut last_resolved = 0;
    for line in stdout.lines() {
        match field(line, "kind") {
            "row" => log.push(FeedEvent::Row(row_of(line))),
            "resolved" => {
                last_resolved = field(line, "ts").parse().expect("ts");
                log.push(FeedEvent::Resolved(last_resolved));
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    (log, last_resolved)
}

/// `watch --checkpoint`: killed with SIGKILL at seeded moments, 20 times, and started again with
/// the same command each time, then run to an end: together the runs print the committed
/// history exactly (every row; none at or below a saved checkpoint twice).
#[test]
fn a_watch_killed_twenty_times_resumes_from_its_checkpoint_file() {
    let dir = std::env::temp_dir().join(format!("kvfeed-e2e-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (commits_file, checkpoint) = (dir.join("commits.jsonl"), dir.join("watch.ckpt"));
    let served = Served::start(&["--commits", commits_file.to_str().unwrap()]);
    let start_ts = compose(now_ms(), 0);
    let start = start_ts.to_string();
    let ckpt = checkpoint.to_str().unwrap();
    let args = [
        "watch",
        "--pd",
        &served.pd,
        "--table",
        "100",
        "--start-ts",
        &start,
        "--checkpoint",
        ckpt,
        "--checkpoint-interval",
        "0",
    ];
    let mut rng = kvfeed_sim::SplitMix64::new(31);
    // Each run: its log, and the checkpoint it started from.
    let mut runs: Vec<(Vec<FeedEvent>, u64, u64)> = Vec::new();
    for _ in 0..20 {
        let resumed_from = std::fs::read_to_string(&checkpoint)
            .map_or(start_ts, |text| text.trim().parse().expect("a saved ts"));
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watch");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut printed = String::new();
        // Killed after a seeded number of resolved lines, in the middle of the rows after it.
        let (resolved_before, rows_after) = (1 + rng.below(4), rng.below(20));
        let (mut resolved_lines, mut rows) = (0, 0);
        while resolved_lines < resolved_before || rows < rows_after {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).expect("a line") > 0, "watch ended early");
            if line.contains(r#""kind":"resolved""#) {
                resolved_lines += 1;
            } else if resolved_lines >= resolved_before {
                rows += 1;
            }
            printed.push_str(&line);
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        // What the killed watch had written to the pipe was printed too.
        std::io::Read::read_to_string(&mut reader, &mut printed).expect("the rest of the pipe");
        let (log, last) = parse_watch(&printed);
        runs.push((log, resumed_from, last));
    }
    let resumed_from: u64 =
        std::fs::read_to_string(&checkpoint).expect("saved").trim().parse().unwrap();
    let until = compose(now_ms() + 1000, 0).to_string();
    let last = kvfeed(&[&args[..], &["--until-resolved", &until]].concat());
    assert!(last.status.success(), "last run: {}", String::from_utf8_lossy(&last.stderr));
    let (log, end) = parse_watch(&String::from_utf8(last.stdout).unwrap());
    runs.push((log, resumed_from, end));
    served.interrupt();
    let commits = commits_of(&commits_file);
    let _ = std::fs::remove_dir_all(&dir);

    let span = table_span(100);
    let mut printed: std::collections::HashMap<(Bytes, u64), usize> = Default::default();
    for (i, (log, from, last)) in runs.iter().enumerate() {
        // Each run on its own: correct from its checkpoint, nothing twice.
        let report = verify_up_to(&commits, &span, *from, log, *last);
        assert!(report.ok() && report.duplicated == 0, "run {i}: {report:#?}");
        for event in log {
            if let FeedEvent::Row(row) = event {
                assert!(row.commit_ts > *from, "run {i} printed a row at or below its checkpoint");
                *printed.entry((row.key.clone(), row.commit_ts)).or_default() += 1;
            }
        }
    }
    let missed = commits
        .iter()
        .filter(|row| row.commit_ts > start_ts && row.commit_ts <= end)
        .filter(|row| span.contains_raw_key(&row.key))
        .filter(|row| !printed.contains_key(&(row.key.clone(), row.commit_ts)))
        .count();
    assert_eq!(missed, 0, "every committed row up to the end was printed");
    // A row printed by two runs lies above the first one's saved checkpoint: the checkpoints
    // only move forward, so each later run started above every row it repeats.
    let checkpoints: Vec<u64> = runs.iter().map(|(_, from, _)| *from).collect();
    assert!(checkpoints.windows(2).all(|w| w[0] <= w[1]), "checkpoints move forward");
}

#[test]
fn decode_prints_one_row_of_a_table_info_file() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("decode-test");
    std::fs::create_dir_all(&dir).unwrap();
    let table_info = dir.join("orders.json");
    std::fs::write(
        &table_info,
        r#"{"id": 104, "name": {"O": "orders", "L": "orders"}, "pk_is_handle": true,
           "cols": [{"id": 1, "name": {"O": "id", "L": "id"}, "state": 5, "type": {"Tp": 8, "Flag": 3}},
                    {"id": 2, "name": {"O": "amount", "L": "amount"}, "state": 5,
                     "type": {"Tp": 246, "Flen": 3, "Decimal": 2}}]}"#,
    )
    .unwrap();
    let path = table_info.to_str().unwrap();
    let key = "7480000000000000685f728000000000000001";
    // Row v2, column 2 = DECIMAL(3,2) 3.14.
    let output = kvfeed(&[
        "decode",
        "--table-info",
        path,
        "--key",
        key,
        "--value",
        "80000100000002040003 02830e".replace(' ', "").as_str(),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"kind\":\"insert\",\"table\":\"orders\",\"before\":null,\"after\":{\"id\":1,\"amount\":\"3.14\"}}\n"
    );
    // Unusable input: exit 2 for arguments, 1 for bytes that do not decode.
    assert_fails(
        &kvfeed(&["decode", "--table-info", "/no/such/file", "--key", key]),
        2,
        "--table-info",
    );
    assert_fails(&kvfeed(&["decode", "--table-info", path, "--key", "zz"]), 2, "--key");
    assert_fails(&kvfeed(&["decode", "--table-info", path, "--key", "74"]), 1, "cannot decode");
}

/// `watch --table db.tbl` against `sim serve --tidb`: decoded rows and DDL events, checked
/// column by column against the events the simulator's TiDB workload says it wrote.
#[test]
fn watch_by_table_name_prints_decoded_rows_and_ddl_the_workload_wrote() {
    let events_file =
        std::env::temp_dir().join(format!("kvfeed-e2e-tidb-{}.jsonl", std::process::id()));
    let served = Served::start(&[
        "--tidb",
        "--tables",
        "2",
        "--ddl-every",
        "15",
        "--tidb-events",
        events_file.to_str().unwrap(),
    ]);
    // Past the schema `sim serve` wrote before printing its address (maybe this millisecond).
    let (start_ts, until) = (compose(now_ms() + 20, 0), compose(now_ms() + 4000, 0));
    let output = kvfeed(&[
        "watch",
        "--pd",
        &served.pd,
        "--table",
        "demo.t0",
        "--table",
        "Demo.T1",
        "--start-ts",
        &start_ts.to_string(),
        "--until-resolved",
        &until.to_string(),
    ]);
    assert!(output.status.success(), "watch: {}", String::from_utf8_lossy(&output.stderr));
    served.interrupt();
    let expected: Vec<serde_json::Value> = std::fs::read_to_string(&events_file)
        .expect("the events file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let _ = std::fs::remove_file(&events_file);
    let got: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    // The watcher names tables as it was asked to; the workload by their names in TiDB.
    let got: Vec<serde_json::Value> = got
        .into_iter()
        .map(|mut event| {
            if event["table"] == "Demo.T1" {
                event["table"] = "demo.t1".into();
            }
            event
        })
        .collect();
    let watched = ["demo.t0".to_owned(), "demo.t1".to_owned()];
    let report = kvfeed_sim::verify_tidb(&expected, &watched, start_ts, &got);
    assert!(report.is_clean(), "{:#?}", &report.violations[..report.violations.len().min(10)]);
    assert!(report.resolved_ts >= until, "{report:?}");
    assert!(report.rows_expected > 200 && report.ddl_expected >= 3, "{report:?}");
    let ddl = got.iter().find(|e| e["kind"] == "ddl").expect("a DDL line");
    assert!(ddl["query"].as_str().is_some_and(|q| !q.is_empty()) && ddl["commit_ts"].is_u64());
}

#[test]
fn table_names_and_ids_do_not_mix_and_names_need_a_database() {
    let watch = |tables: &[&str]| {
        let mut args = vec!["watch", "--pd", "127.0.0.1:9"];
        for table in tables {
            args.extend(["--table", table]);
        }
        kvfeed(&args)
    };
    assert_fails(&watch(&["100", "demo.t0"]), 2, "--table 100: a table id reads one table raw");
    assert_fails(&watch(&["orders"]), 2, "give a table id or db.table");
    assert_fails(
        &kvfeed(&["snapshot", "--pd", "127.0.0.1:9", "--table", "demo.t0"]),
        2,
        "raw keys",
    );
}

/// Unusable arguments exit 2 with one line, at once: never after a connection timeout.
#[test]
fn unusable_arguments_are_refused_at_once() {
    let watch = |extra: &[&str]| {
        let started = Instant::now();
        let mut args = vec!["watch"];
        args.extend(extra);
        let output = kvfeed(&args);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{extra:?} took {:?}",
            started.elapsed()
        );
        output
    };
    let cases: &[(&[&str], &str)] = &[
        (&["--pd", "", "--table", "1"], "an empty address"),
        (&["--pd", ",", "--table", "1"], "an empty address"),
        (&["--pd", "pd-host", "--table", "1"], "no port"),
        (&["--pd", "pd-host:65536", "--table", "1"], "the port must be 1 to 65535"),
        (&["--pd", "pd-host:x", "--table", "1"], "the port is not a number"),
        (&["--pd", "bad host!:1", "--table", "1"], "not a host name or IP address"),
        (&["--pd", "https://pd:2379,pd2:2379", "--table", "1"], "every address with https://"),
    ];
    for (args, needle) in cases {
        assert_fails(&watch(args), 2, needle);
    }
    let not_pem = std::env::temp_dir().join(format!("kvfeed-not-pem-{}", std::process::id()));
    std::fs::write(&not_pem, "hello").unwrap();
    let path = not_pem.to_str().unwrap();
    assert_fails(
        &watch(&["--pd", "127.0.0.1:9", "--table", "1", "--ca", path]),
        2,
        "not a PEM certificate",
    );
    let _ = std::fs::remove_file(&not_pem);
    // Sizes of 0 are refused, not clamped.
    for (args, needle) in [
        (&["demo", "--tables", "0"][..], "--tables must be at least 1"),
        (&["demo", "--stores", "0"][..], "--stores must be at least 1"),
        (&["demo", "--regions", "0"][..], "--regions must be at least 1"),
        (&["demo", "--duration", "0"][..], "--duration must be at least 1"),
        (&["sim", "serve", "--tables", "0"][..], "--tables must be at least 1"),
        (
            &["sim", "serve", "--commits", "/no/such/dir/commits.jsonl"][..],
            "cannot write /no/such/dir",
        ),
    ] {
        assert_fails(&kvfeed(args), 2, needle);
    }
}

#[test]
fn a_host_that_does_not_resolve_says_so() {
    let output = kvfeed(&["watch", "--pd", "no-such-host.invalid:2379", "--table", "1"]);
    assert_fails(&output, 1, "cannot resolve no-such-host.invalid");
}

/// A start ts far ahead of PD's clock is refused; an unbounded and a raw span are taken; the
/// environment gives `--pd`; SIGTERM ends a watch as Ctrl-C does (exit 0, output flushed).
#[test]
fn start_ts_spans_environment_and_sigterm() {
    let served = Served::start(&[]);
    let output = kvfeed(&[
        "watch",
        "--pd",
        &served.pd,
        "--table",
        "100",
        "--start-ts",
        &u64::MAX.to_string(),
    ]);
    assert_fails(&output, 2, "is ahead of PD's current ts");
    // The whole key space, and table 100's record range as raw keys.
    for span in [["--span", ".."], ["--span-raw", "7480000000000000645f72..7480000000000000645f73"]]
    {
        let until = compose(now_ms() + 1500, 0).to_string();
        let output = Command::new(BIN)
            .args(["watch", span[0], span[1], "--until-resolved", &until])
            .env("KVFEED_PD", &served.pd)
            .output()
            .expect("run kvfeed");
        assert!(output.status.success(), "{span:?}: {}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.lines().any(|l| l.contains("\"kind\":\"row\"")), "{span:?} delivered rows");
    }
    let mut child = Command::new(BIN)
        .args(["watch", "--pd", &served.pd, "--table", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watch");
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut first).expect("a line");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "SIGTERM ends watch cleanly");
    served.interrupt();
}

#[test]
fn completions_and_version() {
    let output = kvfeed(&["completions", "bash"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("kvfeed"), "a bash script");
    let version = String::from_utf8(kvfeed(&["--version"]).stdout).unwrap();
    assert!(version.starts_with("kvfeed 0.") && version.contains("(commit "), "{version}");
}

/// One HTTP GET on 127.0.0.1:`port`: the status line and the body.
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// `--metrics-addr`: /metrics with the build, the printed resolved ts and rows by op, the
/// process's CPU, memory and fds, the subscription's gauges named after the table and the
/// store's streams; /healthz, /readyz once a fresh resolved ts was printed, 404 elsewhere.
#[test]
fn metrics_and_health_paths() {
    let served = Served::start(&[]);
    // Port 0: the kernel picks a free one, and the watch logs it (-v).
    let mut child = Command::new(BIN)
        .args(["-v", "watch", "--pd", &served.pd, "--table", "100", "--metrics-addr", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut log = stderr.lines();
    let port: u16 = loop {
        let line = log.next().expect("a log line").expect("utf-8");
        if let Some((_, bound)) = line.split_once("serving metrics bound=") {
            break bound.trim().rsplit_once(':').expect("HOST:PORT").1.parse().expect("a port");
        }
    };
    // The rest of the log is drained, so the watch never blocks on a full pipe.
    std::thread::spawn(move || log.for_each(drop));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    // Once a resolved line is out after a row, the watch is ready and has counted the row.
    let (mut line, mut rows) = (String::new(), 0);
    while rows == 0 || !line.contains("\"kind\":\"resolved\"") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("a line") > 0, "watch ended");
        rows += usize::from(line.contains("\"kind\":\"row\""));
    }
    // The stdout is drained from here on too.
    std::thread::spawn(move || stdout.lines().for_each(drop));
    let (status, body) = http_get(port, "/metrics").expect("metrics");
    assert!(status.contains("200"), "{status}");
    assert!(
        body.contains("kvfeed_build_info{version=") && body.contains("kvfeed_watch_resolved_ts ")
    );
    let counted = |body: &str, prefix: &str| {
        body.lines().any(|l| l.starts_with(prefix) && !l.ends_with(" 0"))
    };
    assert!(counted(&body, "kvfeed_watch_rows_total{op=\"put\"}"), "rows by op: {body}");
    // (prometheus' collector counts CPU in whole seconds: present, but maybe 0 yet.)
    assert!(body.lines().any(|l| l.starts_with("process_cpu_seconds_total ")), "{body}");
    for process in ["process_resident_memory_bytes", "process_open_fds"] {
        assert!(counted(&body, process), "{process}: {body}");
    }
    // The client's gauges are refreshed every second: the subscription's, named after the
    // table, and the store's streams come within a few.
    let wanted = [
        "kvfeed_kvclient_resolved_ts{name=\"t100\",subscription=",
        "kvfeed_kvclient_region_count{name=\"t100\",subscription=",
        "kvfeed_kvclient_store_stream_count{mode=\"multiplexed\",store=",
        "kvfeed_kvclient_store_region_count{store=",
    ];
    let mut body = body;
    for _ in 0..100 {
        if wanted.iter().all(|series| counted(&body, series)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        body = http_get(port, "/metrics").expect("metrics").1;
    }
    for series in wanted {
        assert!(counted(&body, series), "{series}: {body}");
    }
    assert!(http_get(port, "/healthz").unwrap().0.contains("200"));
    assert!(http_get(port, "/readyz").unwrap().0.contains("200"), "ready after a resolved ts");
    assert!(http_get(port, "/other").unwrap().0.contains("404"));
    let _ = child.kill();
    let _ = child.wait();
    served.interrupt();
}

/// `--ops delete --no-resolved --ts-as-string`: only deletes, no resolved lines, timestamps as
/// strings.
#[test]
fn output_filters_and_string_timestamps() {
    let served = Served::start(&[]);
    let until = compose(now_ms() + 2000, 0).to_string();
    let output = kvfeed(&[
        "watch",
        "--pd",
        &served.pd,
        "--table",
        "100",
        "--until-resolved",
        &until,
        "--ops",
        "delete",
        "--no-resolved",
        "--ts-as-string",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    served.interrupt();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.lines().count() > 0, "the workload deletes rows");
    for line in stdout.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!((value["kind"].as_str(), value["op"].as_str()), (Some("row"), Some("delete")));
        assert!(value["commit_ts"].as_str().is_some_and(|ts| ts.parse::<u64>().is_ok()), "{line}");
    }
}

/// An outage: the cluster dies under a watch; status lines say so on stderr, and
/// `--give-up-after` ends the watch with exit 1.
#[test]
fn an_outage_is_reported_and_given_up_on() {
    let served = Served::start(&[]);
    let mut child = Command::new(BIN)
        .args(["watch", "--pd", &served.pd, "--table", "100", "--status-every", "1"])
        .args(["--give-up-after", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("\"kind\":\"resolved\"") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("a line") > 0, "watch ended early");
    }
    drop(served); // SIGKILL: the whole cluster is gone.
    let started = Instant::now();
    // Drain stdout so the watch never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let output = child.wait_with_output().expect("wait");
    assert!(started.elapsed() < Duration::from_secs(30), "gave up in time");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no progress for"), "status lines: {stderr}");
    assert!(stderr.contains("PD unreachable"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: gave up after") && last.contains("last resolved ts"),
        "{stderr}"
    );
}

/// `sim serve --pd-port`: a simulator killed and started again on the same port is found
/// again by a running watch, whose resolved ts moves on past the restart. With `--chaos` and
/// `--status-every`, the simulator injects faults and says so on stderr.
#[test]
fn a_watch_reconnects_to_a_restarted_simulator_on_its_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let serve = |extra: &[&str]| {
        Command::new(BIN)
            .args(["sim", "serve", "--stores", "2", "--regions", "4", "--pd-port"])
            .arg(port.to_string())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sim serve")
    };
    let mut first = serve(&[]);
    let pd = format!("127.0.0.1:{port}");
    let mut watch = Command::new(BIN)
        .args(["watch", "--pd", &pd, "--table", "100", "--timeout", "20", "--give-up-after", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let mut next_resolved = || loop {
        let line = lines.next().expect("a line").expect("utf-8");
        if line.contains("\"kind\":\"resolved\"") {
            return field(&line, "ts").parse::<u64>().expect("ts");
        }
    };
    next_resolved();
    let _ = first.kill();
    let _ = first.wait();
    let restarted_at = compose(now_ms(), 0);
    let mut second = serve(&["--chaos", "--status-every", "1"]);
    while next_resolved() <= restarted_at {}
    let _ = watch.kill();
    let _ = watch.wait();
    // The banner, then a status line a second.
    let mut status = BufReader::new(second.stderr.take().expect("stderr")).lines();
    let line = status.nth(1).expect("a status line").expect("utf-8");
    assert!(line.contains("transactions committed") && line.contains("faults"), "{line}");
    let pid = second.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    assert!(second.wait().expect("wait").success());
}

#[test]
fn environment_variables_stand_for_flags() {
    // KVFEED_MEMORY_QUOTA=0 is refused as --memory-quota 0 is; an explicit flag wins.
    let output = Command::new(BIN)
        .args(["watch", "--table", "1"])
        .env("KVFEED_PD", "127.0.0.1:9")
        .env("KVFEED_MEMORY_QUOTA", "0")
        .output()
        .expect("run kvfeed");
    assert_fails(&output, 2, "--memory-quota must be at least 1");
    let output = Command::new(BIN)
        .args(["watch", "--table", "1", "--pd", "pd-host"])
        .env("KVFEED_PD", "127.0.0.1:9")
        .output()
        .expect("run kvfeed");
    assert_fails(&output, 2, "--pd \"pd-host\": no port");
}

/// `https://` means TLS, never silent plaintext: against the plaintext simulator it fails,
/// with `--ca` and with the system's CA bundle alike, at once and naming the handshake.
#[test]
fn https_is_tls_and_never_plaintext() {
    let served = Served::start(&[]);
    let https = format!("https://{}", served.pd);
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/../regioncache/tests/data/ca.pem");
    for extra in [&["--ca", ca][..], &[][..]] {
        let mut args = vec!["watch", "--pd", &https, "--table", "100", "--timeout", "2"];
        args.extend(extra);
        let output = kvfeed(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.stdout.is_empty(), "nothing read over plaintext: {extra:?}");
        // Without a system bundle on the machine the second is a usage error instead.
        if extra.is_empty() && output.status.code() == Some(2) {
            continue;
        }
        assert_fails(&output, 1, "TLS handshake with 127.0.0.1:");
        assert!(stderr.contains("plain text"), "{stderr}");
    }
    served.interrupt();
}
