//! `blindpass audit inspect --pid` against a real `blindpass serve`: the
//! live period's key is found in the process's memory and reported as live
//! (not a failure); a value the process is known to hold (its issuer name,
//! given as a canary) is found and the inspection exits 1; a value it never
//! saw is not found.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// Kills the server even when an assertion fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path, port: u16, issuer_name: &str) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_blindpass"))
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--key-horizon-days", "1", "--issuer-name", issuer_name])
        .env("BLINDPASS_PASSPHRASE", "inspect test passphrase")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let t0 = Instant::now();
    while agent()
        .get(&format!("http://127.0.0.1:{port}/healthz"))
        .call()
        .is_err()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

fn inspect(pid: u32, dir: &std::path::Path, canaries: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blindpass"));
    cmd.args(["audit", "inspect", "--json", "--pid", &pid.to_string()])
        .arg("--data-dir")
        .arg(dir);
    for canary in canaries {
        cmd.args(["--canary", canary]);
    }
    cmd.output().unwrap()
}

fn report(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn inspect_pid_finds_the_live_key_as_live_and_a_held_canary_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let issuer_name = format!("issuer-{}.canary.test", std::process::id());
    let server = start(dir.path(), port, &issuer_name);
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let ends = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut resp = agent()
        .post(&format!("http://127.0.0.1:{port}/v1/admin/periods"))
        .header("Authorization", &format!("Bearer {}", admin.trim()))
        .send_json(serde_json::json!({"name": "inspected", "ends_at": ends, "grace_s": 0}))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let period: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let period = period["id"].as_str().unwrap().to_owned();
    let pid = server.0.id();

    // Before the deadline: the live key is in memory, reported as live.
    let output = inspect(pid, dir.path(), &[]);
    let clean = report(&output);
    assert_eq!(output.status.code(), Some(0), "{clean}");
    let live: Vec<&str> = clean["live_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["period"].as_str().unwrap())
        .collect();
    assert!(live.contains(&period.as_str()), "{clean}");
    assert_eq!(clean["live_periods"], 1);
    assert_eq!(clean["failures"], serde_json::json!([]));
    assert!(
        clean["bytes_scanned"].as_u64().unwrap() > 1 << 20,
        "{clean}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MiB"), "progress on stderr: {stderr}");

    // The issuer name is held by the process: as a canary it is found,
    // and the inspection fails. A value the process never saw is not.
    let absent = format!("never-sent-{}", std::process::id());
    let output = inspect(pid, dir.path(), &[&issuer_name, &absent]);
    let found = report(&output);
    assert_eq!(output.status.code(), Some(1), "{found}");
    let failures = found["failures"].as_array().unwrap();
    assert!(!failures.is_empty(), "{found}");
    for failure in failures {
        assert_eq!(failure["kind"], "canary-in-memory", "{found}");
        assert_eq!(failure["canary"], 1, "{found}");
        assert!(failure["copies"]["count"].as_u64().unwrap() >= 1);
    }

    // Without the right to read the process, the inspection says so (exit
    // 2) instead of passing.
    let output = inspect(u32::MAX - 1, dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("process"));
    drop(server);
}
