//! The deletion promise reaches the process's memory: a real production-mode
//! `blindpass serve` (passphrase from the environment) enrols canary
//! residents — every field, the password included, a value that exists
//! nowhere else — who log in and obtain passes; their period ends with no
//! grace, and once `records-purged` is logged the server's whole memory is
//! read through `/proc/PID/mem` and searched for the period key, every
//! master key version that rotation retired, and every canary. None may be
//! found. The keys the server must still hold (the current master key, a
//! second period's key) must be found, which shows the scan sees the heap
//! where keys live.

mod common;

use common::process::{agent, free_port, wait_until_answering};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;
use blindpass::crypto::blind::begin_issuance;
use blindpass::crypto::secret::Passphrase;
use blindpass::issuer::DataDir;
use blindpass::protocol::directory::Directory;
use blindpass::protocol::permit::{Window, WindowKind};
use blindpass::vault::Vault;
use blindpass::vault::master::{MasterKeyProvider, PassphraseSlot};

const PASSPHRASE: &str = "memory test operator passphrase";
const RESIDENTS: usize = 50;

struct Server {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path, log: &Path) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_blindpass"))
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--key-horizon-days", "2"])
        .args(["--rate-burst", "100000", "--rate-per-s", "100000"])
        .env("BLINDPASS_PASSPHRASE", PASSPHRASE)
        .env_remove("BLINDPASS_PASSPHRASE_FILE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_until_answering(&url);
    Server {
        child,
        url,
        log: log.to_owned(),
    }
}

fn post(url: &str, body: &serde_json::Value, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = agent().post(url);
    if let Some(token) = bearer {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    let mut resp = req.send_json(body).unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// Every field of one resident, each a value that occurs nowhere else.
struct Canary {
    name: String,
    born: String,
    document: String,
    address: String,
    phone: String,
    employer: String,
    password: String,
}

impl Canary {
    fn new(run: u32, i: usize) -> Self {
        let born = time::macros::date!(1930 - 01 - 01)
            + time::Duration::days(i64::from(run % 4000) + 3 * i as i64);
        Self {
            name: format!("Canaryname Q{run:08x}n{i:03}"),
            born: born.to_string(),
            document: format!("D{run:08X}{i:03}"),
            address: format!("Canary street {run:08x} house {i:03}"),
            phone: format!("+9{:08}{i:03}", run % 100_000_000),
            employer: format!("8{:08}{i:03}", run % 100_000_000),
            password: format!("canary-password-{run:08x}-{i:03}"),
        }
    }

    fn fields(&self) -> [(&'static str, &str); 7] {
        [
            ("full_name", &self.name),
            ("date_of_birth", &self.born),
            ("document_number", &self.document),
            ("address", &self.address),
            ("phone", &self.phone),
            ("employer_tax_number", &self.employer),
            ("password", &self.password),
        ]
    }
}

/// A master key version and its bytes.
type Master = (u64, [u8; 32]);
/// A period id and its key's bytes.
type Period = (String, [u8; 32]);

/// The current master key and the key ring's period keys, read from the
/// vault files with the operator passphrase.
fn read_vault(data: &Path) -> (Master, Vec<Period>) {
    let layout = DataDir::new(data);
    let pass = Passphrase::new(PASSPHRASE.into());
    let slot = PassphraseSlot::open(&layout.master_slot(), &pass).unwrap();
    let (version, master) = slot.load().unwrap();
    let vault = Vault::open_read_only(&layout.vault(), Box::new(slot)).unwrap();
    assert_eq!(vault.master_version(), version);
    let periods = vault
        .ring()
        .periods
        .iter()
        .map(|p| (p.id.to_string(), *p.key.expose_secret()))
        .collect();
    ((version, *master.expose_secret()), periods)
}

/// SHA-256's state after one block, as the words sit in memory (native
/// order) and as bytes (big-endian).
fn midstates(block: &[u8; 64]) -> [Vec<u8>; 2] {
    let mut state: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    sha2::block_api::compress256(&mut state, &[*block]);
    [
        state.iter().flat_map(|w| w.to_ne_bytes()).collect(),
        state.iter().flat_map(|w| w.to_be_bytes()).collect(),
    ]
}

/// The forms in which a 32-byte key betrays itself: raw, as hex (as in the
/// key ring's JSON), XORed with HMAC's inner and outer pads (one XOR away
/// from the key), and SHA-256's state after those padded blocks (enough
/// to compute any HMAC, hence any derived key, under the key).
fn key_forms(what: &str, key: &[u8; 32]) -> Vec<(String, Vec<u8>)> {
    let mut forms = Vec::new();
    for (pad, name) in [(0x36u8, "ipad"), (0x5c, "opad")] {
        let mut block = [pad; 64];
        block.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
        let [native, big] = midstates(&block);
        forms.push((format!("{what}: SHA-256 state after K ^ {name}"), native));
        forms.push((
            format!("{what}: SHA-256 state after K ^ {name}, bytes"),
            big,
        ));
    }
    forms.extend([
        (format!("{what} raw"), key.to_vec()),
        (format!("{what} hex"), hex::encode(key).into_bytes()),
        (
            format!("{what} ^ HMAC ipad"),
            key.iter().map(|b| b ^ 0x36).collect(),
        ),
        (
            format!("{what} ^ HMAC opad"),
            key.iter().map(|b| b ^ 0x5c).collect(),
        ),
    ]);
    forms
}

/// Reads every readable mapping of `pid` and counts, per needle, where it
/// occurs. Fails loudly when the memory cannot be read at all.
fn scan(pid: u32, needles: &[(String, Vec<u8>)]) -> Vec<usize> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/mem cannot be opened ({e}); this test needs root"));
    let matcher = AhoCorasick::new(needles.iter().map(|(_, n)| n)).unwrap();
    let overlap = needles.iter().map(|(_, n)| n.len()).max().unwrap_or(0);
    let mut counts = vec![0usize; needles.len()];
    let (mut read_bytes, mut heap_read) = (0u64, false);
    const CHUNK: u64 = 4 << 20;
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let name = line.split_whitespace().nth(5).unwrap_or("");
        if !perms.starts_with('r') || name.starts_with("[vvar") || name == "[vsyscall]" {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut at = start;
        let mut carry: Vec<u8> = Vec::new();
        while at < end {
            let len = CHUNK.min(end - at);
            let mut buf = vec![0u8; len as usize];
            mem.seek(SeekFrom::Start(at)).unwrap();
            if let Err(e) = mem.read_exact(&mut buf) {
                panic!("reading {name} at {at:#x} of /proc/{pid}/mem failed: {e}");
            }
            read_bytes += len;
            heap_read |= name == "[heap]";
            let mut window = std::mem::take(&mut carry);
            let carried = window.len();
            window.extend_from_slice(&buf);
            for m in matcher.find_overlapping_iter(&window) {
                // A match lying wholly in the carried tail was counted
                // in the previous chunk.
                if m.end() > carried {
                    counts[m.pattern().as_usize()] += 1;
                }
            }
            carry = window[window.len().saturating_sub(overlap - 1)..].to_vec();
            at += len;
        }
    }
    assert!(heap_read, "the heap was not read");
    assert!(read_bytes > 1 << 20, "only {read_bytes} bytes were read");
    counts
}

fn log_has(log: &Path, what: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains(what))
}

#[test]
fn destroyed_keys_and_purged_residents_are_gone_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &dir.path().join("serve.log"));
    // Core dumps are off, for good (the hard limit too).
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let admin = admin.trim();
    let mut masters = vec![read_vault(&data).0];

    // A period that stays open (its key must be found) and the doomed one,
    // opened second so that enrolment goes to it.
    let ends = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut opened = Vec::new();
    for name in ["kept", "doomed"] {
        let (status, body) = post(
            &format!("{}/v1/admin/periods", server.url),
            &serde_json::json!({"name": name, "ends_at": ends, "grace_s": 0}),
            Some(admin),
        );
        assert_eq!(status, 201, "{body}");
        opened.push(body["id"].as_str().unwrap().to_owned());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (master, periods) = read_vault(&data);
    masters.push(master);
    let key_of = |id: &str| periods.iter().find(|(p, _)| p == id).unwrap().1;
    let (kept_key, doomed_key) = (key_of(&opened[0]), key_of(&opened[1]));

    // Canary residents enrol, log in and obtain a pass each.
    let run: u32 = rand::random();
    let canaries: Vec<Canary> = (0..RESIDENTS).map(|i| Canary::new(run, i)).collect();
    let mut resp = agent()
        .get(&format!("{}/v1/directory", server.url))
        .call()
        .unwrap();
    let directory: Directory =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let window = Window::containing(WindowKind::Day, time::OffsetDateTime::now_utc().date());
    let (key, digest) = common::key_for(&directory, "personal", window);
    for c in &canaries {
        let body: serde_json::Map<String, serde_json::Value> = c
            .fields()
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let (status, body) = post(&format!("{}/v1/residents", server.url), &body.into(), None);
        assert_eq!(status, 201, "{body}");
        let (status, body) = post(
            &format!("{}/v1/sessions", server.url),
            &serde_json::json!({"document_number": c.document, "password": c.password}),
            None,
        );
        assert_eq!(status, 201, "{body}");
        let session = body["session_token"].as_str().unwrap().to_owned();
        let request = begin_issuance(&key, digest).unwrap().0.encode();
        let resp = agent()
            .post(&format!(
                "{}/token-request?class=personal&window={window}",
                server.url
            ))
            .header("Authorization", &format!("Bearer {session}"))
            .header("Content-Type", "application/private-token-request")
            .send(&request[..])
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    masters.push(read_vault(&data).0);

    // The period ends with no grace: the key is destroyed before the answer.
    let (status, body) = post(
        &format!("{}/v1/admin/periods/{}/end", server.url, opened[1]),
        &serde_json::json!({}),
        Some(admin),
    );
    assert_eq!(status, 200, "{body}");
    // The purge runs at idle priority: on a busy machine it waits its turn.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !log_has(&server.log, "records-purged") {
        assert!(Instant::now() < deadline, "no records-purged in the log");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (current, periods) = read_vault(&data);
    assert!(periods.iter().all(|(id, _)| id != &opened[1]));
    assert!(current.0 > masters.iter().map(|m| m.0).max().unwrap());

    masters.dedup_by_key(|m| m.0);
    let mut must_be_gone = key_forms("K_P of the destroyed period", &doomed_key);
    for (version, key) in &masters {
        must_be_gone.extend(key_forms(&format!("retired master M_{version}"), key));
    }
    for (i, c) in canaries.iter().enumerate() {
        for (field, value) in c.fields() {
            must_be_gone.push((format!("resident {i} {field}"), value.as_bytes().to_vec()));
        }
    }
    let must_be_held = [
        (
            format!("current master M_{}", current.0),
            current.1.to_vec(),
        ),
        ("K_P of the open period".to_owned(), kept_key.to_vec()),
    ];
    let needles: Vec<(String, Vec<u8>)> = must_be_gone
        .iter()
        .chain(must_be_held.iter())
        .cloned()
        .collect();
    let counts = scan(server.child.id(), &needles);

    let held = &counts[must_be_gone.len()..];
    for ((what, _), n) in must_be_held.iter().zip(held) {
        assert!(*n > 0, "the scan missed a key the server holds: {what}");
    }
    let found: Vec<String> = must_be_gone
        .iter()
        .zip(&counts)
        .filter(|(_, n)| **n > 0)
        .map(|((what, _), n)| format!("{what}: {n}"))
        .collect();
    assert!(
        found.is_empty(),
        "{} of {} destroyed values are still in the server's memory:\n{}",
        found.len(),
        must_be_gone.len(),
        found.join("\n")
    );
}
