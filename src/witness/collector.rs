//! The issuer's side of witnessing: a background thread that, after every
//! append to the audit log (it looks every [`POLL`]) and at least every
//! `interval`, sends the current checkpoint with a consistency proof to each
//! witness of the policy, and keeps the checkpoint with every valid
//! cosignature it got for `/audit/checkpoint`.
//!
//! Nothing waits for it: issuance and destruction append to the journal and
//! return; a witness that is down, slow (each request has a timeout) or
//! refuses only leaves its cosignature off, and is reported in the log
//! (its name and the HTTP status, nothing else) and in the event counters
//! `witness_cosigned`, `witness_refused` and `witness_unreachable`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signed_note::{Note, Verifier as _};

use super::encode_add_request;
use super::policy::{PolicyWitness, WitnessPolicy};
use crate::audit::Journal;

/// How often the thread looks for a grown log.
pub const POLL: Duration = Duration::from_millis(100);

/// Largest witness answer read (a few signature lines).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// The latest checkpoint with the cosignatures collected for it.
#[derive(Debug, Default)]
pub struct Cosigned {
    latest: Mutex<Option<Vec<u8>>>,
}

impl Cosigned {
    /// The latest collected note (the log's signature and every valid
    /// cosignature), once a round has run.
    pub fn latest(&self) -> Option<Vec<u8>> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, note: Vec<u8>) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(note);
    }
}

/// How the collector runs.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// The witnesses (only those with a URL are asked).
    pub policy: WitnessPolicy,
    /// Longest time between two rounds when the log does not grow.
    pub interval: Duration,
    /// Time allowed for one witness to answer.
    pub timeout: Duration,
}

/// What one witness did in a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It cosigned; the signature line.
    Cosigned(Vec<u8>),
    /// It answered with a refusal (status code).
    Refused(u16),
    /// It could not be reached, or its answer was unusable.
    Unreachable(String),
}

/// Where a witness's state stands, as far as the collector knows.
struct Peer {
    witness: PolicyWitness,
    url: String,
    /// The size the witness holds (learnt from a 409 or a cosignature).
    old_size: u64,
}

/// A handle that stops the thread when dropped.
#[derive(Debug)]
pub struct Collector {
    stop: Arc<AtomicBool>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Whatever holds the audit log the collector reads.
pub trait JournalSource: Send + Sync + 'static {
    /// The journal.
    fn journal(&self) -> &Journal;
}

impl JournalSource for Journal {
    fn journal(&self) -> &Journal {
        self
    }
}

/// Starts the collector over the journal of `source`. `count` is called
/// with an event counter name for each witness answer.
pub fn spawn<S: JournalSource>(
    source: Arc<S>,
    config: CollectorConfig,
    cosigned: Arc<Cosigned>,
    count: impl Fn(&'static str) + Send + 'static,
) -> std::io::Result<Collector> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let mut peers: Vec<Peer> = config
        .policy
        .witnesses()
        .iter()
        .filter_map(|w| {
            w.url.clone().map(|url| Peer {
                witness: w.clone(),
                url,
                old_size: 0,
            })
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(config.timeout))
        .build()
        .into();
    std::thread::Builder::new()
        .name("witness-collector".into())
        .spawn(move || {
            let mut last: Option<(u64, Instant)> = None;
            while !stopping.load(Ordering::Relaxed) {
                let journal = source.journal();
                let size = journal.size();
                let due =
                    last.is_none_or(|(seen, at)| seen != size || at.elapsed() >= config.interval);
                if due {
                    match journal.sized_checkpoint() {
                        Ok((size, note)) => {
                            let collected = round(&agent, journal, size, &note, &mut peers, &count);
                            cosigned.set(collected);
                            last = Some((size, Instant::now()));
                        }
                        Err(e) => tracing::error!(error = %e, "checkpoint for witnesses failed"),
                    }
                }
                std::thread::sleep(POLL);
            }
        })?;
    Ok(Collector { stop })
}

/// Asks every peer at once; returns the note with the valid cosignatures.
fn round(
    agent: &ureq::Agent,
    journal: &Journal,
    size: u64,
    note: &[u8],
    peers: &mut [Peer],
    count: &(impl Fn(&'static str) + Send),
) -> Vec<u8> {
    let text = match Note::from_bytes(note) {
        Ok(parsed) => parsed.text().to_vec(),
        Err(_) => return note.to_vec(),
    };
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = peers
            .iter_mut()
            .map(|peer| scope.spawn(|| submit(agent, journal, size, note, &text, peer)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Outcome::Unreachable("submission panicked".into()))
            })
            .collect()
    });
    let mut collected = note.to_vec();
    for (peer, outcome) in peers.iter().zip(outcomes) {
        let name = peer.witness.verifier.name();
        match outcome {
            Outcome::Cosigned(line) => {
                count("witness_cosigned");
                tracing::debug!(witness = name, size, "cosigned");
                collected.extend_from_slice(&line);
            }
            Outcome::Refused(status) => {
                count("witness_refused");
                tracing::warn!(
                    witness = name,
                    size,
                    status,
                    "witness refused the checkpoint"
                );
            }
            Outcome::Unreachable(detail) => {
                count("witness_unreachable");
                tracing::warn!(witness = name, size, error = %detail, "witness unreachable");
            }
        }
    }
    collected
}

/// One submission, retried once with the size a 409 names.
fn submit(
    agent: &ureq::Agent,
    journal: &Journal,
    size: u64,
    note: &[u8],
    text: &[u8],
    peer: &mut Peer,
) -> Outcome {
    let url = format!(
        "{}{}",
        peer.url.trim_end_matches('/'),
        crate::protocol::api::paths::WITNESS_ADD_CHECKPOINT
    );
    for _ in 0..2 {
        if peer.old_size > size {
            // The witness holds a larger tree than this log has: a rollback
            // it will never cosign. Learn again next round.
            peer.old_size = 0;
            return Outcome::Refused(409);
        }
        let proof = match journal.consistency_proof(peer.old_size, size) {
            Ok(proof) => proof,
            Err(e) => return Outcome::Unreachable(format!("proof: {e}")),
        };
        let body = encode_add_request(peer.old_size, &proof, note);
        let response = match agent
            .post(&url)
            .header("content-type", "text/plain; charset=utf-8")
            .send(body.as_slice())
        {
            Ok(r) => r,
            Err(e) => return Outcome::Unreachable(e.to_string()),
        };
        let status = response.status().as_u16();
        let answer = match response
            .into_body()
            .into_with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
        {
            Ok(a) => a,
            Err(e) => return Outcome::Unreachable(e.to_string()),
        };
        match status {
            200 => {
                return match valid_line(&peer.witness, text, &answer) {
                    Some(line) => {
                        peer.old_size = size;
                        Outcome::Cosigned(line)
                    }
                    None => Outcome::Unreachable("no valid cosignature in the answer".into()),
                };
            }
            409 => {
                let held = std::str::from_utf8(&answer)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok());
                match held {
                    Some(held) if held != peer.old_size => peer.old_size = held,
                    _ => return Outcome::Refused(409),
                }
            }
            status => {
                if matches!(status, 400 | 422) {
                    // Perhaps our idea of its size is stale: start over.
                    peer.old_size = 0;
                }
                return Outcome::Refused(status);
            }
        }
    }
    Outcome::Refused(409)
}

/// The first signature line of `answer` that is a valid cosignature of
/// `text` by `witness`.
fn valid_line(witness: &PolicyWitness, text: &[u8], answer: &[u8]) -> Option<Vec<u8>> {
    answer
        .split_inclusive(|b| *b == b'\n')
        .filter(|line| line.ends_with(b"\n"))
        .find(|line| {
            signed_note::Signature::from_bytes(&line[..line.len() - 1]).is_ok_and(|sig| {
                sig.name() == witness.verifier.name()
                    && sig.id() == witness.verifier.key_id()
                    && witness.verifier.verify(text, sig.signature())
            })
        })
        .map(<[u8]>::to_vec)
}
