//! Residents' accounts, still without HTTP: passwords (Argon2id, checked
//! at login only) and sessions (random tokens stored only as hashes, with
//! an expiry). Sessions live in the period's state tree and die with it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use super::resident::{FieldError, PersonalData};
use super::{Authority, IssuerError};
use crate::crypto::kdf::{self, Argon2Params};
use crate::crypto::secret::{Passphrase, random_32};
use crate::ids::{PeriodId, ResidentId};
use crate::store::StoreError;

// Issuance lived here before it had its own file.
pub use super::issuance::{ReplayedPass, Signed, UncommittedPass};

/// Minimum password length in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Hashes a resident's password: `argon2id$m,t,p$salt$hash` (base64).
pub fn hash_password(password: &Passphrase, params: Argon2Params) -> Result<String, IssuerError> {
    let salt = random_32();
    let hash = kdf::argon2id(password, &salt[..16], params)?;
    Ok(format!(
        "argon2id${},{},{}${}${}",
        params.m_cost_kib,
        params.t_cost,
        params.p_cost,
        STANDARD_NO_PAD.encode(&salt[..16]),
        STANDARD_NO_PAD.encode(hash.expose_secret())
    ))
}

/// Checks a password against [`hash_password`]'s output in constant time.
pub fn verify_password(password: &Passphrase, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [algo, costs, salt, hash] = parts.as_slice() else {
        return false;
    };
    let costs: Vec<u32> = costs.split(',').filter_map(|c| c.parse().ok()).collect();
    let ([m_cost_kib, t_cost, p_cost], true) = (costs.as_slice(), *algo == "argon2id") else {
        return false;
    };
    let params = Argon2Params {
        m_cost_kib: *m_cost_kib,
        t_cost: *t_cost,
        p_cost: *p_cost,
    };
    let (Ok(salt), Ok(expected)) = (STANDARD_NO_PAD.decode(salt), STANDARD_NO_PAD.decode(hash))
    else {
        return false;
    };
    match kdf::argon2id(password, &salt, params) {
        Ok(actual) => actual.expose_secret().ct_eq(expected.as_slice()).into(),
        Err(_) => false,
    }
}

/// A logged-in resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOwner {
    /// The period the resident is enrolled in.
    pub period: PeriodId,
    /// The resident.
    pub resident: ResidentId,
    /// Keyed hash (under the period key) of the resident's document
    /// number, fixed at login: quotas count per document, so erasing and
    /// enrolling again does not reset them.
    pub quota_subject: [u8; 32],
    /// The enrolment has an employer tax number (eligibility for `work`).
    pub has_employer: bool,
}

/// A new session's bearer token, shown to the resident once.
#[derive(Clone)]
pub struct NewSession {
    /// `<period id>.<random>`; the period part routes the lookup.
    pub token: String,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSession {
    resident: ResidentId,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    /// Keyed hash of the document number: what quotas count against.
    quota_subject: String,
    /// Whether the enrolment has an employer tax number.
    has_employer: bool,
}

const SESSION_PREFIX: u8 = b's';

fn session_key(token: &str) -> Vec<u8> {
    let mut key = vec![SESSION_PREFIX];
    key.extend_from_slice(&Sha256::digest(token.as_bytes()));
    key
}

impl Authority {
    /// Enrols into the current period with a password; `needs_employer` is
    /// never required at enrolment (a class that needs it checks at issuance).
    pub fn enrol_with_password(
        &self,
        personal: PersonalData,
        password: &Passphrase,
        params: Argon2Params,
    ) -> Result<(PeriodId, ResidentId), IssuerError> {
        if password.char_count() < MIN_PASSWORD_CHARS {
            return Err(FieldError {
                field: "password",
                rule: "must be at least 10 characters",
            }
            .into());
        }
        let period = self.current_period()?;
        // Validate before paying for Argon2.
        personal.validate(self.now().date(), false)?;
        let hash = hash_password(password, params)?;
        let id = self.enrol(&period, personal, Some(hash))?;
        // Acknowledge an enrolment only once it is on disk (bulk callers of
        // `enrol` flush once at the end instead).
        self.store.durable()?;
        Ok((period, id))
    }

    /// Finds a resident of the current period by document number.
    fn resident_by_document(
        &self,
        document_number: &str,
    ) -> Result<Option<(PeriodId, ResidentId)>, IssuerError> {
        let period = self.current_period()?;
        let probe = PersonalData {
            full_name: String::new(),
            date_of_birth: time::Date::MIN,
            document_number: document_number.to_owned(),
            address: String::new(),
            phone: String::new(),
            employer_tax_number: None,
        };
        let index = self.period_index(&period, "document", &probe.normalized_document())?;
        let Some(value) = self.store.index_get(&period, &index)? else {
            return Ok(None);
        };
        let bytes: [u8; 16] = value
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("document index"))?;
        Ok(ResidentId::parse(&hex::encode(bytes)).map(|id| (period, id)))
    }

    /// Checks a password and opens a session. Unknown document and wrong
    /// password are the same error, and both cost one Argon2 run, so the
    /// answer time does not tell which.
    pub fn login(
        &self,
        document_number: &str,
        password: &Passphrase,
        ttl: Duration,
        params: Argon2Params,
    ) -> Result<Option<NewSession>, IssuerError> {
        let found = self.resident_by_document(document_number)?;
        let record = match &found {
            Some((period, id)) => Some(self.record(period, id)?),
            None => None,
        };
        let stored_hash = record.as_ref().and_then(|r| r.password_hash.clone());
        let ok = match &stored_hash {
            Some(hash) => verify_password(password, hash),
            None => {
                // Spend the same work on a dummy so timing does not reveal enrolment.
                let _ = hash_password(password, params);
                false
            }
        };
        let (Some((period, resident)), Some(record), true) = (found, record, ok) else {
            return Ok(None);
        };
        let token = format!("{period}.{}", URL_SAFE_NO_PAD.encode(random_32()));
        let expires_at = self.now() + ttl;
        let quota_subject = self.period_index(
            &period,
            "quota-subject",
            &record.personal.normalized_document(),
        )?;
        let value = serde_json::to_vec(&StoredSession {
            resident,
            expires_at,
            quota_subject: hex::encode(quota_subject),
            has_employer: record.personal.employer_tax_number.is_some(),
        })
        .map_err(|_| StoreError::Corrupt("session"))?;
        self.store
            .state_insert(&period, &session_key(&token), &value)?;
        self.store.durable()?;
        Ok(Some(NewSession { token, expires_at }))
    }

    /// Resolves a bearer token. `Ok(None)` for unknown tokens; expired ones
    /// are removed and reported as [`IssuerError::SessionExpired`].
    pub fn session(&self, token: &str) -> Result<Option<SessionOwner>, IssuerError> {
        let Some(period) = token.split('.').next().and_then(PeriodId::parse) else {
            return Ok(None);
        };
        if self.period_info(&period).is_none() {
            return Ok(None);
        }
        let key = session_key(token);
        let Some(bytes) = self.store.state_get(&period, &key)? else {
            return Ok(None);
        };
        let stored: StoredSession =
            serde_json::from_slice(&bytes).map_err(|_| StoreError::Corrupt("session"))?;
        if stored.expires_at <= self.now() {
            self.store.state_remove(&period, &key)?;
            return Err(IssuerError::SessionExpired);
        }
        let quota_subject: [u8; 32] = hex::decode(&stored.quota_subject)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(StoreError::Corrupt("session"))?;
        Ok(Some(SessionOwner {
            period,
            resident: stored.resident,
            quota_subject,
            has_employer: stored.has_employer,
        }))
    }

    /// Ends a session.
    pub fn logout(&self, token: &str) -> Result<(), IssuerError> {
        if let Some(period) = token.split('.').next().and_then(PeriodId::parse) {
            if self.period_info(&period).is_some() {
                self.store.state_remove(&period, &session_key(token))?;
            }
        }
        Ok(())
    }

    /// Erases a resident now: record, index entry and every session.
    pub fn erase(&self, owner: &SessionOwner) -> Result<(), IssuerError> {
        self.erase_resident(&owner.period, &owner.resident)?;
        for (key, value) in self.store.state_scan(&owner.period, &[SESSION_PREFIX])? {
            if let Ok(stored) = serde_json::from_slice::<StoredSession>(&value) {
                if stored.resident == owner.resident {
                    self.store.state_remove(&owner.period, &key)?;
                }
            }
        }
        self.store.durable()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_fail() {
        let p = Argon2Params::INSECURE_FAST_FOR_TESTS;
        let hash = hash_password(&Passphrase::new("long enough pw".into()), p).unwrap();
        assert!(verify_password(
            &Passphrase::new("long enough pw".into()),
            &hash
        ));
        assert!(!verify_password(
            &Passphrase::new("long enough pX".into()),
            &hash
        ));
        assert!(!verify_password(
            &Passphrase::new("long enough pw".into()),
            "garbage"
        ));
        assert!(!hash.contains("long enough"));
    }
}
