//! The server's internal period types turned into their wire bodies
//! (`protocol::api`), field by field, so that what is served is what
//! clients read and the issuer's types stay free to change.

use crate::issuer::PeriodInfo;
use crate::protocol::api;
use crate::vault::keyring::DestroyedPeriod;

/// A live period as `docs/api.md` describes it.
pub(super) fn period(p: PeriodInfo) -> api::PeriodInfo {
    api::PeriodInfo {
        id: p.id,
        name: p.name,
        opened_at: p.opened_at,
        ends_at: p.ends_at,
        grace_s: p.grace_s,
        deadline: p.deadline,
        destroy_pending: p.destroy_pending,
    }
}

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
    fn wire_periods_serialize_as_the_internal_ones_did() {
        let at = datetime!(2026-12-01 10:00 UTC);
        let live = PeriodInfo {
            id: PeriodId::generate(),
            name: "north".into(),
            opened_at: at,
            ends_at: at + time::Duration::days(14),
            grace_s: 3600,
            deadline: at + time::Duration::days(14) + time::Duration::hours(1),
            destroy_pending: true,
        };
        assert_eq!(
            serde_json::to_string(&period(live.clone())).unwrap(),
            serde_json::to_string(&live).unwrap()
        );
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
