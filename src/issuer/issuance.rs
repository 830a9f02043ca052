//! Issuance rules, still without HTTP: class and window checks,
//! eligibility, weekly quotas, and idempotent blind signing. Its state (quota
//! counters, recorded answers) lives in the period's state tree and dies
//! with it.
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
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Serialize};

use super::accounts::SessionOwner;
use super::{Authority, IssuerError};
use crate::crypto::kdf;
use crate::protocol::permit::{ExtraField, Quota, Window};
use crate::protocol::token::{TokenRequest, TokenResponse};
use crate::store::{Charge, ChargeOrder, StoreError};

#[derive(Serialize, Deserialize)]
struct StoredIssuance {
    response: String,
}

const QUOTA_PREFIX: u8 = b'q';
const IDEMPOTENCY_PREFIX: u8 = b'i';

fn prefixed(prefix: u8, hash: [u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(prefix);
    key.extend_from_slice(&hash);
    key
}

impl Authority {
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
        Charge::PeriodEnding => Err(IssuerError::PeriodEnded),
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
