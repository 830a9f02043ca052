//! The destruction of a period (crypto-shredding): the key goes from the
//! ring under a rotated master key, the audit log says so, and the purge of
//! its sled data is queued. Recovery at open finishes a destruction that a
//! crash interrupted.

use super::{Authority, IssuerError, rfc3339};
use crate::audit::Event;
use crate::ids::PeriodId;
use crate::protocol::permit::range;
use crate::store::Purged;
use crate::vault::FaultPoint;
use crate::vault::keyring::DestroyedPeriod;

/// What a destruction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestroyReport {
    /// The period.
    pub period: PeriodId,
    /// Seconds after the deadline (0 if on time or early).
    pub late_by_s: i64,
    /// The master version after rotation.
    pub master_version: u64,
}

impl Authority {
    /// Finishes what a crash interrupted: a destruction that was started is
    /// completed, and sled data of periods whose key is gone is queued for
    /// purging (in the background: a restart does not wait for it).
    pub(super) fn recover(&self) -> Result<(), IssuerError> {
        // Older code accepted any end and grace; such a period must not stop
        // the service (its deadline is its end, see `LivePeriod::deadline`),
        // but the operator should know.
        for p in &self.vault().ring().periods {
            if !range::instant_ok(p.ends_at) || !range::grace_ok(p.grace_s) {
                tracing::warn!(
                    period = %p.id,
                    deadline = %rfc3339(p.deadline()),
                    "this period's end or grace is out of the accepted range; \
                     its key is destroyed at its end, without grace"
                );
            }
        }
        let pending: Vec<PeriodId> = self
            .vault()
            .ring()
            .periods
            .iter()
            .filter(|p| p.destroy_pending)
            .map(|p| p.id)
            .collect();
        for period in pending {
            self.destroy_period(&period)?;
        }
        // A crash between the commit of a rotation and its audit entries
        // leaves a tombstone the log does not show yet: log it now.
        let logged: Vec<PeriodId> = self
            .journal
            .entries()?
            .into_iter()
            .filter_map(|e| match e.event {
                Event::PeriodKeyDestroyed { period, .. } => Some(period),
                _ => None,
            })
            .collect();
        let (unlogged, version): (Vec<DestroyedPeriod>, u64) = {
            let vault = self.vault();
            let tombstones = vault.ring().destroyed.iter();
            let unlogged = tombstones
                .filter(|d| !logged.contains(&d.id))
                .cloned()
                .collect();
            (unlogged, vault.master_version())
        };
        // The entry carries the time it is written, not the (earlier)
        // rotation time: a log must never look backdated, and reporting the
        // destruction as confirmed later is the conservative side.
        let now = self.now();
        for gone in &unlogged {
            self.journal.append(
                now,
                Event::PeriodKeyDestroyed {
                    period: gone.id,
                    deadline: rfc3339(gone.deadline),
                    late_by_s: (now - gone.deadline).whole_seconds().max(0),
                },
            )?;
        }
        if !unlogged.is_empty() {
            self.journal
                .append(self.now(), Event::MasterRotated { version })?;
        }
        let live: Vec<PeriodId> = self.vault().ring().periods.iter().map(|p| p.id).collect();
        for period in self.store.periods_present() {
            if !live.contains(&period) {
                self.purge_later(&period);
            }
        }
        Ok(())
    }

    /// Destroys a period (crypto-shredding, NIST SP 800-88 "cryptographic erase"). Idempotent
    /// and crash-safe: the intent is logged and recorded in the key ring
    /// first, so a restart at any point finishes the job.
    ///
    /// 1. audit `destroy-intent`; mark the period ending in the store (from
    ///    then on no node charges a pass for it:
    ///    [`crate::store::Store::mark_ending`]) and
    ///    pending in the ring;
    /// 2. rotate the master key, committing a ring without `K_P`;
    /// 3. the old ring, master and `K_P` are dropped (zeroized) in memory;
    /// 4. audit `period-key-destroyed` (with lateness) and `master-rotated`;
    /// 5. queue the purge of the period's sled data (hygiene) and return:
    ///    the purge runs in the background and audits `records-purged`
    ///    when it finishes ([`Authority::wait_for_purges`] waits for it).
    pub fn destroy_period(&self, period: &PeriodId) -> Result<DestroyReport, IssuerError> {
        let now = self.now();
        let mut vault = self.vault();
        // Several nodes: decide on the ring as it is now, not as this node
        // last saw it (another node may have destroyed the period).
        vault.refresh()?;
        let Some(live) = vault.ring().period(period) else {
            // Already destroyed: finishing the purge is all that may remain.
            let known = vault.ring().destroyed.iter().any(|d| &d.id == period);
            drop(vault);
            if !known {
                return Err(IssuerError::UnknownPeriod);
            }
            self.purge_later(period);
            return Ok(DestroyReport {
                period: *period,
                late_by_s: 0,
                master_version: self.master_version(),
            });
        };
        let deadline = live.deadline();
        if !live.destroy_pending {
            self.journal
                .append(now, Event::DestroyIntent { period: *period })?;
        }
        // From here no node charges a pass for the period, whatever its
        // ring still says (PostgreSQL; see `Store::mark_ending`). Again
        // after a crash: the mark is idempotent.
        self.store.mark_ending(period)?;
        if !live.destroy_pending {
            vault.update(|ring| {
                if let Some(p) = ring.periods.iter_mut().find(|p| &p.id == period) {
                    p.destroy_pending = true;
                }
            })?;
        }
        vault.check_fault(FaultPoint::AfterIntent)?;
        vault.rotate(|ring| {
            if let Some(pos) = ring.periods.iter().position(|p| &p.id == period) {
                let gone = ring.periods.remove(pos);
                ring.destroyed.push(DestroyedPeriod {
                    id: gone.id,
                    name: gone.name.clone(),
                    opened_at: gone.opened_at,
                    ends_at: gone.ends_at,
                    deadline: gone.deadline(),
                    destroyed_at: now,
                });
                // `gone` (with K_P) is dropped here and zeroized.
            }
        })?;
        let master_version = vault.master_version();
        drop(vault);
        // The entries carry the time the key was gone, not the time the
        // destruction began: never earlier than the fact they state.
        let gone_at = self.now();
        let late_by_s = (gone_at - deadline).whole_seconds().max(0);
        self.journal.append(
            gone_at,
            Event::PeriodKeyDestroyed {
                period: *period,
                deadline: rfc3339(deadline),
                late_by_s,
            },
        )?;
        self.journal.append(
            gone_at,
            Event::MasterRotated {
                version: master_version,
            },
        )?;
        self.vault().check_fault(FaultPoint::BeforePurge)?;
        self.purge_later(period);
        Ok(DestroyReport {
            period: *period,
            late_by_s,
            master_version,
        })
    }

    /// Queues the purge of a period whose key is gone; when it finishes,
    /// `records-purged` is audited (if it removed anything). A failure is
    /// logged, and the next start tries again.
    fn purge_later(&self, period: &PeriodId) {
        let (journal, clock, period) = (self.journal.clone(), self.clock.clone(), *period);
        self.store.purge_in_background(
            &period,
            Box::new(move |outcome| match outcome {
                Ok(Purged { entries, complete }) => {
                    // Every run that removed something is audited, a run
                    // cut short by a shutdown too: the counts of a period's
                    // entries add up to what it held.
                    if entries > 0 {
                        let event = Event::RecordsPurged {
                            period,
                            entries: entries as u64,
                        };
                        if let Err(e) = journal.append(clock.now(), event) {
                            tracing::error!(period = %period, error = %e, "purge ran but could not be audited");
                            return;
                        }
                    }
                    if complete {
                        tracing::info!(period = %period, entries, "records-purged");
                    } else {
                        tracing::info!(period = %period, entries, "purge stopped by shutdown; the next start finishes it");
                    }
                }
                Err(e) => {
                    tracing::error!(period = %period, error = %e, "purge failed; the next start retries it");
                }
            }),
        );
    }

    /// Blocks until every purge queued so far has finished and been
    /// audited.
    pub fn wait_for_purges(&self) {
        self.store.wait_for_purges();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::Duration;

    use super::*;
    use crate::clock::Clock;
    use crate::crypto::secret::{Passphrase, PeriodKey};
    use crate::issuer::AuthorityConfig;
    use crate::issuer::test_authority as authority;
    use crate::vault::keyring::LivePeriod;

    /// A ring written by older code may hold a period whose end plus grace
    /// does not exist: the issuer still starts, and that period's key dies
    /// at its end.
    #[test]
    fn a_ring_with_an_overflowing_deadline_still_opens_and_destroys() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, clock) = authority(dir.path());
        let ends_at = clock.now() + Duration::days(1);
        let far = time::macros::datetime!(9999-12-31 00:00 UTC);
        let (near_id, far_id) = (PeriodId::generate(), PeriodId::generate());
        authority
            .vault()
            .update(|ring| {
                for (id, ends_at, grace_s) in [(near_id, ends_at, u64::MAX), (far_id, far, 86_400)]
                {
                    ring.periods.push(LivePeriod {
                        id,
                        name: "old".into(),
                        opened_at: clock.now(),
                        ends_at,
                        grace_s,
                        key: PeriodKey::generate(),
                        destroy_pending: false,
                    });
                }
            })
            .unwrap();
        assert_eq!(authority.period_info(&near_id).unwrap().deadline, ends_at);
        assert_eq!(authority.period_info(&far_id).unwrap().deadline, far);
        drop(authority);
        let authority = Authority::open(
            dir.path(),
            &Passphrase::new("issuer unit tests".into()),
            AuthorityConfig::default(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        assert_eq!(authority.periods().len(), 2);
        clock.advance(Duration::days(1));
        let report = authority.destroy_due(Duration::ZERO).unwrap();
        assert_eq!(report.destroyed.len(), 1);
        assert!(authority.period_info(&near_id).is_none());
        authority.wait_for_purges();
    }
}
