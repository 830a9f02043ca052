//! Residents' records: enrolment into a record sealed under its own key
//! (derived from the period key), the keyed-hash index that finds it by
//! document, reading it back, and erasing it.

use super::resident::PersonalData;
use super::{Authority, IssuerError};
use crate::crypto::kdf;
use crate::crypto::secret::{DerivedKey, PeriodKey, SecretBytes};
use crate::crypto::{CryptoError, seal};
use crate::ids::{PeriodId, ResidentId};

/// A decrypted resident record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResidentRecord {
    /// Personal data.
    pub personal: PersonalData,
    /// Argon2id PHC string of the resident's password, if one was set.
    pub password_hash: Option<String>,
}

fn record_aad(period: &PeriodId, id: &ResidentId) -> Vec<u8> {
    let mut aad = b"blindpass-record-v1".to_vec();
    aad.extend_from_slice(period.as_bytes());
    aad.extend_from_slice(id.as_bytes());
    aad
}

fn record_key(period_key: &PeriodKey, id: &ResidentId) -> DerivedKey {
    kdf::derive(period_key.expose_secret(), "record", id.as_bytes())
}

fn index_key(period_key: &PeriodKey, label: &str, value: &str) -> [u8; 32] {
    let key = kdf::derive(period_key.expose_secret(), "index", label.as_bytes());
    kdf::hmac_sha256(key.expose_secret(), &[value.as_bytes()])
}

impl Authority {
    /// Enrols a resident into `period`: validates, refuses a second
    /// enrolment of the same document (keyed-hash index), seals the record
    /// under its own key, and stores only ciphertext.
    pub fn enrol(
        &self,
        period: &PeriodId,
        personal: PersonalData,
        password_hash: Option<String>,
    ) -> Result<ResidentId, IssuerError> {
        let key = self.period_key(period)?;
        let needs_employer = false;
        personal.validate(self.now().date(), needs_employer)?;
        let id = ResidentId::generate();
        let doc_index = index_key(&key, "document", &personal.normalized_document());
        if !self.store.index_claim(period, &doc_index, id.as_bytes())? {
            return Err(IssuerError::DuplicateDocument);
        }
        let record = ResidentRecord {
            personal,
            password_hash,
        };
        let result = self.write_record(period, &key, &id, &record);
        if result.is_err() {
            // Leave no index entry pointing at a record that was never written.
            self.store.index_remove(period, &doc_index)?;
        }
        result.map(|()| id)
    }

    fn write_record(
        &self,
        period: &PeriodId,
        key: &PeriodKey,
        id: &ResidentId,
        record: &ResidentRecord,
    ) -> Result<(), IssuerError> {
        let plain = SecretBytes::new(
            serde_json::to_vec(record).map_err(|_| IssuerError::Crypto(CryptoError::Failed))?,
        );
        let sealed = seal::seal(
            record_key(key, id).expose_secret(),
            &record_aad(period, id),
            plain.expose_secret(),
        )?;
        self.store.put_record(period, id, &sealed)?;
        Ok(())
    }

    /// Decrypts a resident's record.
    pub fn record(
        &self,
        period: &PeriodId,
        id: &ResidentId,
    ) -> Result<ResidentRecord, IssuerError> {
        let key = self.period_key(period)?;
        let sealed = self
            .store
            .record(period, id)?
            .ok_or(IssuerError::UnknownResident)?;
        let plain = seal::open(
            record_key(&key, id).expose_secret(),
            &record_aad(period, id),
            &sealed,
        )?;
        serde_json::from_slice(plain.expose_secret()).map_err(|_| CryptoError::Failed.into())
    }

    /// A keyed hash of `value` under the period's index key for `label`:
    /// lookups without storing the value. Used for sessions and quotas.
    pub fn period_index(
        &self,
        period: &PeriodId,
        label: &str,
        value: &str,
    ) -> Result<[u8; 32], IssuerError> {
        Ok(index_key(&self.period_key(period)?, label, value))
    }

    /// Erases one resident before the period ends: removes the record and
    /// its index entry. (The bytes may linger in sled's files until the
    /// period key is destroyed; see the threat model.)
    pub fn erase_resident(&self, period: &PeriodId, id: &ResidentId) -> Result<(), IssuerError> {
        let record = self.record(period, id)?;
        let key = self.period_key(period)?;
        let doc_index = index_key(&key, "document", &record.personal.normalized_document());
        self.store.index_remove(period, &doc_index)?;
        self.store.remove_record(period, id)?;
        self.store.durable()?;
        Ok(())
    }
}
