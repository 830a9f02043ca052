//! The health endpoints reflect the store and the disk. `/readyz` fails
//! when free space under the data directory drops below the minimum; when
//! the disk fills up and the store's writes fail, `/healthz` stops saying
//! 200, and once space is back either writes work again or the server
//! keeps reporting itself unhealthy (sled keeps its I/O error until the
//! database is reopened, so a restart is the recovery).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blindpass::clock::ManualClock;
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::secret::Passphrase;
use blindpass::http::{AppState, HttpConfig};
use blindpass::issuer::{Authority, AuthorityConfig};
use common::{START, TestServer};

fn config() -> HttpConfig {
    HttpConfig {
        password_params: Argon2Params::INSECURE_FAST_FOR_TESTS,
        rate_burst: 10_000,
        health_probe_interval: Duration::ZERO,
        ..HttpConfig::default()
    }
}

#[test]
fn readyz_fails_when_free_space_is_under_the_minimum() {
    let healthy = TestServer::start_with(config());
    assert_eq!(healthy.get_json("/readyz").0, 200);
    assert_eq!(healthy.get_json("/healthz").0, 200);

    let short = TestServer::start_with(HttpConfig {
        min_free_disk_bytes: u64::MAX,
        ..config()
    });
    let (status, body) = short.get_json("/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "https://blindpass.dev/problems/disk-low");
    // Low disk is not a reason to restart: liveness still holds.
    assert_eq!(short.get_json("/healthz").0, 200);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` where mounting is not permitted (not root, no CAP_SYS_ADMIN).
    fn mount(size_mib: u32) -> Option<Self> {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self {
            path,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Serves an authority in `root` on a thread; the runtime ends with the
/// test process.
fn serve_in(root: &Path, http: HttpConfig) -> String {
    let authority = Arc::new(
        Authority::init(
            root,
            &Passphrase::new("operator passphrase".into()),
            Argon2Params::INSECURE_FAST_FOR_TESTS,
            AuthorityConfig {
                key_horizon_days: 3,
                ..AuthorityConfig::default()
            },
            Arc::new(ManualClock::new(START)),
        )
        .unwrap(),
    );
    authority
        .open_period("test", START + time::Duration::days(30), 3600)
        .unwrap();
    authority.ensure_signing_keys().unwrap();
    let state = AppState::new(authority, http, common::ADMIN).unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            blindpass::http::serve(listener, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    format!("http://{}", addr_rx.recv().unwrap())
}

fn status(url: &str, path: &str) -> u16 {
    ureq::get(&format!("{url}{path}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap()
        .status()
        .as_u16()
}

fn enrol(url: &str, document: &str) -> u16 {
    ureq::post(&format!("{url}/v1/residents"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(serde_json::json!({
            "full_name": "Disk Resident",
            "date_of_birth": "1985-03-04",
            "document_number": document,
            "address": "Street 1",
            "phone": "+74951234567",
            "password": common::PASSWORD,
        }))
        .unwrap()
        .status()
        .as_u16()
}

/// Fills the file system under `dir` until a write fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    while file
        .write_all(&chunk)
        .and_then(|()| file.sync_data())
        .is_ok()
    {}
    // Whatever is left is smaller than a chunk: take it byte by byte.
    while file.write_all(&chunk[..1024]).is_ok() {}
    while file.write_all(&chunk[..1]).is_ok() {}
    path
}

#[test]
fn a_full_disk_never_leaves_healthz_at_200_while_writes_fail() {
    let Some(tmpfs) = Tmpfs::mount(24) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let root = tmpfs.path.join("data");
    let url = serve_in(
        &root,
        HttpConfig {
            min_free_disk_bytes: 1024 * 1024,
            ..config()
        },
    );
    assert_eq!(enrol(&url, "DK0000001"), 201);
    assert_eq!(status(&url, "/healthz"), 200);
    assert_eq!(status(&url, "/readyz"), 200);

    let filler = fill(&tmpfs.path);
    assert_eq!(status(&url, "/readyz"), 503, "the disk is full");
    // Write until the store fails (sled may buffer a little first).
    let failed = (2..200).any(|i| enrol(&url, &format!("DK{i:07}")) >= 500);
    assert!(failed, "the store never failed on a full disk");
    assert_eq!(status(&url, "/healthz"), 503, "writes fail: not healthy");

    std::fs::remove_file(filler).unwrap();
    let after = enrol(&url, "DK0000999");
    let healthz = status(&url, "/healthz");
    let readyz = status(&url, "/readyz");
    eprintln!("after space came back: enrol {after}, /healthz {healthz}, /readyz {readyz}");
    if after != 201 {
        assert_eq!(healthz, 503, "writes still fail, so /healthz must say so");
        assert_eq!(readyz, 503);
    } else {
        assert_eq!(healthz, 200);
    }
}
