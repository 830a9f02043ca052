//! Helpers for tests that run a real `blindpass serve` child: a free port,
//! an HTTP client that reports every status instead of failing on it, a
//! handle that kills the child even when an assertion fails, and a wait
//! for `/healthz`.

use std::process::Child;
use std::time::{Duration, Instant};

/// A port nobody listens on right now (the listener is closed again).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An HTTP client with a 30-s overall timeout; a 4xx or 5xx is an answer.
pub fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(30))
}

/// An HTTP client with the given overall timeout; a 4xx or 5xx is an answer.
pub fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Kills the server even when an assertion fails.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` with its output discarded, killed on drop, and waits
/// until it answers on 127.0.0.1:`port`.
pub fn spawn_answering(command: &mut std::process::Command, port: u16) -> KillOnDrop {
    let child = KillOnDrop(
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_answering(&format!("http://127.0.0.1:{port}"));
    child
}

/// Waits until `base/healthz` answers (whatever its status); panics after 60 s.
pub fn wait_until_answering(base: &str) {
    let agent = agent();
    let t0 = Instant::now();
    while agent.get(&format!("{base}/healthz")).call().is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `command` to its end; its output and, for messages, its stdout and
/// stderr as one text.
pub fn run(command: &mut std::process::Command) -> (std::process::Output, String) {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}
