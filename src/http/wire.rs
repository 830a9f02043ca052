//! The key ring's record of a destroyed period turned into its wire body
//! (`protocol::api`), field by field, so that what is served is what
//! clients read and the ring's on-disk format stays free to change. (A live
//! period needs no conversion: the issuer reports `protocol::api::PeriodInfo`
//! itself.)

use crate::protocol::api;
use crate::vault::keyring::DestroyedPeriod;

/// A destroyed period as `docs/api.md` describes it.
pub(super) fn destroyed(p: DestroyedPeriod) -> api::DestroyedPeriod {
    api::DestroyedPeriod {
        id: p.id,
        name: p.name,
        opened_at: p.opened_at,
        ends_at: p.ends_at,
        deadline: p.deadline,
        destroyed_at: p.destroyed_at,
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ids::PeriodId;

    #[test]
    fn a_destroyed_period_serializes_as_the_ring_record_did() {
        let at = datetime!(2026-12-01 10:00 UTC);
        let gone = DestroyedPeriod {
            id: PeriodId::generate(),
            name: "south".into(),
            opened_at: at,
            ends_at: at + time::Duration::days(1),
            deadline: at + time::Duration::days(2),
            destroyed_at: at + time::Duration::days(3),
        };
        assert_eq!(
            serde_json::to_string(&destroyed(gone.clone())).unwrap(),
            serde_json::to_string(&gone).unwrap()
        );
    }
}
