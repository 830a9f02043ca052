//! On-site inspection of a running issuer's memory: every mapping of the
//! process (`/proc/PID/maps`, read through `/proc/PID/mem` in bounded
//! chunks, inaccessible `---p` ones included) searched for period keys — recognised by the
//! commitments the audit log publishes — and for canary strings.
//!
//! A period key `K` is published only as its commitment
//! `HMAC-SHA-256(K, "blindpass-key-commitment")`, so a candidate is tested
//! by computing that HMAC and looking it up among the logged commitments.
//! Candidates are 32 raw bytes at every aligned offset (8 bytes by default,
//! every byte on request) and every 64-character run of hex digits,
//! decoded. The HMAC is the cost, so a candidate must first look random
//! ([`plausible_key`]); zero-filled memory, pointers and text never get
//! that far. A key of a destroyed period is a failure; a key of a live
//! period is expected and only reported.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::inspect::{InspectError, InspectFailure, LoggedKeys};
use crate::crypto::kdf;
use crate::ids::PeriodId;

/// The message a period key's commitment is the HMAC of (as
/// `issuer::key_commitment` computes it).
const COMMITMENT_LABEL: &[u8] = b"blindpass-key-commitment";
/// Bytes read from the process at a time; with the carried overlap, about
/// all the memory a scan needs.
const CHUNK: usize = 4 << 20;
/// A period key's length, raw.
const KEY_LEN: usize = 32;
/// A period key's length, hex.
const HEX_LEN: usize = 2 * KEY_LEN;

/// How a copy was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// The key's 32 bytes.
    Raw,
    /// The key as 64 hex digits (either case).
    Hex,
    /// A canary's bytes as given (UTF-8).
    Text,
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Raw => "raw",
            Self::Hex => "hex",
            Self::Text => "text",
        })
    }
}

/// Copies of one thing in one encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copies {
    /// How they were found.
    pub encoding: Encoding,
    /// How many.
    pub count: u64,
    /// The lowest address of one.
    pub first_address: u64,
    /// The mapping that address lies in (its path, `[heap]`, or
    /// `[anonymous]`).
    pub region: String,
}

impl std::fmt::Display for Copies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} cop{}, first at {:#x} in {}",
            self.count,
            self.encoding,
            if self.count == 1 { "y" } else { "ies" },
            self.first_address,
            self.region
        )
    }
}

/// A live period's key found in memory: expected, not a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveKey {
    /// The period.
    pub period: PeriodId,
    /// Where it was found.
    pub copies: Copies,
}

/// Something the memory inspection caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum MemoryFailure {
    /// The key of a period the log shows as destroyed is still in memory.
    #[error("the key of destroyed period {period} is in the process's memory: {copies}")]
    DestroyedKeyInMemory {
        /// The period.
        period: PeriodId,
        /// Where it was found.
        copies: Copies,
    },
    /// A canary is in the process's memory.
    #[error("canary {canary} is in the process's memory: {copies}")]
    CanaryInMemory {
        /// Which canary (1-based, in the order given).
        canary: usize,
        /// Where it was found.
        copies: Copies,
    },
    /// The audit log on disk does not parse or is out of order (its
    /// commitments may be incomplete).
    #[error("audit log: {detail}")]
    LogMalformed {
        /// What does not parse.
        detail: String,
    },
}

/// The outcome of [`inspect_memory`].
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// The process inspected.
    pub pid: u32,
    /// Mappings (inaccessible ones included).
    pub mappings: usize,
    /// Bytes read and searched.
    pub bytes_scanned: u64,
    /// Bytes of mappings that could not be read (e.g. `[vvar]`).
    pub bytes_unreadable: u64,
    /// How long the scan took.
    pub elapsed_ms: u64,
    /// Raw candidates were tried at addresses that are multiples of this.
    pub alignment: usize,
    /// Live periods in the log (keys that may be in memory).
    pub live_periods: usize,
    /// Destroyed periods in the log (keys that must not be).
    pub destroyed_periods: usize,
    /// Candidates that passed the randomness filter and were HMAC-tested.
    pub candidates_tested: u64,
    /// Canaries searched for.
    pub canaries: usize,
    /// Live periods' keys found (expected).
    pub live_keys: Vec<LiveKey>,
    /// What was caught; empty means the inspection passed.
    pub failures: Vec<MemoryFailure>,
}

impl MemoryReport {
    /// No failures.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Scan speed in MiB/s (0 for an instant scan).
    pub fn mib_per_s(&self) -> f64 {
        if self.elapsed_ms == 0 {
            return 0.0;
        }
        self.bytes_scanned as f64 / (1024.0 * 1024.0) / (self.elapsed_ms as f64 / 1000.0)
    }
}

/// How far a scan has come, for progress lines.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes read so far (readable or not).
    pub done: u64,
    /// Bytes in all mappings.
    pub total: u64,
}

/// What a period key is, by the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LoggedPeriod {
    period: PeriodId,
    destroyed: bool,
}

/// What is looked for and what was found; fed one window of memory at a
/// time.
pub(crate) struct Scanner {
    commitments: HashMap<[u8; 32], LoggedPeriod>,
    canaries: Vec<Vec<u8>>,
    alignment: usize,
    tested: u64,
    found: BTreeMap<(Found, Encoding), (u64, u64, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Found {
    Key(PeriodId),
    Canary(usize),
}

/// The commitment the log publishes for a period key.
fn commitment(key: &[u8; 32]) -> [u8; 32] {
    kdf::hmac_sha256(key, &[COMMITMENT_LABEL])
}

/// Whether 32 bytes look like a random key: at most 6 zero bytes, at least
/// one byte with the high bit set and one without, at least 20 distinct
/// values. A uniformly random key fails this with probability below 10⁻⁹
/// (the three tails are about 4·10⁻¹¹, 5·10⁻¹⁰ and 1.5·10⁻¹⁰); zero runs,
/// runs of pointers, ASCII text (hex and base64 too) and repeated
/// patterns fail it at once.
pub(crate) fn plausible_key(bytes: &[u8; 32]) -> bool {
    let mut zeros = 0u32;
    let mut high = 0u32;
    let mut seen = [0u64; 4];
    for &b in bytes {
        zeros += u32::from(b == 0);
        high += u32::from(b >> 7);
        seen[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    if zeros > 6 || !(1..=31).contains(&high) {
        return false;
    }
    seen.iter().map(|w| w.count_ones()).sum::<u32>() >= 20
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl Scanner {
    /// A scanner for the keys behind `commitments` (each with its period
    /// and whether the log shows it destroyed) and for `canaries`, trying
    /// raw keys at addresses that are multiples of `alignment`.
    pub(crate) fn new(
        commitments: impl IntoIterator<Item = ([u8; 32], PeriodId, bool)>,
        canaries: &[String],
        alignment: usize,
    ) -> Self {
        Self {
            commitments: commitments
                .into_iter()
                .map(|(c, period, destroyed)| (c, LoggedPeriod { period, destroyed }))
                .collect(),
            canaries: canaries.iter().map(|c| c.as_bytes().to_vec()).collect(),
            alignment: alignment.max(1),
            tested: 0,
            found: BTreeMap::new(),
        }
    }

    /// Bytes a window must carry over from the previous one so that nothing
    /// straddling the boundary is missed.
    pub(crate) fn overlap(&self) -> usize {
        let longest = self.canaries.iter().map(Vec::len).max().unwrap_or(0);
        // A multiple of 8 keeps windows aligned as the addresses are.
        (longest.max(HEX_LEN) - 1).next_multiple_of(8)
    }

    fn record(&mut self, what: Found, encoding: Encoding, address: u64, region: &str) {
        let slot = self
            .found
            .entry((what, encoding))
            .or_insert_with(|| (0, address, region.to_owned()));
        slot.0 += 1;
        if address < slot.1 {
            slot.1 = address;
            region.clone_into(&mut slot.2);
        }
    }

    fn test_key(&mut self, key: &[u8; 32], encoding: Encoding, address: u64, region: &str) {
        // A zero 8-byte word is 8 zero bytes, more than `plausible_key`
        // allows: the quick way past zero pages and small integers.
        if key.chunks_exact(8).any(|w| w == [0; 8]) || !plausible_key(key) {
            return;
        }
        self.tested += 1;
        if let Some(logged) = self.commitments.get(&commitment(key)).copied() {
            self.record(Found::Key(logged.period), encoding, address, region);
        }
    }

    /// Searches `window`, whose first byte is at `address`; its first
    /// `seen` bytes were the tail of the previous window, so only matches
    /// that end after them are new.
    pub(crate) fn scan(&mut self, window: &[u8], address: u64, seen: usize, region: &str) {
        let align = self.alignment as u64;
        let misalign = (align - address % align) % align;
        let mut p = misalign as usize;
        // Raw keys: matches that end in new bytes start after `seen - 32`.
        if seen >= KEY_LEN {
            p += (seen - KEY_LEN + 1)
                .saturating_sub(p)
                .next_multiple_of(self.alignment);
        }
        while p + KEY_LEN <= window.len() {
            if let Some(key) = window[p..].first_chunk::<KEY_LEN>() {
                self.test_key(key, Encoding::Raw, address + p as u64, region);
            }
            p += self.alignment;
        }
        // Hex keys: every 64-digit stretch of a run of hex digits.
        let mut run = 0usize;
        for (i, &b) in window.iter().enumerate() {
            if hex_digit(b).is_none() {
                run = 0;
                continue;
            }
            run += 1;
            let end = i + 1;
            if run >= HEX_LEN && end > seen {
                let start = end - HEX_LEN;
                let mut key = [0u8; KEY_LEN];
                for (k, pair) in key.iter_mut().zip(window[start..end].chunks_exact(2)) {
                    // Both are hex digits: the run says so.
                    let digit = |b| hex_digit(b).unwrap_or(0);
                    *k = digit(pair[0]) << 4 | digit(pair[1]);
                }
                self.test_key(&key, Encoding::Hex, address + start as u64, region);
            }
        }
        // Canaries, at every offset.
        for index in 0..self.canaries.len() {
            let len = self.canaries[index].len();
            let first = seen.saturating_sub(len - 1);
            let hits: Vec<usize> = window
                .get(first..)
                .unwrap_or_default()
                .windows(len)
                .enumerate()
                .filter(|(_, w)| *w == self.canaries[index].as_slice())
                .map(|(i, _)| first + i)
                .collect();
            for at in hits {
                self.record(
                    Found::Canary(index + 1),
                    Encoding::Text,
                    address + at as u64,
                    region,
                );
            }
        }
    }

    /// What was found: live keys, and failures.
    fn finish(self) -> (Vec<LiveKey>, Vec<MemoryFailure>, u64) {
        let destroyed: HashMap<PeriodId, bool> = self
            .commitments
            .values()
            .map(|l| (l.period, l.destroyed))
            .collect();
        let mut live = Vec::new();
        let mut failures = Vec::new();
        for ((what, encoding), (count, first_address, region)) in self.found {
            let copies = Copies {
                encoding,
                count,
                first_address,
                region,
            };
            match what {
                Found::Key(period) if destroyed.get(&period) == Some(&true) => {
                    failures.push(MemoryFailure::DestroyedKeyInMemory { period, copies });
                }
                Found::Key(period) => live.push(LiveKey { period, copies }),
                Found::Canary(canary) => {
                    failures.push(MemoryFailure::CanaryInMemory { canary, copies });
                }
            }
        }
        (live, failures, self.tested)
    }
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: u64,
    end: u64,
    name: String,
}

/// The mappings in a `/proc/PID/maps` listing. Inaccessible ones (`---p`)
/// are kept: a tracer may still read them through `/proc/PID/mem`, and a
/// secret hidden behind `mprotect(PROT_NONE)` is still in memory.
fn mappings(maps: impl std::io::BufRead) -> std::io::Result<Vec<Mapping>> {
    let mut out = Vec::new();
    for line in maps.lines() {
        let line = line?;
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(_perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        // offset, device, inode, then the path (which may hold spaces).
        let name = fields.skip(3).collect::<Vec<_>>().join(" ");
        out.push(Mapping {
            start,
            end,
            name: if name.is_empty() {
                "[anonymous]".to_owned()
            } else {
                name
            },
        });
    }
    Ok(out)
}

/// Why the process could not be read.
fn process_error(pid: u32, source: std::io::Error) -> InspectError {
    InspectError::Process { pid, source }
}

/// Inspects the memory of process `pid`, an issuer whose data directory is
/// `root` (its audit log gives the key commitments), for period keys and
/// for each of the `canaries`. Raw keys are tried at addresses that are
/// multiples of `alignment` (1 tries every byte). `progress` is called
/// after every chunk read.
pub fn inspect_memory(
    pid: u32,
    root: &Path,
    canaries: &[String],
    alignment: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<MemoryReport, InspectError> {
    if let Some(i) = canaries.iter().position(String::is_empty) {
        return Err(InspectError::EmptyCanary(i + 1));
    }
    let LoggedKeys {
        failures: log_failures,
        destroyed,
        commitments,
        ..
    } = LoggedKeys::read(root)?;
    let mut failures: Vec<MemoryFailure> = log_failures
        .into_iter()
        .map(|f| MemoryFailure::LogMalformed {
            detail: match f {
                InspectFailure::LogMalformed { detail } => detail,
                other => other.to_string(),
            },
        })
        .collect();
    let mut logged = Vec::new();
    for (period, list) in &commitments {
        for text in list {
            let mut c = [0u8; 32];
            if hex::decode_to_slice(text, &mut c).is_err() {
                failures.push(MemoryFailure::LogMalformed {
                    detail: format!("period {period}'s key commitment is not 64 hex digits"),
                });
                continue;
            }
            logged.push((c, *period, destroyed.contains(period)));
        }
    }
    let live_periods = commitments
        .keys()
        .filter(|p| !destroyed.contains(p))
        .count();
    let mut scanner = Scanner::new(logged, canaries, alignment);

    let proc = Path::new("/proc").join(pid.to_string());
    let maps = File::open(proc.join("maps")).map_err(|e| process_error(pid, e))?;
    let mappings = mappings(BufReader::new(maps)).map_err(|e| process_error(pid, e))?;
    let mem = File::open(proc.join("mem")).map_err(|e| process_error(pid, e))?;
    let total: u64 = mappings.iter().map(|m| m.end - m.start).sum();
    let started = Instant::now();
    let overlap = scanner.overlap();
    let mut window = vec![0u8; overlap + CHUNK];
    let (mut scanned, mut unreadable, mut done) = (0u64, 0u64, 0u64);
    for mapping in &mappings {
        let mut address = mapping.start;
        let mut carried = 0usize;
        while address < mapping.end {
            let want = usize::try_from(mapping.end - address)
                .unwrap_or(usize::MAX)
                .min(CHUNK);
            let read = read_fully(&mem, &mut window[carried..carried + want], address);
            if read == 0 {
                // Unreadable ([vvar], [vsyscall], or unmapped since the
                // listing): skip this chunk and start afresh after it.
                unreadable += want as u64;
                carried = 0;
            } else {
                scanner.scan(
                    &window[..carried + read],
                    address - carried as u64,
                    carried,
                    &mapping.name,
                );
                scanned += read as u64;
                unreadable += (want - read) as u64;
                let keep = if read == want {
                    overlap.min(carried + read)
                } else {
                    0
                };
                window.copy_within(carried + read - keep..carried + read, 0);
                carried = keep;
            }
            address += want as u64;
            done += want as u64;
            progress(Progress { done, total });
        }
    }
    // The last window may hold the very bytes looked for: wipe it.
    window.fill(0);
    let (live_keys, found, tested) = scanner.finish();
    failures.extend(found);
    Ok(MemoryReport {
        pid,
        mappings: mappings.len(),
        bytes_scanned: scanned,
        bytes_unreadable: unreadable,
        elapsed_ms: started.elapsed().as_millis() as u64,
        alignment: alignment.max(1),
        live_periods,
        destroyed_periods: destroyed.len(),
        candidates_tested: tested,
        canaries: canaries.len(),
        live_keys,
        failures,
    })
}

/// Reads as much of `buf` from `address` as the process lets us, stopping
/// at the first error or short read; returns how much was read.
fn read_fully(mem: &File, buf: &mut [u8], address: u64) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match mem.read_at(&mut buf[got..], address + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::secret::PeriodKey;

    fn random_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        key
    }

    /// A buffer that looks like a process's memory: zeros, pointers, text.
    fn background(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(&(0x7f00_1234_0000 + i * 48).to_le_bytes());
            out.extend_from_slice(&[0; 16]);
            out.extend_from_slice(b"some text, ");
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn the_commitment_is_the_one_the_issuer_logs() {
        let key = random_key();
        assert_eq!(
            hex::encode(commitment(&key)),
            crate::issuer::key_commitment(&PeriodKey::from_bytes(key))
        );
    }

    #[test]
    fn random_keys_pass_the_filter_and_structured_memory_does_not() {
        assert!((0..100_000).all(|_| plausible_key(&random_key())));
        let bg = background(1 << 16);
        assert!(
            bg.windows(32)
                .filter_map(|w| w.first_chunk::<32>())
                .all(|w| !plausible_key(w))
        );
        let mut ascending = [0u8; 32];
        for (i, b) in ascending.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        assert!(!plausible_key(&ascending), "no high bits");
    }

    fn scan_all(scanner: &mut Scanner, memory: &[u8], address: u64, chunk: usize) {
        // Window by window, as `inspect_memory` does, so a planted value
        // may straddle two windows.
        let overlap = scanner.overlap();
        let mut carried: Vec<u8> = Vec::new();
        let mut at = 0;
        while at < memory.len() {
            let end = (at + chunk).min(memory.len());
            let mut window = carried.clone();
            window.extend_from_slice(&memory[at..end]);
            let seen = carried.len();
            scanner.scan(&window, address + at as u64 - seen as u64, seen, "[heap]");
            let keep = overlap.min(window.len());
            carried = window[window.len() - keep..].to_vec();
            at = end;
        }
    }

    #[test]
    fn planted_keys_and_canaries_are_found_live_or_destroyed() {
        let (live, gone, absent) = (random_key(), random_key(), random_key());
        let (live_id, gone_id, absent_id) = (
            PeriodId::generate(),
            PeriodId::generate(),
            PeriodId::generate(),
        );
        let mut memory = background(3 << 20);
        // The live key raw at an 8-aligned address, the destroyed key raw
        // and also as hex inside JSON, a canary at an odd offset; each
        // placed across a window boundary (windows of 1 MiB below).
        let boundary = 1 << 20;
        memory[boundary - 16..boundary + 16].copy_from_slice(&live);
        let json = format!("{{\"key\":\"{}\"}}", hex::encode(gone));
        memory[2 * boundary - 30..2 * boundary - 30 + json.len()].copy_from_slice(json.as_bytes());
        memory[40_000..40_032].copy_from_slice(&gone);
        memory[boundary + 4_001..boundary + 4_014].copy_from_slice(b"Ivan Petrovic");
        let mut scanner = Scanner::new(
            [
                (commitment(&live), live_id, false),
                (commitment(&gone), gone_id, true),
                (commitment(&absent), absent_id, true),
            ],
            &["Ivan Petrovic".to_owned(), "not there".to_owned()],
            8,
        );
        let base = 0x5555_0000_0000;
        scan_all(&mut scanner, &memory, base, boundary);
        let (live_keys, failures, tested) = scanner.finish();
        assert!(tested < 100, "the filter let {tested} candidates through");
        let copies = |encoding, count, offset: usize| Copies {
            encoding,
            count,
            first_address: base + offset as u64,
            region: "[heap]".into(),
        };
        assert_eq!(
            live_keys,
            vec![LiveKey {
                period: live_id,
                copies: copies(Encoding::Raw, 1, boundary - 16)
            }]
        );
        let mut expected = vec![
            MemoryFailure::DestroyedKeyInMemory {
                period: gone_id,
                copies: copies(Encoding::Raw, 1, 40_000),
            },
            MemoryFailure::DestroyedKeyInMemory {
                period: gone_id,
                copies: copies(Encoding::Hex, 1, 2 * boundary - 30 + 8),
            },
            MemoryFailure::CanaryInMemory {
                canary: 1,
                copies: copies(Encoding::Text, 1, boundary + 4_001),
            },
        ];
        let mut failures = failures;
        let key = |f: &MemoryFailure| format!("{f:?}");
        failures.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(failures, expected);
    }

    #[test]
    fn unaligned_keys_need_every_offset() {
        let key = random_key();
        let id = PeriodId::generate();
        let mut memory = background(4096);
        memory[1_001..1_033].copy_from_slice(&key);
        for (alignment, found) in [(8, 0), (1, 1)] {
            let mut scanner = Scanner::new([(commitment(&key), id, true)], &[], alignment);
            scan_all(&mut scanner, &memory, 0x1000, 1024);
            let (_, failures, _) = scanner.finish();
            assert_eq!(failures.len(), found, "alignment {alignment}");
        }
    }

    #[test]
    fn every_failure_serializes_with_one_kind() {
        let copies = Copies {
            encoding: Encoding::Hex,
            count: 2,
            first_address: 0x1000,
            region: "[heap]".into(),
        };
        for (failure, kind) in [
            (
                MemoryFailure::DestroyedKeyInMemory {
                    period: PeriodId::generate(),
                    copies: copies.clone(),
                },
                "destroyed-key-in-memory",
            ),
            (
                MemoryFailure::CanaryInMemory { canary: 1, copies },
                "canary-in-memory",
            ),
            (
                MemoryFailure::LogMalformed {
                    detail: "entry 3 does not parse".into(),
                },
                "log-malformed",
            ),
        ] {
            let json = serde_json::to_string(&failure).unwrap();
            assert_eq!(json.matches("\"kind\"").count(), 1, "{json}");
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(value["kind"], kind);
        }
    }

    #[test]
    fn maps_lines_are_parsed_inaccessible_ones_too() {
        let maps = "\
5555d000-5555e000 r--p 00000000 08:01 1234  /usr/bin/blind pass
7f00a000-7f00b000 ---p 00000000 00:00 0
7f00b000-7f00c000 rw-p 00000000 00:00 0
7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]
";
        let got = mappings(maps.as_bytes()).unwrap();
        assert_eq!(
            got,
            vec![
                Mapping {
                    start: 0x5555d000,
                    end: 0x5555e000,
                    name: "/usr/bin/blind pass".into()
                },
                Mapping {
                    start: 0x7f00a000,
                    end: 0x7f00b000,
                    name: "[anonymous]".into()
                },
                Mapping {
                    start: 0x7f00b000,
                    end: 0x7f00c000,
                    name: "[anonymous]".into()
                },
                Mapping {
                    start: 0x7ffd1000,
                    end: 0x7ffd2000,
                    name: "[stack]".into()
                },
            ]
        );
    }
}
