//! The PostgreSQL engine: the per-period data in one database, one LIST
//! partition per period of each table, so that a purge is a few `DROP
//! TABLE`s whatever the number of rows.
//!
//! The issuer core is synchronous, and some store calls are made from the
//! service's async workers, where a nested `block_on` would panic. So the
//! engine owns a small Tokio runtime of its own: each call sends its future
//! there and waits for the answer on a std channel.
//!
//! Two ways to open it. **One node** ([`PgStore::open`]): the key ring and
//! the master slot live in the data directory, so two nodes on one database
//! would seal with different period keys; at open the engine takes a
//! session-level advisory lock on a connection it holds for its life, and
//! refuses a database whose lock another process holds. **Shared**
//! ([`PgStore::open_shared`], with the master key in a PKCS#11 token every
//! node reaches): the key ring, the wrapped master key and the audit log are
//! rows of the database too ([`shared`]), and any number of nodes open it.
//!
//! Names and errors carry no personal data: tables are named by a fixed
//! prefix and the random period id in hex; no SQL parameter is ever logged
//! or put in an error (a server error is reported by its SQLSTATE code,
//! never its DETAIL line, which quotes key values).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use super::commit::{PendingCharge, PendingFlush};
use super::purge::{self, PurgeDone, Purged};
use super::{Charge, ChargeOrder, Entry, StoreError};
use crate::ids::{PeriodId, ResidentId};

pub mod shared;

/// Advisory lock keys ("blindpas" in ASCII, plus one per use). Advisory
/// locks are scoped to the database.
const NODE_LOCK: i64 = 0x626c_696e_6470_6173;
const MIGRATION_LOCK: i64 = NODE_LOCK + 1;
const PARTITION_LOCK: i64 = NODE_LOCK + 2;

/// How long an open waits for the node lock before refusing: a restart in
/// the same process finds the previous connection's lock for a moment,
/// until the server has seen that connection close.
const NODE_LOCK_WAIT: Duration = Duration::from_secs(3);

/// The oldest server the engine runs on (`server_version_num`): the purge
/// needs `DETACH PARTITION … CONCURRENTLY` and `pg_inherits.inhdetachpending`.
const MIN_SERVER_VERSION: i32 = 140_000;

/// The schema's migrations, in order; `schema_migrations` records which
/// are applied. A database with a version above the last is refused.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
    -- The issuer whose data this is, by its audit log's public key: one
    -- database per data directory (the key ring is still there).
    CREATE TABLE owner (
        one     boolean PRIMARY KEY DEFAULT true CHECK (one),
        log_key text    NOT NULL
    );
    -- One row per period the store has data for.
    CREATE TABLE periods (
        id bytea PRIMARY KEY
    );
    -- Sealed records, by random resident id.
    CREATE TABLE records (
        period   bytea NOT NULL,
        resident bytea NOT NULL,
        sealed   bytea NOT NULL,
        PRIMARY KEY (period, resident)
    ) PARTITION BY LIST (period);
    -- The keyed-hash index (document number to resident id).
    CREATE TABLE doc_index (
        period bytea NOT NULL,
        key    bytea NOT NULL,
        value  bytea NOT NULL,
        PRIMARY KEY (period, key)
    ) PARTITION BY LIST (period);
    -- Sessions, quota counters (8-byte big-endian) and idempotency entries,
    -- told apart by their keys' first byte, as in sled's state tree.
    CREATE TABLE state (
        period bytea NOT NULL,
        key    bytea NOT NULL,
        value  bytea NOT NULL,
        PRIMARY KEY (period, key)
    ) PARTITION BY LIST (period);
    ",
    ),
    (
        2,
        // The charge in one round trip: the same statements as the
        // transaction it replaces, in the same order, run by the server.
        // In a READ COMMITTED transaction each statement of a volatile
        // function takes a fresh snapshot, so the idempotency lookup after
        // the row lock sees what the charge that held the lock committed.
        // Counters are 8-byte big-endian, as sled stores them.
        "
    CREATE FUNCTION blindpass_charge(
        p_period bytea, p_quota bytea, p_idem bytea, p_limit bigint, p_value bytea
    ) RETURNS TABLE (outcome text, stored bytea)
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        counter bytea;
        used    bigint;
        prior   bytea;
    BEGIN
        INSERT INTO state (period, key, value)
            VALUES (p_period, p_quota, '\\x0000000000000000'::bytea)
            ON CONFLICT DO NOTHING;
        SELECT value INTO counter FROM state
            WHERE period = p_period AND key = p_quota FOR UPDATE;
        SELECT value INTO prior FROM state WHERE period = p_period AND key = p_idem;
        IF FOUND THEN
            RETURN QUERY SELECT 'replayed'::text, prior;
            RETURN;
        END IF;
        used := ('x' || encode(counter, 'hex'))::bit(64)::bigint;
        IF p_limit IS NOT NULL AND used >= p_limit THEN
            RETURN QUERY SELECT 'over-quota'::text, NULL::bytea;
            RETURN;
        END IF;
        UPDATE state SET value = int8send(used + 1)
            WHERE period = p_period AND key = p_quota;
        INSERT INTO state (period, key, value) VALUES (p_period, p_idem, p_value);
        RETURN QUERY SELECT 'charged'::text, NULL::bytea;
    END
    $$;
    ",
    ),
    (3, shared::MIGRATION),
    (
        4,
        // A period whose destruction has begun charges nothing more, on
        // any node: the charge holds the period's row FOR SHARE, so the
        // mark (an UPDATE of that row) waits for the charges in flight and
        // every charge after it sees the mark. A period with no row (never
        // written, or purged) charges nothing either.
        "
    ALTER TABLE periods ADD COLUMN ending boolean NOT NULL DEFAULT false;
    CREATE OR REPLACE FUNCTION blindpass_charge(
        p_period bytea, p_quota bytea, p_idem bytea, p_limit bigint, p_value bytea
    ) RETURNS TABLE (outcome text, stored bytea)
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        counter bytea;
        used    bigint;
        prior   bytea;
    BEGIN
        PERFORM 1 FROM periods WHERE id = p_period AND NOT ending FOR SHARE;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'period-ending'::text, NULL::bytea;
            RETURN;
        END IF;
        INSERT INTO state (period, key, value)
            VALUES (p_period, p_quota, '\\x0000000000000000'::bytea)
            ON CONFLICT DO NOTHING;
        SELECT value INTO counter FROM state
            WHERE period = p_period AND key = p_quota FOR UPDATE;
        SELECT value INTO prior FROM state WHERE period = p_period AND key = p_idem;
        IF FOUND THEN
            RETURN QUERY SELECT 'replayed'::text, prior;
            RETURN;
        END IF;
        used := ('x' || encode(counter, 'hex'))::bit(64)::bigint;
        IF p_limit IS NOT NULL AND used >= p_limit THEN
            RETURN QUERY SELECT 'over-quota'::text, NULL::bytea;
            RETURN;
        END IF;
        UPDATE state SET value = int8send(used + 1)
            WHERE period = p_period AND key = p_quota;
        INSERT INTO state (period, key, value) VALUES (p_period, p_idem, p_value);
        RETURN QUERY SELECT 'charged'::text, NULL::bytea;
    END
    $$;
    ",
    ),
];

/// The partitioned tables, each with one partition per period.
pub(super) const PARTITIONED: [&str; 3] = ["records", "doc_index", "state"];

/// The partition of `table` for `period`: `<table>_p<hex id>`.
pub(super) fn partition_name(table: &str, period: &PeriodId) -> String {
    format!("{table}_p{period}")
}

/// A server refusal by its SQLSTATE code; anything else (a connection
/// failure, a closed connection) by tokio-postgres's text and its cause
/// (an I/O error, say), which quote no parameter when the error is not
/// the server's.
fn failed(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Postgres(describe(what, &e))
}

fn describe(what: &str, e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(code) => format!("{what}: refused by the server (SQLSTATE {})", code.code()),
        None if e.as_db_error().is_some() => format!("{what}: refused by the server"),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{what}: {e}: {cause}"),
            None => format!("{what}: {e}"),
        },
    }
}

fn pool_failed(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => StoreError::Postgres(describe("connecting", &e)),
        PoolError::Timeout(_) => StoreError::Postgres("no pooled connection in time".into()),
        _ => StoreError::Postgres("the connection pool failed".into()),
    }
}

/// The connection string as the client reads it; the error never quotes
/// it (it may hold a password).
fn conninfo(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    url.parse().map_err(|_| {
        StoreError::Postgres(
            "the connection string is not a postgres:// URL or a libpq conninfo".into(),
        )
    })
}

/// Whether `url` is a connection string the client accepts.
pub(super) fn check_conninfo(url: &str) -> Result<(), StoreError> {
    conninfo(url).map(drop)
}

/// The PostgreSQL database of one issuer.
#[derive(Clone)]
pub(super) struct PgStore {
    inner: Arc<Inner>,
    purger: Arc<OnceLock<purge::Purger>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

struct Inner {
    /// Taken only by `Drop`, to shut the runtime down without blocking
    /// (the last handle may be dropped on an async worker).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    /// For the connections that are not pooled (locks, the listener).
    config: tokio_postgres::Config,
    /// Holds the node lock for the store's life (one node only).
    node: Option<Client>,
    /// Periods whose partitions are known to exist.
    partitions: Mutex<HashSet<PeriodId>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `future` on `handle`'s runtime and waits for it on a std channel.
fn wait_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(StoreError::Postgres("the engine's runtime stopped".into())))
}

impl PgStore {
    /// Connects, takes the node lock, applies the migrations, and checks
    /// that the database is `owner`'s (claiming an unowned one).
    pub(super) fn open(url: &str, pool_size: usize, owner: &str) -> Result<Self, StoreError> {
        Self::connect(url, pool_size, Some(owner))
    }

    /// Connects and applies the migrations, without the node lock: the
    /// database of several nodes, whose key ring, master slot and audit log
    /// are its rows ([`shared`]). Refuses a one-node database.
    pub(super) fn open_shared(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::connect(url, pool_size, None)
    }

    fn connect(url: &str, pool_size: usize, owner: Option<&str>) -> Result<Self, StoreError> {
        let mut config = conninfo(url)?;
        config.application_name("blindpass");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("blindpass-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Postgres(format!("starting the engine's runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let node = match owner {
            Some(owner) => Some(wait_on(
                &handle,
                lock_node(config.clone(), owner.to_owned()),
            )?),
            None => {
                wait_on(&handle, open_shared(config.clone()))?;
                None
            }
        };
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|_| StoreError::Postgres("building the connection pool".into()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                runtime: Some(runtime),
                handle,
                pool,
                config,
                node,
                partitions: Mutex::default(),
            }),
            purger: Arc::default(),
        })
    }

    /// Whether this store was opened shared (no node lock).
    pub(super) fn is_shared(&self) -> bool {
        self.inner.node.is_none()
    }

    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        wait_on(&self.inner.handle, future)
    }

    /// Creates the period's partitions and `periods` row unless known to
    /// exist; reads never do, so a read after a purge brings nothing back.
    fn ensure_period(&self, period: &PeriodId) -> Result<(), StoreError> {
        let known = |p: &PeriodId| {
            self.inner
                .partitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(p)
        };
        if known(period) {
            return Ok(());
        }
        let (pool, period_id) = (self.inner.pool.clone(), *period);
        self.run(async move {
            let mut client = pool.get().await.map_err(pool_failed)?;
            let tx = client
                .transaction()
                .await
                .map_err(failed("creating a period"))?;
            // Serialises creators: CREATE TABLE IF NOT EXISTS alone can
            // still collide on the catalog when two race.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
                .await
                .map_err(failed("creating a period"))?;
            let mut ddl = String::new();
            for table in PARTITIONED {
                // Only the fixed name and the id's hex reach the SQL text.
                ddl.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {table} \
                     FOR VALUES IN ('\\x{period_id}'::bytea);\n",
                    partition_name(table, &period_id)
                ));
            }
            tx.batch_execute(&ddl)
                .await
                .map_err(failed("creating a period's partitions"))?;
            tx.execute(
                "INSERT INTO periods (id) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&period_id.as_bytes().as_slice()],
            )
            .await
            .map_err(failed("creating a period"))?;
            tx.commit().await.map_err(failed("creating a period"))
        })?;
        self.inner
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*period);
        Ok(())
    }

    /// One statement on a pooled connection: `rows` for a query.
    fn query(
        &self,
        what: &'static str,
        sql: &'static str,
        period: &PeriodId,
        params: Vec<Vec<u8>>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let (pool, period) = (self.inner.pool.clone(), period.as_bytes().to_vec());
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            let statement = client.prepare_cached(sql).await.map_err(failed(what))?;
            let all = bind(&period, &params);
            client.query(&statement, &all).await.map_err(failed(what))
        })
    }

    /// One statement on a pooled connection: the rows it changed.
    fn execute(
        &self,
        what: &'static str,
        sql: &'static str,
        period: &PeriodId,
        params: Vec<Vec<u8>>,
    ) -> Result<u64, StoreError> {
        let (pool, period) = (self.inner.pool.clone(), period.as_bytes().to_vec());
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            let statement = client.prepare_cached(sql).await.map_err(failed(what))?;
            let all = bind(&period, &params);
            client.execute(&statement, &all).await.map_err(failed(what))
        })
    }

    fn value(
        &self,
        what: &'static str,
        sql: &'static str,
        period: &PeriodId,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.query(what, sql, period, vec![key.to_vec()])?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    pub(super) fn put_record(
        &self,
        period: &PeriodId,
        id: &ResidentId,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.ensure_period(period)?;
        self.execute(
            "writing a record",
            "INSERT INTO records (period, resident, sealed) VALUES ($1, $2, $3)
             ON CONFLICT (period, resident) DO UPDATE SET sealed = EXCLUDED.sealed",
            period,
            vec![id.as_bytes().to_vec(), sealed.to_vec()],
        )?;
        Ok(())
    }

    pub(super) fn record(
        &self,
        period: &PeriodId,
        id: &ResidentId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.value(
            "reading a record",
            "SELECT sealed FROM records WHERE period = $1 AND resident = $2",
            period,
            id.as_bytes(),
        )
    }

    pub(super) fn remove_record(
        &self,
        period: &PeriodId,
        id: &ResidentId,
    ) -> Result<bool, StoreError> {
        let removed = self.execute(
            "removing a record",
            "DELETE FROM records WHERE period = $1 AND resident = $2",
            period,
            vec![id.as_bytes().to_vec()],
        )?;
        Ok(removed > 0)
    }

    pub(super) fn record_count(&self, period: &PeriodId) -> Result<usize, StoreError> {
        let rows = self.query(
            "counting records",
            "SELECT count(*) FROM records WHERE period = $1",
            period,
            Vec::new(),
        )?;
        let count: i64 = rows.first().map_or(0, |row| row.get(0));
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    pub(super) fn index_claim(
        &self,
        period: &PeriodId,
        key: &[u8; 32],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        self.ensure_period(period)?;
        let claimed = self.execute(
            "claiming an index slot",
            "INSERT INTO doc_index (period, key, value) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            period,
            vec![key.to_vec(), value.to_vec()],
        )?;
        Ok(claimed == 1)
    }

    pub(super) fn index_get(
        &self,
        period: &PeriodId,
        key: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.value(
            "reading an index slot",
            "SELECT value FROM doc_index WHERE period = $1 AND key = $2",
            period,
            key,
        )
    }

    pub(super) fn index_remove(&self, period: &PeriodId, key: &[u8; 32]) -> Result<(), StoreError> {
        self.execute(
            "freeing an index slot",
            "DELETE FROM doc_index WHERE period = $1 AND key = $2",
            period,
            vec![key.to_vec()],
        )?;
        Ok(())
    }

    pub(super) fn state_get(
        &self,
        period: &PeriodId,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.value(
            "reading state",
            "SELECT value FROM state WHERE period = $1 AND key = $2",
            period,
            key,
        )
    }

    pub(super) fn state_insert(
        &self,
        period: &PeriodId,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.ensure_period(period)?;
        self.execute(
            "writing state",
            "INSERT INTO state (period, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (period, key) DO UPDATE SET value = EXCLUDED.value",
            period,
            vec![key.to_vec(), value.to_vec()],
        )?;
        Ok(())
    }

    pub(super) fn state_remove(&self, period: &PeriodId, key: &[u8]) -> Result<(), StoreError> {
        self.execute(
            "removing state",
            "DELETE FROM state WHERE period = $1 AND key = $2",
            period,
            vec![key.to_vec()],
        )?;
        Ok(())
    }

    pub(super) fn state_scan(
        &self,
        period: &PeriodId,
        prefix: &[u8],
    ) -> Result<Vec<Entry>, StoreError> {
        // bytea compares byte by byte, as sled orders its keys: the prefix's
        // entries are the range [prefix, the next prefix).
        let rows = match prefix_end(prefix) {
            Some(end) => self.query(
                "scanning state",
                "SELECT key, value FROM state WHERE period = $1 AND key >= $2 AND key < $3
                 ORDER BY key",
                period,
                vec![prefix.to_vec(), end],
            )?,
            None => self.query(
                "scanning state",
                "SELECT key, value FROM state WHERE period = $1 AND key >= $2 ORDER BY key",
                period,
                vec![prefix.to_vec()],
            )?,
        };
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    pub(super) fn charge_once(&self, order: &ChargeOrder) -> Result<Charge, StoreError> {
        self.ensure_period(&order.period)?;
        self.run(charge(self.inner.pool.clone(), order.clone()))
    }

    /// The transaction runs on the engine's runtime; nothing waits on a
    /// thread for it.
    pub(super) fn charge_once_queued(&self, order: ChargeOrder) -> PendingCharge {
        let (reply, answer) = oneshot::channel();
        match self.ensure_period(&order.period) {
            Ok(()) => {
                let pool = self.inner.pool.clone();
                self.inner.handle.spawn(async move {
                    let _ = reply.send(charge(pool, order).await);
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
        PendingCharge::answered_by(answer)
    }

    pub(super) fn mark_ending(&self, period: &PeriodId) -> Result<(), StoreError> {
        self.execute(
            "marking a period's destruction",
            "INSERT INTO periods (id, ending) VALUES ($1, true)
             ON CONFLICT (id) DO UPDATE SET ending = true",
            period,
            Vec::new(),
        )?;
        Ok(())
    }

    pub(super) fn durable_queued(&self) -> PendingFlush {
        PendingFlush::done_already()
    }

    pub(super) fn purge_in_background(&self, period: &PeriodId, done: PurgeDone) {
        self.purger().submit(*period, done);
    }

    pub(super) fn wait_for_purges(&self) {
        self.purger().wait_idle();
    }

    fn purger(&self) -> &purge::Purger {
        self.purger.get_or_init(|| {
            let store = Self {
                inner: self.inner.clone(),
                // The purger's own handle needs no purger.
                purger: Arc::default(),
            };
            purge::Purger::start(Box::new(move |period, stop| store.purge(period, stop)))
        })
    }

    /// Drops the period's partitions one by one, each counted under its
    /// lock in the same transaction, then its `periods` row. `stop` is
    /// asked between the drops.
    fn purge(&self, period: &PeriodId, stop: &dyn Fn(usize) -> bool) -> Result<Purged, StoreError> {
        let forget = || {
            self.inner
                .partitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(period)
        };
        forget();
        let mut entries = 0;
        for table in PARTITIONED {
            if stop(entries) {
                return Ok(Purged {
                    entries,
                    complete: false,
                });
            }
            let (pool, name) = (self.inner.pool.clone(), partition_name(table, period));
            entries += self.run(async move {
                let what = "purging a period";
                let mut client = pool.get().await.map_err(pool_failed)?;
                detach(&client, table, &name).await?;
                let tx = client.transaction().await.map_err(failed(what))?;
                let exists: bool = tx
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                    .await
                    .map_err(failed(what))?
                    .get(0);
                if !exists {
                    return Ok(0);
                }
                // Detached, the table is no longer the parent's: locking
                // and dropping it stops no query of another period.
                tx.batch_execute(&format!("LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"))
                    .await
                    .map_err(failed(what))?;
                let count: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {name}"), &[])
                    .await
                    .map_err(failed(what))?
                    .get(0);
                tx.batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                    .await
                    .map_err(failed(what))?;
                tx.commit().await.map_err(failed(what))?;
                Ok(usize::try_from(count).unwrap_or(usize::MAX))
            })?;
        }
        let (pool, id) = (self.inner.pool.clone(), period.as_bytes().to_vec());
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            client
                .execute("DELETE FROM periods WHERE id = $1", &[&id])
                .await
                .map_err(failed("purging a period"))
        })?;
        // A write while the drops ran may have recreated what was dropped
        // and remembered it; the next purge finds it.
        forget();
        Ok(Purged {
            entries,
            complete: true,
        })
    }

    pub(super) fn periods_present(&self) -> Vec<PeriodId> {
        let pool = self.inner.pool.clone();
        let rows = self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            client
                .query("SELECT id FROM periods ORDER BY id", &[])
                .await
                .map_err(failed("listing periods"))
        });
        match rows {
            Ok(rows) => rows
                .iter()
                .filter_map(|row| PeriodId::parse(&hex::encode(row.get::<_, Vec<u8>>(0))))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not list the periods present");
                Vec::new()
            }
        }
    }

    pub(super) fn durable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    pub(super) fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    pub(super) fn probe(&self) -> Result<(), StoreError> {
        let pool = self.inner.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            client
                .batch_execute("SELECT 1")
                .await
                .map_err(failed("probing"))
        })
    }

    /// The per-period partitions, by name.
    pub(super) fn tree_names(&self) -> Vec<String> {
        let pool = self.inner.pool.clone();
        let names = self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            let rows = client
                .query(
                    "SELECT c.relname::text FROM pg_inherits i
                     JOIN pg_class c ON c.oid = i.inhrelid
                     JOIN pg_class p ON p.oid = i.inhparent
                     WHERE p.relname = ANY($1) AND c.relkind = 'r'
                     ORDER BY 1",
                    &[&PARTITIONED.as_slice()],
                )
                .await
                .map_err(failed("listing partitions"))?;
            Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect())
        });
        names.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not list the partitions");
            Vec::new()
        })
    }

    pub(super) fn size_on_disk(&self) -> Result<u64, StoreError> {
        let pool = self.inner.pool.clone();
        let bytes: i64 = self.run(async move {
            let client = pool.get().await.map_err(pool_failed)?;
            Ok(client
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await
                .map_err(failed("measuring the database"))?
                .get(0))
        })?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }
}

/// Detaches the partition `name` from `parent` if it is still attached,
/// without blocking the parent: `DETACH PARTITION … CONCURRENTLY` takes only
/// a SHARE UPDATE EXCLUSIVE lock on it and waits for the transactions that
/// may see the partition, where a plain `DROP` of an attached partition asks
/// for an ACCESS EXCLUSIVE lock on the parent, behind which every new query
/// of every period queues while any transaction on the parent runs (a
/// backup's, say). A detach interrupted part-way (a crash, a shutdown) is
/// finished with `FINALIZE`. Not in a transaction block: PostgreSQL refuses
/// one there.
async fn detach(client: &Client, parent: &str, name: &str) -> Result<(), StoreError> {
    let what = "detaching a period's partition";
    let state = client
        .query_opt(
            "SELECT inhdetachpending FROM pg_inherits
             WHERE inhrelid = to_regclass($1) AND inhparent = to_regclass($2)",
            &[&name, &parent],
        )
        .await
        .map_err(failed(what))?;
    let how = match state.map(|row| row.get::<_, bool>(0)) {
        None => return Ok(()),
        Some(false) => "CONCURRENTLY",
        Some(true) => "FINALIZE",
    };
    // Only the fixed name and the id's hex reach the SQL text.
    client
        .batch_execute(&format!(
            "ALTER TABLE {parent} DETACH PARTITION {name} {how}"
        ))
        .await
        .map_err(failed(what))
}

/// A statement's parameters: the period id first, then `rest`.
fn bind<'a>(period: &'a Vec<u8>, rest: &'a [Vec<u8>]) -> Vec<&'a (dyn ToSql + Sync)> {
    std::iter::once(period)
        .chain(rest)
        .map(|p| p as &(dyn ToSql + Sync))
        .collect()
}

/// The end of the range of keys starting with `prefix`: the prefix with its
/// last byte below 0xff incremented and what follows cut; `None` when every
/// key from the prefix on matches (empty, or all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Connects the node lock's connection, takes the lock (waiting up to
/// [`NODE_LOCK_WAIT`]), applies the migrations on it, and checks the owner.
async fn lock_node(config: tokio_postgres::Config, owner: String) -> Result<Client, StoreError> {
    let mut client = connect_checked(&config).await?;
    let started = Instant::now();
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&NODE_LOCK])
            .await
            .map_err(failed("taking the node lock"))?
            .get(0);
        if locked {
            break;
        }
        if started.elapsed() >= NODE_LOCK_WAIT {
            return Err(StoreError::OtherNode);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    migrate(&mut client).await?;
    // A data directory started on another's database would purge, at its
    // recovery, every period its own ring does not know.
    claim_owner(&client, &owner).await?;
    Ok(client)
}

/// Applies the migrations and marks the database as shared by several
/// nodes; refuses one a single node owns. A one-node store refuses a shared
/// database the same way, since the marks differ.
async fn open_shared(config: tokio_postgres::Config) -> Result<(), StoreError> {
    let mut client = connect_checked(&config).await?;
    migrate(&mut client).await?;
    claim_owner(&client, shared::SHARED_OWNER).await
}

/// Claims the `owner` row for `owner` if it is free; refuses a database
/// that is someone else's.
async fn claim_owner(client: &Client, owner: &str) -> Result<(), StoreError> {
    let what = "checking the database's owner";
    client
        .execute(
            "INSERT INTO owner (log_key) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&owner],
        )
        .await
        .map_err(failed(what))?;
    let found: String = client
        .query_one("SELECT log_key FROM owner", &[])
        .await
        .map_err(failed(what))?
        .get(0);
    if found != owner {
        return Err(StoreError::OtherIssuer);
    }
    Ok(())
}

/// Connects, with the connection driven on the current runtime, and checks
/// the server's version.
async fn connect_checked(config: &tokio_postgres::Config) -> Result<Client, StoreError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(failed("connecting to the database"))?;
    tokio::spawn(async move {
        // Ends when the client is dropped (or the server goes away); the
        // lock goes with the connection.
        let _ = connection.await;
    });
    // The purge detaches partitions concurrently (PostgreSQL 14 and later).
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(failed("reading the server's version"))?
        .get(0);
    if version < MIN_SERVER_VERSION {
        return Err(StoreError::Postgres(format!(
            "PostgreSQL {} or later is needed; this server is version {}",
            MIN_SERVER_VERSION / 10_000,
            version / 10_000
        )));
    }
    Ok(client)
}

/// Applies the migrations the database lacks, in one transaction under an
/// advisory lock; refuses a database ahead of this build.
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let what = "applying the schema's migrations";
    let tx = client.transaction().await.map_err(failed(what))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed(what))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer     PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(failed(what))?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(failed(what))?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await.map_err(failed(what))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(failed(what))?;
        tracing::info!(version, "applied a schema migration");
    }
    tx.commit().await.map_err(failed(what))
}

/// The charge, one statement ([`MIGRATIONS`] version 2): the counter row is
/// created if missing, then locked, so every charge of one counter queues
/// on it; under the lock, the idempotency entry is looked up (a replay),
/// the limit checked, and the charge and the entry written together. A
/// single statement is its own transaction (READ COMMITTED): all of it
/// commits, or none.
async fn charge(pool: Pool, order: ChargeOrder) -> Result<Charge, StoreError> {
    let what = "charging a quota";
    let client = pool.get().await.map_err(pool_failed)?;
    let statement = client
        .prepare_cached("SELECT outcome, stored FROM blindpass_charge($1, $2, $3, $4, $5)")
        .await
        .map_err(failed(what))?;
    let limit = order.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let row = client
        .query_one(
            &statement,
            &[
                &order.period.as_bytes().as_slice(),
                &order.quota_key,
                &order.idem_key,
                &limit,
                &order.value,
            ],
        )
        .await
        .map_err(failed(what))?;
    match row.get::<_, &str>(0) {
        "charged" => Ok(Charge::Charged),
        "replayed" => Ok(Charge::Replayed(row.get(1))),
        "over-quota" => Ok(Charge::OverQuota),
        "period-ending" => Ok(Charge::PeriodEnding),
        _ => Err(StoreError::Corrupt("the charge function's answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"s"), Some(b"t".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }

    #[test]
    fn partition_names_carry_only_the_table_and_the_hex_id() {
        let period = PeriodId::generate();
        let name = partition_name("records", &period);
        assert_eq!(name, format!("records_p{}", hex::encode(period.as_bytes())));
        // PostgreSQL cuts names at 63 bytes.
        assert!(partition_name("doc_index", &period).len() + "_pkey".len() <= 63);
    }
}
