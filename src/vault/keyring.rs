//! The key ring: every live period key with its destruction deadline, the
//! signing keys, and the audit log's signing seed — one small file sealed
//! under the master key. Destroyed periods remain only as tombstones (id,
//! dates), never with a key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::VaultError;
use crate::crypto::blind::IssuerSigningKey;
use crate::crypto::secret::{LogSigningSeed, PeriodKey, SecretBytes};
use crate::ids::PeriodId;
use crate::protocol::permit::{ClassName, Window};

/// An isolation period whose key is still held.
#[derive(Clone, Debug)]
pub struct LivePeriod {
    /// Random id.
    pub id: PeriodId,
    /// The operator's label, e.g. `lockdown-2026-12`.
    pub name: String,
    /// When it was opened.
    pub opened_at: OffsetDateTime,
    /// When the isolation period ends.
    pub ends_at: OffsetDateTime,
    /// How long after the end the data is kept (appeals, late corrections).
    pub grace_s: u64,
    /// `K_P`.
    pub key: PeriodKey,
    /// Destruction was started and must be finished, whatever the clock says.
    pub destroy_pending: bool,
}

impl LivePeriod {
    /// The destruction deadline: end plus grace. New periods are range
    /// checked so the sum always exists; a ring written before that check
    /// may hold one whose sum does not, and its deadline is then its end:
    /// the key dies no later than meant (the safe side), and nothing
    /// panics or saturates.
    pub fn deadline(&self) -> OffsetDateTime {
        i64::try_from(self.grace_s)
            .ok()
            .and_then(|s| self.ends_at.checked_add(Duration::seconds(s)))
            .unwrap_or(self.ends_at)
    }
}

/// What remains of a destroyed period: when, never the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedPeriod {
    /// Random id.
    pub id: PeriodId,
    /// The operator's label.
    pub name: String,
    /// When it was opened.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// The deadline it had.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    /// When its key was destroyed.
    #[serde(with = "time::serde::rfc3339")]
    pub destroyed_at: OffsetDateTime,
}

/// One issuer signing key and what its passes mean.
#[derive(Clone, Debug)]
pub struct SigningKeyEntry {
    /// The class its passes grant.
    pub class: ClassName,
    /// The window its passes are valid in.
    pub window: Window,
    /// The RSA key.
    pub key: IssuerSigningKey,
}

/// The decrypted key ring.
#[derive(Clone, Debug)]
pub struct KeyRing {
    /// Periods whose keys are live.
    pub periods: Vec<LivePeriod>,
    /// Tombstones of destroyed periods.
    pub destroyed: Vec<DestroyedPeriod>,
    /// Issuer signing keys.
    pub signing_keys: Vec<SigningKeyEntry>,
    /// Seed of the audit log's Ed25519 key.
    pub log_seed: LogSigningSeed,
}

impl KeyRing {
    /// An empty ring with a fresh audit-log seed.
    pub fn new() -> Self {
        Self {
            periods: Vec::new(),
            destroyed: Vec::new(),
            signing_keys: Vec::new(),
            log_seed: LogSigningSeed::generate(),
        }
    }

    /// A live period by id.
    pub fn period(&self, id: &PeriodId) -> Option<&LivePeriod> {
        self.periods.iter().find(|p| &p.id == id)
    }

    /// Serializes the ring (secrets included) into a buffer wiped on drop.
    pub(crate) fn to_bytes(&self) -> Result<SecretBytes, VaultError> {
        let mut file = RingFile {
            format: RING_FORMAT.into(),
            periods: self
                .periods
                .iter()
                .map(|p| StoredPeriod {
                    id: p.id,
                    name: p.name.clone(),
                    opened_at: p.opened_at,
                    ends_at: p.ends_at,
                    grace_s: p.grace_s,
                    key: hex_secret(p.key.expose_secret()),
                    destroy_pending: p.destroy_pending,
                })
                .collect(),
            destroyed: self.destroyed.clone(),
            signing_keys: Vec::with_capacity(self.signing_keys.len()),
            log_seed: hex_secret(self.log_seed.expose_secret()),
        };
        for k in &self.signing_keys {
            let der = k
                .key
                .to_der()
                .map_err(|_| VaultError::Corrupt("signing key"))?;
            file.signing_keys.push(StoredSigningKey {
                class: k.class.clone(),
                window: k.window,
                der: Zeroizing::new(STANDARD.encode(der.expose_secret())),
            });
        }
        // Measured first, then written into a buffer of exactly that size:
        // a growing buffer would leave copies of the keys in every block it
        // outgrew, freed without being wiped.
        let mut size = ByteCount(0);
        serde_json::to_writer(&mut size, &file).map_err(|_| VaultError::Corrupt("key ring"))?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(size.0));
        serde_json::to_writer(&mut *bytes, &file).map_err(|_| VaultError::Corrupt("key ring"))?;
        Ok(SecretBytes::from(bytes))
    }

    /// Parses what [`KeyRing::to_bytes`] wrote (the decrypted ring file);
    /// anything else is [`VaultError::Corrupt`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        let file: RingFile =
            serde_json::from_slice(bytes).map_err(|_| VaultError::Corrupt("key ring"))?;
        if file.format != RING_FORMAT {
            return Err(VaultError::Corrupt("key ring format"));
        }
        let mut periods = Vec::with_capacity(file.periods.len());
        for p in &file.periods {
            periods.push(LivePeriod {
                id: p.id,
                name: p.name.clone(),
                opened_at: p.opened_at,
                ends_at: p.ends_at,
                grace_s: p.grace_s,
                key: hex_key(&p.key, PeriodKey::from_slice)?,
                destroy_pending: p.destroy_pending,
            });
        }
        let mut signing_keys = Vec::with_capacity(file.signing_keys.len());
        for k in &file.signing_keys {
            let der = Zeroizing::new(
                STANDARD
                    .decode(k.der.as_bytes())
                    .map_err(|_| VaultError::Corrupt("signing key"))?,
            );
            signing_keys.push(SigningKeyEntry {
                class: k.class.clone(),
                window: k.window,
                key: IssuerSigningKey::from_der(&der)
                    .map_err(|_| VaultError::Corrupt("signing key"))?,
            });
        }
        Ok(Self {
            periods,
            destroyed: file.destroyed.clone(),
            signing_keys,
            log_seed: hex_key(&file.log_seed, LogSigningSeed::from_slice)?,
        })
    }
}

impl Default for KeyRing {
    fn default() -> Self {
        Self::new()
    }
}

/// Lower-case hex of secret bytes, written into a string of exactly the
/// right size (no growth, so no stray copies) that is wiped on drop.
fn hex_secret(bytes: &[u8]) -> Zeroizing<String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// An `io::Write` that only counts what it is given.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a hex key into its own cell; the decoded bytes pass only
/// through a buffer wiped on drop.
fn hex_key<K>(text: &str, wrap: impl FnOnce(&[u8]) -> Option<K>) -> Result<K, VaultError> {
    let bytes = Zeroizing::new(hex::decode(text).map_err(|_| VaultError::Corrupt("key"))?);
    wrap(&bytes).ok_or(VaultError::Corrupt("key length"))
}

const RING_FORMAT: &str = "blindpass-keyring-v1";

#[derive(Serialize, Deserialize)]
struct RingFile {
    format: String,
    periods: Vec<StoredPeriod>,
    destroyed: Vec<DestroyedPeriod>,
    signing_keys: Vec<StoredSigningKey>,
    log_seed: Zeroizing<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredPeriod {
    id: PeriodId,
    name: String,
    #[serde(with = "time::serde::rfc3339")]
    opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    ends_at: OffsetDateTime,
    grace_s: u64,
    key: Zeroizing<String>,
    destroy_pending: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredSigningKey {
    class: ClassName,
    window: Window,
    der: Zeroizing<String>,
}
