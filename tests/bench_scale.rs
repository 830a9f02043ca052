//! `blindpass bench scale` end to end with tiny numbers: it fills a data
//! directory, starts the real `serve` as a child, loads it, destroys the
//! doomed period under load, and reports every figure; nothing is left
//! behind in the scratch directory.

use std::process::Command;

fn figure(report: &serde_json::Value, what: &str) -> f64 {
    report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["what"] == what)
        .unwrap_or_else(|| panic!("no figure {what:?} in {report:#}"))["value"]
        .as_f64()
        .unwrap()
}

fn check<'a>(report: &'a serde_json::Value, what: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == what)
        .unwrap_or_else(|| panic!("no check {what:?} in {report:#}"))
}

#[test]
fn a_tiny_scale_run_reports_sane_figures_and_leaves_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_blindpass"))
        .args([
            "bench",
            "scale",
            "--residents",
            "200",
            "--doomed",
            "200",
            "--with-passwords",
            "4",
            "--concurrency",
            "4",
            "--warmup-s",
            "0.5",
            "--duration-s",
            "1",
            "--requests",
            "3000",
            "--json",
            "--quiet",
            "--scratch-dir",
        ])
        .arg(scratch.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["mode"], "scale");

    let start_s = figure(&report, "start: spawn → first GET /healthz 200");
    assert!(start_s > 0.0 && start_s < 60.0, "{start_s}");
    assert_eq!(check(&report, "start time")["value"], start_s);

    let hwm = figure(&report, "VmHWM: peak RSS over the server's life");
    assert!(hwm > 1.0, "{hwm} MiB");
    assert!(figure(&report, "RSS at the first healthy answer") > 1.0);
    assert!(figure(&report, "passes issued (timed phase)") > 0.0);
    assert!(figure(&report, "passes/s") > 0.0);

    // 200 sealed records and 200 index entries, and only those: the doomed
    // period never held a session.
    assert_eq!(figure(&report, "server log: entries purged"), 400.0);
    let answered_ms = figure(&report, "end call answered after");
    let purged_ms = figure(&report, "end call → purge done (audit log)");
    assert!(answered_ms > 0.0 && purged_ms >= answered_ms, "{report:#}");
    assert!(
        report["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .starts_with("the doomed period was destroyed")),
        "{report:#}"
    );
    assert!(
        check(&report, "p99 during the destruction ÷ p99 before it")["value"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let per_resident = figure(&report, "sled size on disk per resident (sled's figure)");
    assert!(
        per_resident > 100.0 && per_resident < 100_000.0,
        "{per_resident}"
    );

    let latencies: Vec<&str> = report["latencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["phase"].as_str().unwrap())
        .collect();
    assert!(
        latencies.contains(&"during the destruction"),
        "{latencies:?}"
    );
    for (phase, errors) in report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (&e[0], &e[1]))
    {
        assert_eq!(errors, &serde_json::json!({}), "failures in {phase}");
    }
    // The child server is gone with its data directory.
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}
