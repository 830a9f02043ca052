//! What several nodes share when their master key is in a common PKCS#11
//! token: the sealed key ring (one row, changed by compare-and-swap of its
//! generation), the token-wrapped master key (one row), the audit log's
//! entries (one gapless sequence), the advisory locks that make one node
//! at a time change the ring or run the expiry pass, and the notifications
//! that tell the other nodes a ring change committed.
//!
//! The rows hold only what the data directory's files held: sealed or
//! wrapped bytes and public log entries.

use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{PgStore, failed, pool_failed};
use crate::store::{SharedRing, StoreError};

/// Migration 3: the shared rows.
pub(super) const MIGRATION: &str = "
    -- The sealed key ring, one row. `generation` goes up by one at every
    -- committed change (the compare-and-swap token); `staged_*` holds the
    -- ring sealed under the next master during a rotation, until the
    -- master row names that master (the commit point).
    CREATE TABLE key_ring (
        one                   boolean PRIMARY KEY DEFAULT true CHECK (one),
        generation            bigint  NOT NULL,
        master_version        bigint  NOT NULL,
        sealed                bytea   NOT NULL,
        staged_master_version bigint,
        staged_sealed         bytea
    );
    -- The master key wrapped by the token's current non-extractable key
    -- (the JSON the token provider writes), never a passphrase-wrapped key.
    CREATE TABLE master_slot (
        one  boolean PRIMARY KEY DEFAULT true CHECK (one),
        slot bytea   NOT NULL
    );
    -- The audit log's entries: one sequence whichever node appends.
    CREATE TABLE audit_entries (
        seq   bigint PRIMARY KEY CHECK (seq >= 0),
        entry bytea  NOT NULL
    );
";

/// The channel on which ring changes are announced (payload: the new
/// generation).
const RING_CHANNEL: &str = "blindpass_ring";

/// The owner row's value for a database shared by several nodes (single
/// nodes write their audit log key there).
pub(super) const SHARED_OWNER: &str =
    "shared: key ring, master slot and audit log in this database";

/// Which advisory lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedLock {
    /// Changes to the key ring and the master slot, and a node's open.
    Ring,
    /// The expiry pass: held for the pass, so one node runs each.
    ExpiryPass,
}

impl SharedLock {
    fn key(self) -> i64 {
        match self {
            Self::Ring => super::NODE_LOCK + 3,
            Self::ExpiryPass => super::NODE_LOCK + 4,
        }
    }
}

/// An advisory lock, held on a connection of its own: dropping this closes
/// the connection, and the server releases the lock with it (also when the
/// process dies). Never a pooled connection, so a lock cannot leak into
/// another call.
pub struct HeldLock {
    _client: tokio_postgres::Client,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldLock")
    }
}

/// How long a node waits for a lock another node holds before giving up.
const LOCK_WAIT: &str = "60s";

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn as_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PgStore {
    /// Takes `which` (waiting up to a minute), or with `wait` false only
    /// if it is free.
    pub(crate) fn shared_lock(
        &self,
        which: SharedLock,
        wait: bool,
    ) -> Result<Option<HeldLock>, StoreError> {
        let config = self.inner.config.clone();
        self.run(async move {
            let what = "taking a shared lock";
            let (client, connection) = config.connect(NoTls).await.map_err(failed(what))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
                .batch_execute(&format!("SET lock_timeout = '{LOCK_WAIT}'"))
                .await
                .map_err(failed(what))?;
            let locked = if wait {
                client
                    .execute("SELECT pg_advisory_lock($1)", &[&which.key()])
                    .await
                    .map_err(failed(what))?;
                true
            } else {
                client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&which.key()])
                    .await
                    .map_err(failed(what))?
                    .get(0)
            };
            Ok(locked.then_some(HeldLock { _client: client }))
        })
    }

    pub(crate) fn shared_ring(&self) -> Result<Option<SharedRing>, StoreError> {
        let pool = self.inner.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            let row = client
                .query_opt(
                    "SELECT generation, master_version, sealed, staged_master_version,
                            staged_sealed
                     FROM key_ring",
                    &[],
                )
                .await
                .map_err(failed("reading the key ring"))?;
            Ok(row.map(|row| SharedRing {
                generation: as_u64(row.get(0)),
                master_version: as_u64(row.get(1)),
                sealed: row.get(2),
                staged: match (row.get::<_, Option<i64>>(3), row.get(4)) {
                    (Some(version), Some(sealed)) => Some((as_u64(version), sealed)),
                    _ => None,
                },
            }))
        })
    }

    pub(crate) fn shared_ring_generation(&self) -> Result<Option<u64>, StoreError> {
        let pool = self.inner.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            let row = client
                .query_opt("SELECT generation FROM key_ring", &[])
                .await
                .map_err(failed("reading the key ring's generation"))?;
            Ok(row.map(|row| as_u64(row.get(0))))
        })
    }

    /// Runs `sql` with `numbers` as its first parameters and `sealed`, if
    /// any, as the last, in a transaction that also announces `announce`
    /// (the new generation) when given and a row changed; the rows changed.
    fn ring_write(
        &self,
        what: &'static str,
        sql: &'static str,
        numbers: Vec<u64>,
        sealed: Option<&[u8]>,
        announce: Option<u64>,
    ) -> Result<u64, StoreError> {
        let pool = self.inner.pool.clone();
        let numbers: Vec<i64> = numbers.into_iter().map(as_i64).collect();
        let sealed = sealed.map(<[u8]>::to_vec);
        self.run(async move {
            let mut client = pool.get().await.map_err(pool_failed)?;
            let tx = client.transaction().await.map_err(failed(what))?;
            let params: Vec<&(dyn ToSql + Sync)> = numbers
                .iter()
                .map(|n| n as &(dyn ToSql + Sync))
                .chain(sealed.as_ref().map(|s| s as &(dyn ToSql + Sync)))
                .collect();
            let changed = tx.execute(sql, &params).await.map_err(failed(what))?;
            if let (1, Some(generation)) = (changed, announce) {
                // Delivered to the listeners when (and only if) this commits.
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&RING_CHANNEL, &generation.to_string()],
                )
                .await
                .map_err(failed(what))?;
            }
            tx.commit().await.map_err(failed(what))?;
            Ok(changed)
        })
    }

    pub(crate) fn create_shared_ring(
        &self,
        master_version: u64,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let changed = self.ring_write(
            "creating the key ring",
            "INSERT INTO key_ring (generation, master_version, sealed) VALUES (1, $1, $2)
             ON CONFLICT DO NOTHING",
            vec![master_version],
            Some(sealed),
            Some(1),
        )?;
        Ok(changed == 1)
    }

    pub(crate) fn replace_shared_ring(
        &self,
        generation: u64,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let changed = self.ring_write(
            "replacing the key ring",
            "UPDATE key_ring SET generation = generation + 1, sealed = $2
             WHERE generation = $1",
            vec![generation],
            Some(sealed),
            Some(generation + 1),
        )?;
        Ok(changed == 1)
    }

    pub(crate) fn stage_shared_ring(
        &self,
        generation: u64,
        master_version: u64,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let changed = self.ring_write(
            "staging the key ring",
            "UPDATE key_ring SET staged_master_version = $2, staged_sealed = $3
             WHERE generation = $1",
            vec![generation, master_version],
            Some(sealed),
            None,
        )?;
        Ok(changed == 1)
    }

    /// The staged ring (under `master_version`) becomes the ring.
    pub(crate) fn commit_shared_ring(
        &self,
        generation: u64,
        master_version: u64,
    ) -> Result<bool, StoreError> {
        let changed = self.ring_write(
            "committing the staged key ring",
            "UPDATE key_ring SET generation = generation + 1,
                 master_version = staged_master_version, sealed = staged_sealed,
                 staged_master_version = NULL, staged_sealed = NULL
             WHERE generation = $1 AND staged_master_version = $2",
            vec![generation, master_version],
            None,
            Some(generation + 1),
        )?;
        Ok(changed == 1)
    }

    /// Drops a staged ring left by a rotation that stopped before its
    /// commit point.
    pub(crate) fn clear_shared_stage(&self) -> Result<(), StoreError> {
        let pool = self.inner.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            client
                .execute(
                    "UPDATE key_ring SET staged_master_version = NULL, staged_sealed = NULL
                     WHERE staged_sealed IS NOT NULL",
                    &[],
                )
                .await
                .map_err(failed("clearing a staged key ring"))?;
            Ok(())
        })
    }

    pub(crate) fn master_slot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let pool = self.inner.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            let row = client
                .query_opt("SELECT slot FROM master_slot", &[])
                .await
                .map_err(failed("reading the master slot"))?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    pub(crate) fn put_master_slot(&self, slot: &[u8]) -> Result<(), StoreError> {
        let (pool, slot) = (self.inner.pool.clone(), slot.to_vec());
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            client
                .execute(
                    "INSERT INTO master_slot (slot) VALUES ($1)
                     ON CONFLICT (one) DO UPDATE SET slot = EXCLUDED.slot",
                    &[&slot],
                )
                .await
                .map_err(failed("writing the master slot"))?;
            Ok(())
        })
    }

    /// The audit entries from `from` on, in order.
    pub(crate) fn audit_entries_from(&self, from: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let pool = self.inner.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            let rows = client
                .query(
                    "SELECT seq, entry FROM audit_entries WHERE seq >= $1 ORDER BY seq",
                    &[&as_i64(from)],
                )
                .await
                .map_err(failed("reading the audit log"))?;
            let mut out = Vec::with_capacity(rows.len());
            for (expected, row) in (from..).zip(&rows) {
                if as_u64(row.get(0)) != expected {
                    return Err(StoreError::Corrupt("the audit log's sequence has a gap"));
                }
                out.push(row.get(1));
            }
            Ok(out)
        })
    }

    /// Appends `entry` as number `seq` if that number is free and follows
    /// the last one; false if another node took it first.
    pub(crate) fn audit_insert(&self, seq: u64, entry: &[u8]) -> Result<bool, StoreError> {
        let (pool, entry) = (self.inner.pool.clone(), entry.to_vec());
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            // The NOT EXISTS keeps the sequence gapless; the primary key
            // keeps one entry per number when two nodes race.
            let changed = client
                .execute(
                    "INSERT INTO audit_entries (seq, entry)
                     SELECT $1::bigint, $2::bytea
                     WHERE $1::bigint = 0
                        OR EXISTS (SELECT 1 FROM audit_entries WHERE seq = $1::bigint - 1)
                     ON CONFLICT DO NOTHING",
                    &[&as_i64(seq), &entry],
                )
                .await
                .map_err(failed("appending to the audit log"))?;
            Ok(changed == 1)
        })
    }

    /// Starts listening for ring changes: every committed change (and every
    /// reconnection, when one may have been missed) sends on the returned
    /// channel. The listener reconnects by itself after a second; the
    /// receiver's holder polls as well, so a lost notification costs at
    /// most its poll interval.
    pub(crate) fn watch_ring(&self) -> std::sync::mpsc::Receiver<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        let config = self.inner.config.clone();
        self.inner.handle.spawn(async move {
            loop {
                if let Ok((client, mut connection)) = config.connect(NoTls).await {
                    let notify = tx.clone();
                    // The connection's messages arrive only while it is
                    // polled; notifications come out of it here.
                    let pump = tokio::spawn(async move {
                        while let Some(Ok(message)) =
                            std::future::poll_fn(|cx| connection.poll_message(cx)).await
                        {
                            if matches!(message, AsyncMessage::Notification(_))
                                && notify.send(()).is_err()
                            {
                                return;
                            }
                        }
                    });
                    if client
                        .batch_execute(&format!("LISTEN {RING_CHANNEL}"))
                        .await
                        .is_ok()
                    {
                        // A change committed before LISTEN took effect was
                        // missed: ask for a re-read.
                        let _ = tx.send(());
                        let _ = pump.await;
                    }
                }
                // The connection is gone (or never came): re-read, unless
                // nobody listens any more.
                if tx.send(()).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        rx
    }
}
