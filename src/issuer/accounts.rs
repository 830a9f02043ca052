//! Residents' accounts and issuance rules, still without HTTP: passwords
//! (Argon2id, checked at login only), sessions (random tokens stored only
//! as hashes, with an expiry), weekly quotas, eligibility, and idempotent
//! issuance. All of it lives in the period's state tree and dies with it.
//!
//! Security contract of issuance (what a crash or a retry can and cannot do):
//! a signature leaves only after the quota charge and the idempotency entry
//! are committed together in one sled transaction and flushed; a retry of
//! the same blinded message finds the entry and gets the same signature
//! without a second charge, but only once that entry is durable too (it may
//! have been found in memory while the original's flush still runs: a
//! replay waits for a flush that started after it read the entry); a crash
//! before the commit charges nothing and releases nothing.

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
use crate::protocol::permit::{ExtraField, Quota, Window};
use crate::protocol::token::{TokenRequest, TokenResponse};
use crate::store::{Charge, ChargeOrder, StoreError};

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

#[derive(Serialize, Deserialize)]
struct StoredIssuance {
    response: String,
}

const SESSION_PREFIX: u8 = b's';
const QUOTA_PREFIX: u8 = b'q';
const IDEMPOTENCY_PREFIX: u8 = b'i';

fn session_key(token: &str) -> Vec<u8> {
    let mut key = vec![SESSION_PREFIX];
    key.extend_from_slice(&Sha256::digest(token.as_bytes()));
    key
}

fn prefixed(prefix: u8, hash: [u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(prefix);
    key.extend_from_slice(&hash);
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

    /// Issues one pass: [`Authority::sign_pass`], then
    /// [`Authority::commit_pass`] (see the module's contract).
    pub fn issue(
        &self,
        owner: &SessionOwner,
        class_name: &str,
        window: &Window,
        request: &TokenRequest,
    ) -> Result<TokenResponse, IssuerError> {
        match self.sign_pass(owner, class_name, window, request)? {
            Signed::Again(replay) => self.commit_replay(replay),
            Signed::New(pass) => self.commit_pass(pass),
        }
    }

    /// The first half of issuance, all of its CPU: class and window checks,
    /// eligibility, the idempotency lookup, the quota pre-check, and the
    /// blind signature. Writes nothing; the signature stays inside the
    /// [`UncommittedPass`] until a commit charges the quota.
    pub fn sign_pass(
        &self,
        owner: &SessionOwner,
        class_name: &str,
        window: &Window,
        request: &TokenRequest,
    ) -> Result<Signed, IssuerError> {
        let class = self
            .config
            .classes
            .class(class_name)
            .ok_or(IssuerError::UnknownClass)?
            .clone();
        if window.kind() != class.window || window.ends_at() <= self.now() {
            return Err(IssuerError::WindowOutOfRange);
        }
        let key = self.signing_key(class_name, window).map_err(|e| match e {
            IssuerError::NoSigningKey => IssuerError::WindowOutOfRange,
            other => other,
        })?;
        let period = self
            .period_info(&owner.period)
            .ok_or(IssuerError::UnknownPeriod)?;
        if period.ends_at <= self.now() {
            return Err(IssuerError::PeriodEnded);
        }
        // Eligibility and the quota subject were fixed at login from the
        // decrypted record; erasure ends every session, so an erased
        // resident never gets here.
        if class.requires.contains(&ExtraField::EmployerTaxNumber) && !owner.has_employer {
            return Err(IssuerError::NotEligible);
        }
        let resident = owner.resident.to_string();
        let window_text = window.to_string();
        let idem_key = prefixed(
            IDEMPOTENCY_PREFIX,
            kdf::hmac_sha256(
                &self.period_index(&owner.period, "idempotency", &resident)?,
                &[
                    class_name.as_bytes(),
                    b"\0",
                    window_text.as_bytes(),
                    b"\0",
                    &request.blinded_msg,
                ],
            ),
        );
        let quota_key = self.quota_key(owner, class_name, window)?;
        if let Some(previous) = self.store.state_get(&owner.period, &idem_key)? {
            return Ok(Signed::Again(ReplayedPass {
                response: stored_response(&previous)?,
            }));
        }
        let limit = match class.quota {
            Quota::PerIsoWeek(n) => Some(u64::from(n)),
            Quota::Unlimited => None,
        };
        if let Some(limit) = limit {
            if self.store.state_counter(&owner.period, &quota_key)? >= limit {
                return Err(IssuerError::QuotaExceeded);
            }
        }
        let response = key
            .blind_sign(request)
            .map_err(|_| IssuerError::BadTokenRequest)?;
        let value = serde_json::to_vec(&StoredIssuance {
            response: STANDARD_NO_PAD.encode(&response.blind_sig),
        })
        .map_err(|_| StoreError::Corrupt("issuance"))?;
        Ok(Signed::New(UncommittedPass {
            order: ChargeOrder {
                period: owner.period,
                idem_key,
                quota_key,
                limit,
                value,
            },
            response,
        }))
    }

    /// The second half: charges the quota and records the answer in one
    /// transaction, flushed, and only then releases the signature (or the
    /// one recorded by an earlier identical request).
    pub fn commit_pass(&self, pass: UncommittedPass) -> Result<TokenResponse, IssuerError> {
        let charge = self.store.charge_once(&pass.order)?;
        release(pass.response, charge)
    }

    /// [`Authority::commit_pass`] through the store's committer thread,
    /// which shares one flush among every pass committed meanwhile. For
    /// async callers: the future holds no thread while it waits.
    pub fn commit_pass_queued(
        &self,
        pass: UncommittedPass,
    ) -> impl std::future::Future<Output = Result<TokenResponse, IssuerError>> + Send + 'static
    {
        let UncommittedPass { order, response } = pass;
        let pending = self.store.charge_once_queued(order);
        async move { release(response, pending.outcome().await?) }
    }

    /// Releases a replayed answer once the charge it replays is durable:
    /// the entry was read from memory, and its own flush may not have
    /// finished (a crash then would forget the charge, not the signature).
    pub fn commit_replay(&self, replay: ReplayedPass) -> Result<TokenResponse, IssuerError> {
        self.store.durable()?;
        Ok(replay.response)
    }

    /// [`Authority::commit_replay`] through the committer thread's next
    /// flush, for async callers.
    pub fn commit_replay_queued(
        &self,
        replay: ReplayedPass,
    ) -> impl std::future::Future<Output = Result<TokenResponse, IssuerError>> + Send + 'static
    {
        let flushed = self.store.durable_queued();
        async move {
            flushed.done().await?;
            Ok(replay.response)
        }
    }

    /// How many passes of `class` the resident has in the ISO week of `window`.
    pub fn quota_used(
        &self,
        owner: &SessionOwner,
        class_name: &str,
        window: &Window,
    ) -> Result<u64, IssuerError> {
        let quota_key = self.quota_key(owner, class_name, window)?;
        Ok(self.store.state_counter(&owner.period, &quota_key)?)
    }

    /// The state key of a document's quota counter for a class and the ISO
    /// week of `window`: a keyed hash, so the document number is not stored.
    fn quota_key(
        &self,
        owner: &SessionOwner,
        class_name: &str,
        window: &Window,
    ) -> Result<Vec<u8>, IssuerError> {
        let (year, week) = window.iso_week();
        let subject = format!(
            "{}\0{class_name}\0{year}-W{week:02}",
            hex::encode(owner.quota_subject)
        );
        Ok(prefixed(
            QUOTA_PREFIX,
            self.period_index(&owner.period, "quota", &subject)?,
        ))
    }
}

/// What [`Authority::sign_pass`] produced.
#[derive(Debug)]
pub enum Signed {
    /// The same request was answered before: its recorded answer, free,
    /// released once the recorded charge is durable.
    Again(ReplayedPass),
    /// A new signature, not yet released.
    New(UncommittedPass),
}

/// A blind signature that may not leave until its quota charge is durable:
/// the signature is private to this module and only
/// [`Authority::commit_pass`] or [`Authority::commit_pass_queued`] let it
/// out. Dropping it releases nothing and charges nothing.
pub struct UncommittedPass {
    order: ChargeOrder,
    response: TokenResponse,
}

impl std::fmt::Debug for UncommittedPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UncommittedPass(<redacted>)")
    }
}

/// A recorded answer found for a repeated request, held until the charge it
/// replays is known to be on disk: only [`Authority::commit_replay`] or
/// [`Authority::commit_replay_queued`] let it out.
pub struct ReplayedPass {
    response: TokenResponse,
}

impl std::fmt::Debug for ReplayedPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplayedPass(<redacted>)")
    }
}

/// What a committed pass answers: its own signature if this commit charged
/// it, the recorded one if an identical request did.
fn release(response: TokenResponse, charge: Charge) -> Result<TokenResponse, IssuerError> {
    match charge {
        Charge::Charged => Ok(response),
        Charge::Replayed(previous) => stored_response(&previous),
        Charge::OverQuota => Err(IssuerError::QuotaExceeded),
    }
}

fn stored_response(bytes: &[u8]) -> Result<TokenResponse, IssuerError> {
    let stored: StoredIssuance =
        serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt("issuance"))?;
    let sig = STANDARD_NO_PAD
        .decode(stored.response)
        .map_err(|_| StoreError::Corrupt("issuance"))?;
    Ok(TokenResponse { blind_sig: sig })
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
