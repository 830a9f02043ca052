//! Isolation periods: opening one with a fresh period key, extending and
//! ending it, and reading the live periods' metadata without their keys.

use time::OffsetDateTime;

use super::resident::FieldError;
use super::{Authority, IssuerError, rfc3339};
use crate::audit::Event;
use crate::crypto::kdf;
use crate::crypto::secret::PeriodKey;
use crate::ids::PeriodId;
use crate::protocol::permit::range;
use crate::vault::keyring::{DestroyedPeriod, LivePeriod};

/// A period end from outside: in the future and in the accepted range.
fn check_ends_at(ends_at: OffsetDateTime, now: OffsetDateTime) -> Result<(), FieldError> {
    if !range::instant_ok(ends_at) {
        return Err(FieldError {
            field: "ends_at",
            rule: range::DATE_RULE,
        });
    }
    if ends_at <= now {
        return Err(FieldError {
            field: "ends_at",
            rule: "must be in the future",
        });
    }
    Ok(())
}

/// A commitment to a key that reveals nothing about it.
pub fn key_commitment(key: &PeriodKey) -> String {
    hex::encode(kdf::hmac_sha256(
        key.expose_secret(),
        &[b"blindpass-key-commitment"],
    ))
}

impl Authority {
    /// Opens an isolation period with a fresh period key.
    pub fn open_period(
        &self,
        name: &str,
        ends_at: OffsetDateTime,
        grace_s: u64,
    ) -> Result<PeriodId, IssuerError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(FieldError {
                field: "name",
                rule: "must be 1-64 printable characters",
            }
            .into());
        }
        let now = self.now();
        check_ends_at(ends_at, now)?;
        if !range::grace_ok(grace_s) {
            return Err(FieldError {
                field: "grace_s",
                rule: range::GRACE_RULE,
            }
            .into());
        }
        let period = LivePeriod {
            id: PeriodId::generate(),
            name: name.to_owned(),
            opened_at: now,
            ends_at,
            grace_s,
            key: PeriodKey::generate(),
            destroy_pending: false,
        };
        let commitment = key_commitment(&period.key);
        let (id, deadline) = (period.id, period.deadline());
        self.vault().update(|ring| ring.periods.push(period))?;
        self.journal.append(
            now,
            Event::PeriodOpened {
                period: id,
                name: name.to_owned(),
                ends_at: rfc3339(ends_at),
                deadline: rfc3339(deadline),
            },
        )?;
        self.journal.append(
            now,
            Event::PeriodKeyCreated {
                period: id,
                commitment,
            },
        )?;
        Ok(id)
    }

    /// Moves a period's end. Only possible before its destruction deadline,
    /// and never into the past; logged publicly.
    pub fn extend_period(
        &self,
        id: &PeriodId,
        ends_at: OffsetDateTime,
    ) -> Result<PeriodInfo, IssuerError> {
        let now = self.now();
        let info = self.period_info(id).ok_or(IssuerError::UnknownPeriod)?;
        if info.destroy_pending || info.deadline <= now {
            return Err(FieldError {
                field: "ends_at",
                rule: "the destruction deadline has passed; the period cannot be extended",
            }
            .into());
        }
        check_ends_at(ends_at, now)?;
        self.vault().update(|ring| {
            if let Some(p) = ring.periods.iter_mut().find(|p| &p.id == id) {
                p.ends_at = ends_at;
            }
        })?;
        let info = self.period_info(id).ok_or(IssuerError::UnknownPeriod)?;
        self.journal.append(
            now,
            Event::PeriodExtended {
                period: *id,
                ends_at: rfc3339(info.ends_at),
                deadline: rfc3339(info.deadline),
            },
        )?;
        Ok(info)
    }

    /// Ends a period now; its data is destroyed once the grace has passed.
    pub fn end_period(&self, id: &PeriodId) -> Result<PeriodInfo, IssuerError> {
        let now = self.now();
        let info = self.period_info(id).ok_or(IssuerError::UnknownPeriod)?;
        if info.ends_at > now {
            self.vault().update(|ring| {
                if let Some(p) = ring.periods.iter_mut().find(|p| &p.id == id) {
                    p.ends_at = now;
                }
            })?;
            self.journal
                .append(now, Event::PeriodEnded { period: *id })?;
        }
        self.period_info(id).ok_or(IssuerError::UnknownPeriod)
    }

    /// Live periods, oldest first (keys omitted).
    pub fn periods(&self) -> Vec<PeriodInfo> {
        self.live().periods.clone()
    }

    /// One live period, without its key.
    pub fn period_info(&self, id: &PeriodId) -> Option<PeriodInfo> {
        self.live().periods.iter().find(|p| &p.id == id).cloned()
    }

    /// Tombstones of destroyed periods.
    pub fn destroyed_periods(&self) -> Vec<DestroyedPeriod> {
        self.vault().ring().destroyed.clone()
    }

    /// The newest period that has not ended: where enrolments go.
    pub fn current_period(&self) -> Result<PeriodId, IssuerError> {
        let now = self.now();
        self.live()
            .periods
            .iter()
            .filter(|p| p.ends_at > now && !p.destroy_pending)
            .max_by_key(|p| p.opened_at)
            .map(|p| p.id)
            .ok_or(IssuerError::NoOpenPeriod)
    }

    pub(super) fn period_key(&self, period: &PeriodId) -> Result<PeriodKey, IssuerError> {
        if let Some(lease) = &self.lease {
            lease.check()?;
        }
        self.vault()
            .ring()
            .period(period)
            .filter(|p| !p.destroy_pending)
            .map(|p| p.key.clone())
            .ok_or(IssuerError::UnknownPeriod)
    }
}

/// A live period as the admin API reports it: the wire body itself, so the
/// issuer and every client share one definition (`protocol::api`).
pub use crate::protocol::api::PeriodInfo;

impl From<&LivePeriod> for PeriodInfo {
    fn from(p: &LivePeriod) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            opened_at: p.opened_at,
            ends_at: p.ends_at,
            grace_s: p.grace_s,
            deadline: p.deadline(),
            destroy_pending: p.destroy_pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::issuer::test_authority as authority;
    use time::Duration;

    #[test]
    fn period_metadata_is_read_without_waiting_for_the_vault() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, clock) = authority(dir.path());
        let id = authority
            .open_period("p", clock.now() + Duration::days(1), 0)
            .unwrap();
        let held = authority.vault();
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = &authority;
            scope.spawn(move || {
                let seen = reader.period_info(&id).map(|p| p.id);
                let _ = tx.send(seen);
            });
            let seen = rx.recv_timeout(std::time::Duration::from_secs(5));
            drop(held);
            assert_eq!(seen, Ok(Some(id)), "the reader waited on the vault lock");
        });
    }

    #[test]
    fn every_change_to_the_ring_reaches_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, clock) = authority(dir.path());
        let id = authority
            .open_period("p", clock.now() + Duration::days(1), 0)
            .unwrap();
        assert_eq!(authority.current_period().unwrap(), id);
        let later = clock.now() + Duration::days(2);
        assert_eq!(authority.extend_period(&id, later).unwrap().ends_at, later);
        assert_eq!(authority.period_info(&id).unwrap().ends_at, later);
        // A change made through the guard directly, as destruction does.
        authority
            .vault()
            .update(|ring| ring.periods[0].destroy_pending = true)
            .unwrap();
        assert!(authority.period_info(&id).unwrap().destroy_pending);
        authority.destroy_period(&id).unwrap();
        authority.wait_for_purges();
        assert!(authority.period_info(&id).is_none());
        assert!(authority.periods().is_empty());
        assert!(matches!(
            authority.current_period(),
            Err(IssuerError::NoOpenPeriod)
        ));
    }

    /// Dates and graces from outside are range checked where they enter
    /// the core, so none can make the deadline overflow.
    #[test]
    fn far_dates_and_graces_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, clock) = authority(dir.path());
        let far = time::macros::datetime!(9999-12-31 23:59:59 UTC);
        let field = |e: IssuerError| match e {
            IssuerError::Invalid(f) => f.field,
            other => panic!("{other:?}"),
        };
        let err = authority.open_period("p", far, 0).unwrap_err();
        assert_eq!(field(err), "ends_at");
        let soon = clock.now() + Duration::days(1);
        let err = authority.open_period("p", soon, 1 << 63).unwrap_err();
        assert_eq!(field(err), "grace_s");
        let id = authority.open_period("p", soon, 3600).unwrap();
        let err = authority.extend_period(&id, far).unwrap_err();
        assert_eq!(field(err), "ends_at");
        // Nothing was changed, and the ring is still usable.
        assert_eq!(authority.period_info(&id).unwrap().ends_at, soon);
        assert_eq!(authority.periods().len(), 1);
    }
}
