//! The key ring: every live period key with its destruction deadline, the
//! signing keys, and the audit log's signing seed — one small file sealed
//! under the master key. Destroyed periods remain only as tombstones (id,
//! dates), never with a key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, PrimitiveDateTime};
use zeroize::{Zeroize, Zeroizing};

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
    /// The destruction deadline: end plus grace, or the last instant `time`
    /// can represent when that lies beyond it (an `ends_at` in 9999 from an
    /// admin request), where a plain addition would panic.
    pub fn deadline(&self) -> OffsetDateTime {
        let grace = Duration::seconds(i64::try_from(self.grace_s).unwrap_or(i64::MAX));
        self.ends_at
            .checked_add(grace)
            .unwrap_or(PrimitiveDateTime::MAX.assume_utc())
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
                    key: Zeroizing::new(hex::encode(p.key.expose_secret())),
                    destroy_pending: p.destroy_pending,
                })
                .collect(),
            destroyed: self.destroyed.clone(),
            signing_keys: Vec::with_capacity(self.signing_keys.len()),
            log_seed: Zeroizing::new(hex::encode(self.log_seed.expose_secret())),
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
        let bytes = serde_json::to_vec(&file).map_err(|_| VaultError::Corrupt("key ring"))?;
        Ok(SecretBytes::new(bytes))
    }

    /// Parses what [`KeyRing::to_bytes`] wrote.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
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
                key: PeriodKey::from_bytes(hex_32(&p.key)?),
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
            log_seed: LogSigningSeed::from_bytes(hex_32(&file.log_seed)?),
        })
    }
}

impl Default for KeyRing {
    fn default() -> Self {
        Self::new()
    }
}

fn hex_32(text: &str) -> Result<[u8; 32], VaultError> {
    let mut bytes = Zeroizing::new(hex::decode(text).map_err(|_| VaultError::Corrupt("key"))?);
    let out: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::Corrupt("key length"))?;
    bytes.zeroize();
    Ok(out)
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
