//! PostgreSQL: the store's PostgreSQL engine (round trips, the quota rule
//! under racing threads, the purge, the single-node lock, migrations, the
//! names it creates), the throwaway cluster the tests use, and the spike of
//! the SQL behind the quota rule that chose the engine's charge.
//!
//! The rule: the quota charge and the idempotency entry commit in one
//! transaction, so any number of nodes racing for one resident's passes
//! grant at most the quota, and a retried request is charged once. Two ways
//! to make that hold are checked here, with the client the store will use
//! (tokio-postgres through a deadpool pool, over the cluster's Unix socket):
//! a row lock on the quota counter (`SELECT … FOR UPDATE` at READ
//! COMMITTED) and SERIALIZABLE with retries. A third, unguarded way shows
//! that the race the tests set up is real. `spike_figures` prints what each
//! costs; `docs/deployment.md` says which one the store will use and why.
//!
//! The spike's SQL is its own (a schema of its own, in its own databases);
//! the engine's tests at the end of this file run `blindpass::store`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::postgres::{self, Cluster, Database};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::IsolationLevel;
use tokio_postgres::error::SqlState;

/// The two tables the charge touches, as the store will have them per
/// period (there, partitions of a per-period table; see the deployment doc).
const SCHEMA: &str = "
    CREATE TABLE quota (
        subject bytea   NOT NULL,
        class   text    NOT NULL,
        week    text    NOT NULL,
        used    integer NOT NULL,
        PRIMARY KEY (subject, class, week)
    );
    CREATE TABLE idempotency (
        key       bytea PRIMARY KEY,
        signature bytea NOT NULL
    );
";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Guard {
    /// READ COMMITTED; the counter row is created if missing, then locked
    /// with `SELECT … FOR UPDATE` before the idempotency check and the
    /// charge. Concurrent charges of one subject queue on that row.
    RowLock,
    /// SERIALIZABLE; plain reads, an upsert of the counter, and the whole
    /// transaction retried on a serialization failure.
    Serializable,
    /// READ COMMITTED with a plain read of the counter (no lock): the
    /// defect the other two prevent, with a pause that widens the window.
    Unguarded,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Charged,
    Replayed(Vec<u8>),
    OverQuota,
}

/// One pass's charge: the quota subject (a keyed hash of the document in
/// the real store), the idempotency key (a keyed hash of resident, class,
/// window and blinded message) and the blind signature to keep for replays.
#[derive(Clone)]
struct Order {
    subject: Vec<u8>,
    class: &'static str,
    week: &'static str,
    limit: i32,
    key: Vec<u8>,
    signature: Vec<u8>,
}

impl Order {
    fn new(subject: u32, key: u32, limit: i32) -> Order {
        Order {
            subject: subject.to_be_bytes().to_vec(),
            class: "personal",
            week: "2026-W49",
            limit,
            key: [subject.to_be_bytes(), key.to_be_bytes()].concat(),
            signature: format!("signature {subject}/{key}").into_bytes(),
        }
    }
}

/// Charges `order` once, in one transaction; returns the outcome and how
/// many times the transaction was retried.
async fn charge_once(
    client: &mut Object,
    guard: Guard,
    order: &Order,
) -> Result<(Outcome, u32), tokio_postgres::Error> {
    let mut retries = 0;
    loop {
        let attempt = match guard {
            Guard::RowLock => charge_with_row_lock(client, order).await,
            Guard::Serializable => charge_serializable(client, order).await,
            Guard::Unguarded => charge_unguarded(client, order).await,
        };
        match attempt {
            Err(e)
                if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                    || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                retries += 1;
            }
            other => return other.map(|outcome| (outcome, retries)),
        }
    }
}

async fn charge_with_row_lock(
    client: &mut Object,
    order: &Order,
) -> Result<Outcome, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let counter = (&order.subject, &order.class, &order.week);
    let create = tx
        .prepare_cached(
            "INSERT INTO quota (subject, class, week, used) VALUES ($1, $2, $3, 0)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&create, &[counter.0, counter.1, counter.2])
        .await?;
    let lock = tx
        .prepare_cached(
            "SELECT used FROM quota WHERE subject = $1 AND class = $2 AND week = $3 FOR UPDATE",
        )
        .await?;
    let used: i32 = tx
        .query_one(&lock, &[counter.0, counter.1, counter.2])
        .await?
        .get(0);
    // Under the lock: every charge of this subject waits here, so the
    // entry cannot appear between this read and the insert below.
    let replay = tx
        .prepare_cached("SELECT signature FROM idempotency WHERE key = $1")
        .await?;
    if let Some(row) = tx.query_opt(&replay, &[&order.key]).await? {
        tx.commit().await?;
        return Ok(Outcome::Replayed(row.get(0)));
    }
    if used >= order.limit {
        tx.rollback().await?;
        return Ok(Outcome::OverQuota);
    }
    let charge = tx
        .prepare_cached(
            "UPDATE quota SET used = used + 1 WHERE subject = $1 AND class = $2 AND week = $3",
        )
        .await?;
    tx.execute(&charge, &[counter.0, counter.1, counter.2])
        .await?;
    let keep = tx
        .prepare_cached("INSERT INTO idempotency (key, signature) VALUES ($1, $2)")
        .await?;
    tx.execute(&keep, &[&order.key, &order.signature]).await?;
    tx.commit().await?;
    Ok(Outcome::Charged)
}

async fn charge_serializable(
    client: &mut Object,
    order: &Order,
) -> Result<Outcome, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await?;
    let counter = (&order.subject, &order.class, &order.week);
    let replay = tx
        .prepare_cached("SELECT signature FROM idempotency WHERE key = $1")
        .await?;
    if let Some(row) = tx.query_opt(&replay, &[&order.key]).await? {
        tx.commit().await?;
        return Ok(Outcome::Replayed(row.get(0)));
    }
    let read = tx
        .prepare_cached("SELECT used FROM quota WHERE subject = $1 AND class = $2 AND week = $3")
        .await?;
    let used: i32 = tx
        .query_opt(&read, &[counter.0, counter.1, counter.2])
        .await?
        .map_or(0, |row| row.get(0));
    if used >= order.limit {
        // Committed, not rolled back: a refusal is a decision too, and
        // SERIALIZABLE checks it against the charges it raced with.
        tx.commit().await?;
        return Ok(Outcome::OverQuota);
    }
    let charge = tx
        .prepare_cached(
            "INSERT INTO quota (subject, class, week, used) VALUES ($1, $2, $3, 1)
             ON CONFLICT (subject, class, week) DO UPDATE SET used = quota.used + 1",
        )
        .await?;
    tx.execute(&charge, &[counter.0, counter.1, counter.2])
        .await?;
    let keep = tx
        .prepare_cached("INSERT INTO idempotency (key, signature) VALUES ($1, $2)")
        .await?;
    tx.execute(&keep, &[&order.key, &order.signature]).await?;
    tx.commit().await?;
    Ok(Outcome::Charged)
}

async fn charge_unguarded(
    client: &mut Object,
    order: &Order,
) -> Result<Outcome, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let counter = (&order.subject, &order.class, &order.week);
    tx.execute(
        "INSERT INTO quota (subject, class, week, used) VALUES ($1, $2, $3, 0)
         ON CONFLICT DO NOTHING",
        &[counter.0, counter.1, counter.2],
    )
    .await?;
    let used: i32 = tx
        .query_one(
            "SELECT used FROM quota WHERE subject = $1 AND class = $2 AND week = $3",
            &[counter.0, counter.1, counter.2],
        )
        .await?
        .get(0);
    tx.execute("SELECT pg_sleep(0.05)", &[]).await?;
    if used >= order.limit {
        tx.rollback().await?;
        return Ok(Outcome::OverQuota);
    }
    tx.execute(
        "UPDATE quota SET used = used + 1 WHERE subject = $1 AND class = $2 AND week = $3",
        &[counter.0, counter.1, counter.2],
    )
    .await?;
    tx.execute(
        "INSERT INTO idempotency (key, signature) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&order.key, &order.signature],
    )
    .await?;
    tx.commit().await?;
    Ok(Outcome::Charged)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A pool of up to `size` connections to `db`, with the schema created.
async fn pool(db: &Database, size: usize) -> Pool {
    let config: tokio_postgres::Config = db.conninfo().parse().unwrap();
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(size).build().unwrap();
    pool.get()
        .await
        .unwrap()
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    pool
}

/// What a race of `orders` produced: each order's outcome, the retries, and
/// the wall time from the common start.
struct Race {
    outcomes: Vec<Outcome>,
    retries: u32,
    elapsed: Duration,
}

/// Runs every order at once on its own connection: all connections are
/// open and wait at a barrier before the first transaction begins.
async fn race(pool: &Pool, guard: Guard, orders: Vec<Order>) -> Race {
    let barrier = Arc::new(tokio::sync::Barrier::new(orders.len() + 1));
    let retries = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for order in orders {
        let mut client = pool.get().await.unwrap();
        let barrier = barrier.clone();
        let retries = retries.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let (outcome, n) = charge_once(&mut client, guard, &order).await.unwrap();
            retries.fetch_add(n, Ordering::Relaxed);
            outcome
        }));
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    Race {
        outcomes,
        retries: retries.load(Ordering::Relaxed),
        elapsed: t0.elapsed(),
    }
}

/// 64 requests for one resident's personal passes, each for a different
/// blinded message, all at once against a quota of 2.
async fn racing_for_one_quota(db: &Database, guard: Guard) -> Race {
    let pool = pool(db, 64).await;
    let orders = (0..64).map(|key| Order::new(7, key, 2)).collect();
    race(&pool, guard, orders).await
}

fn charged(race: &Race) -> usize {
    race.outcomes
        .iter()
        .filter(|o| **o == Outcome::Charged)
        .count()
}

#[test]
fn the_throwaway_cluster_is_private_and_removed_even_on_panic() {
    let Some(bin) = postgres::installed() else {
        return;
    };
    let cluster = Cluster::start(bin);
    eprintln!("cluster started in {:?}", cluster.started_in);
    assert!(cluster.started_in < Duration::from_secs(30));
    let dir = cluster.socket_dir().to_owned();
    assert!(dir.join(format!(".s.PGSQL.{}", cluster.port())).exists());
    assert_eq!(cluster.sql("postgres", "SHOW listen_addresses"), "");
    let pid: u32 = std::fs::read_to_string(dir.join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    // Each test gets a database of its own in the shared cluster.
    let (a, b) = (postgres::database().unwrap(), postgres::database().unwrap());
    assert_ne!(a.name(), b.name());
    a.sql("CREATE TABLE only_in_a (x integer)");
    assert_eq!(
        b.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"),
        "0"
    );

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _cluster = cluster;
        panic!("a failing test");
    }));
    assert!(panicked.is_err());
    assert!(!dir.exists(), "the cluster's directory outlived the test");
    // The postmaster is gone (an immediate stop waits for it).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        status.is_empty() || status.contains("State:\tZ"),
        "the postmaster outlived the test: {status}"
    );
}

#[test]
fn racing_charges_grant_at_most_the_quota_with_a_row_lock() {
    let Some(db) = postgres::database() else {
        return;
    };
    let race = runtime().block_on(racing_for_one_quota(&db, Guard::RowLock));
    assert_eq!(charged(&race), 2);
    assert_eq!(race.outcomes.len() - charged(&race), 62);
    assert_eq!(db.sql("SELECT used FROM quota"), "2");
    assert_eq!(db.sql("SELECT count(*) FROM idempotency"), "2");
}

#[test]
fn racing_charges_grant_at_most_the_quota_when_serializable() {
    let Some(db) = postgres::database() else {
        return;
    };
    let race = runtime().block_on(racing_for_one_quota(&db, Guard::Serializable));
    assert_eq!(charged(&race), 2);
    assert_eq!(db.sql("SELECT used FROM quota"), "2");
    assert_eq!(db.sql("SELECT count(*) FROM idempotency"), "2");
}

/// The race above is real: without the lock the same 64 requests get more
/// than two passes. (If this fails, the other two prove nothing.)
#[test]
fn an_unguarded_check_then_charge_grants_beyond_the_quota() {
    let Some(db) = postgres::database() else {
        return;
    };
    let race = runtime().block_on(racing_for_one_quota(&db, Guard::Unguarded));
    assert!(charged(&race) > 2, "granted {}", charged(&race));
}

/// A lost answer retried on the same blinded message, many times at once:
/// charged once, and every retry gets the first signature back.
#[test]
fn a_retried_order_is_charged_once_and_replays_its_signature() {
    let Some(db) = postgres::database() else {
        return;
    };
    let other = postgres::database().unwrap();
    for (guard, db) in [(Guard::RowLock, &db), (Guard::Serializable, &other)] {
        let outcomes = runtime().block_on(async {
            let pool = pool(db, 16).await;
            // One key; each copy carries a signature of its own, so a
            // replay shows which one was kept.
            let orders = (0..16)
                .map(|i| Order {
                    signature: format!("copy {i}").into_bytes(),
                    ..Order::new(9, 1, 2)
                })
                .collect();
            race(&pool, guard, orders).await.outcomes
        });
        let kept = db.sql("SELECT convert_from(signature, 'UTF8') FROM idempotency");
        assert!(kept.starts_with("copy "), "{guard:?}: {kept}");
        let charged = outcomes.iter().filter(|o| **o == Outcome::Charged).count();
        assert_eq!(charged, 1, "{guard:?}");
        for outcome in &outcomes {
            match outcome {
                Outcome::Charged => {}
                Outcome::Replayed(signature) => assert_eq!(signature, kept.as_bytes()),
                Outcome::OverQuota => panic!("{guard:?}: a retry was refused"),
            }
        }
        assert_eq!(db.sql("SELECT used FROM quota"), "1", "{guard:?}");
    }
}

/// The spike's figures, both ways (run alone, with `--nocapture`):
/// the 64-way race for one quota; `n` charges over distinct residents; and
/// `n` charges over 16 residents (hot rows, quota never reached). Asserts
/// that nothing was over- or under-charged.
#[test]
fn spike_figures() {
    // Held to the end, so the cluster is shared by every run below.
    let Some(_held) = postgres::database() else {
        return;
    };
    let n: u32 = std::env::var("BLINDPASS_PG_SPIKE_CHARGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let connections = 16;
    for guard in [Guard::RowLock, Guard::Serializable] {
        let db = postgres::database().unwrap();
        let race = runtime().block_on(racing_for_one_quota(&db, guard));
        assert_eq!(charged(&race), 2);
        eprintln!(
            "{guard:?}: 64 racing for a quota of 2: {} granted in {:?}, {} retries",
            charged(&race),
            race.elapsed,
            race.retries
        );
        for (label, residents) in [("distinct residents", n), ("16 hot residents", 16)] {
            let db = postgres::database().unwrap();
            let (elapsed, retries) = runtime().block_on(async {
                let pool = pool(&db, connections).await;
                let next = Arc::new(AtomicU32::new(0));
                let retries = Arc::new(AtomicU32::new(0));
                let t0 = Instant::now();
                let workers: Vec<_> = (0..connections)
                    .map(|_| {
                        let (pool, next, retries) = (pool.clone(), next.clone(), retries.clone());
                        tokio::spawn(async move {
                            let mut client = pool.get().await.unwrap();
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i >= n {
                                    break;
                                }
                                let order = Order::new(i % residents, i, i32::MAX);
                                let (outcome, r) =
                                    charge_once(&mut client, guard, &order).await.unwrap();
                                assert_eq!(outcome, Outcome::Charged);
                                retries.fetch_add(r, Ordering::Relaxed);
                            }
                        })
                    })
                    .collect();
                for worker in workers {
                    worker.await.unwrap();
                }
                (t0.elapsed(), retries.load(Ordering::Relaxed))
            });
            assert_eq!(db.sql("SELECT sum(used) FROM quota"), n.to_string());
            assert_eq!(db.sql("SELECT count(*) FROM idempotency"), n.to_string());
            eprintln!(
                "{guard:?}: {n} charges, {label}, {connections} connections: {:.0}/s, {} retries",
                f64::from(n) / elapsed.as_secs_f64(),
                retries
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The store's PostgreSQL engine, through `blindpass::store::Store`.

use blindpass::ids::{PeriodId, ResidentId};
use blindpass::store::{Charge, ChargeOrder, Store, StoreError};

/// The issuer the engine's tests open their databases as (an audit log
/// key, in the issuer).
const OWNER: &str = "blindpass.local/audit+0123abcd+test";

/// The engine on a fresh database, with a pool of `pool_size`.
fn engine(db: &Database, pool_size: usize) -> Store {
    Store::open_postgres(&db.conninfo(), pool_size, OWNER).unwrap()
}

fn store_order(period: PeriodId, idem: &[u8], value: &[u8]) -> ChargeOrder {
    ChargeOrder {
        period,
        idem_key: idem.to_vec(),
        quota_key: b"q-resident".to_vec(),
        limit: Some(2),
        value: value.to_vec(),
    }
}

#[test]
fn the_engine_round_trips_records_index_and_state() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 4);
    assert_eq!(store.engine_name(), "postgres");
    let (p, other) = (PeriodId::generate(), PeriodId::generate());
    let (id, id2) = (ResidentId::generate(), ResidentId::generate());

    // Reads of a period with no data find nothing and create nothing.
    assert!(store.record(&p, &id).unwrap().is_none());
    assert!(store.state_get(&p, b"k").unwrap().is_none());
    assert_eq!(store.record_count(&p).unwrap(), 0);
    assert!(store.periods_present().is_empty());
    assert!(store.tree_names().is_empty());

    store.put_record(&p, &id, b"sealed one").unwrap();
    store.put_record(&p, &id, b"sealed again").unwrap();
    store.put_record(&p, &id2, b"sealed two").unwrap();
    store.put_record(&other, &id, b"elsewhere").unwrap();
    assert_eq!(store.record(&p, &id).unwrap().unwrap(), b"sealed again");
    assert_eq!(store.record_count(&p).unwrap(), 2);
    assert!(store.remove_record(&p, &id2).unwrap());
    assert!(!store.remove_record(&p, &id2).unwrap());
    assert_eq!(store.record_count(&p).unwrap(), 1);
    assert_eq!(store.record(&other, &id).unwrap().unwrap(), b"elsewhere");

    assert!(store.index_claim(&p, &[1; 32], b"a").unwrap());
    assert!(!store.index_claim(&p, &[1; 32], b"b").unwrap());
    assert_eq!(store.index_get(&p, &[1; 32]).unwrap().unwrap(), b"a");
    store.index_remove(&p, &[1; 32]).unwrap();
    assert!(store.index_get(&p, &[1; 32]).unwrap().is_none());

    // State keys as the issuer writes them: a kind byte, then the key;
    // the scan finds one kind, in key order, including 0xff bytes.
    for key in [&b"s\x02"[..], b"s\x01", b"s\xff\xff", b"t\x00", b"r\xff"] {
        store.state_insert(&p, key, key).unwrap();
    }
    let scanned: Vec<Vec<u8>> = store
        .state_scan(&p, b"s")
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            assert_eq!(k, v);
            k
        })
        .collect();
    assert_eq!(scanned, [&b"s\x01"[..], b"s\x02", b"s\xff\xff"]);
    assert_eq!(store.state_scan(&p, b"").unwrap().len(), 5);
    store.state_remove(&p, b"s\x01").unwrap();
    assert!(store.state_get(&p, b"s\x01").unwrap().is_none());
    store
        .state_insert(&p, b"count", &7u64.to_be_bytes())
        .unwrap();
    assert_eq!(store.state_counter(&p, b"count").unwrap(), 7);
    assert_eq!(store.state_counter(&p, b"absent").unwrap(), 0);

    let mut present = vec![p, other];
    present.sort();
    assert_eq!(store.periods_present(), present);
    assert_eq!(store.tree_names().len(), 6);
    store.probe().unwrap();
    assert!(store.size_on_disk().unwrap() > 0);
    store.durable().unwrap();
}

/// 64 threads, each with its own order against one quota of 2, released
/// together: exactly two are charged.
#[test]
fn the_engine_grants_a_quota_of_2_to_exactly_2_of_64_racing_threads() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 32);
    let p = PeriodId::generate();
    let barrier = Arc::new(std::sync::Barrier::new(64));
    let threads: Vec<_> = (0..64u32)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                let idem = i.to_be_bytes();
                barrier.wait();
                store.charge_once(&store_order(p, &idem, &idem)).unwrap()
            })
        })
        .collect();
    let outcomes: Vec<Charge> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let charged = outcomes.iter().filter(|o| **o == Charge::Charged).count();
    assert_eq!(charged, 2, "{outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| **o == Charge::OverQuota).count(),
        62
    );
    assert_eq!(store.state_counter(&p, b"q-resident").unwrap(), 2);
}

/// One order retried 16 times at once (a lost answer): charged once, and
/// every retry gets the kept value back.
#[test]
fn the_engine_charges_16_concurrent_retries_of_one_order_once() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 16);
    let p = PeriodId::generate();
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let threads: Vec<_> = (0..16u32)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                let value = format!("copy {i}").into_bytes();
                barrier.wait();
                store
                    .charge_once(&store_order(p, b"one order", &value))
                    .unwrap()
            })
        })
        .collect();
    let outcomes: Vec<Charge> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let kept = store.state_get(&p, b"one order").unwrap().unwrap();
    assert!(kept.starts_with(b"copy "));
    let charged = outcomes.iter().filter(|o| **o == Charge::Charged).count();
    assert_eq!(charged, 1, "{outcomes:?}");
    for outcome in &outcomes {
        match outcome {
            Charge::Charged => {}
            Charge::Replayed(value) => assert_eq!(value, &kept),
            Charge::OverQuota | Charge::PeriodEnding => panic!("a retry was refused"),
        }
    }
    assert_eq!(store.state_counter(&p, b"q-resident").unwrap(), 1);
}

/// The queued charge (the issuance path's) answers without a thread
/// waiting, and holds the same quota.
#[test]
fn the_engine_answers_queued_charges_with_the_same_rule() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 8);
    let p = PeriodId::generate();
    let outcomes = runtime().block_on(async {
        let pending: Vec<_> = (0..20u32)
            .map(|i| store.charge_once_queued(store_order(p, &i.to_be_bytes(), b"v")))
            .collect();
        let mut outcomes = Vec::new();
        for one in pending {
            outcomes.push(one.outcome().await.unwrap());
        }
        store.durable_queued().done().await.unwrap();
        outcomes
    });
    let charged = outcomes.iter().filter(|o| **o == Charge::Charged).count();
    assert_eq!(charged, 2);
    assert_eq!(
        store
            .charge_once(&store_order(p, &0u32.to_be_bytes(), b"w"))
            .unwrap(),
        if outcomes[0] == Charge::Charged {
            Charge::Replayed(b"v".to_vec())
        } else {
            Charge::OverQuota
        }
    );
}

/// The purge drops the period's partitions (one `DROP TABLE` each) and its
/// `periods` row, and leaves the other period alone; reads after it find
/// nothing and bring nothing back.
/// Once a period's destruction has begun (`Store::mark_ending`), no charge
/// for it is granted, not even the replay of one granted before, while
/// other periods charge as before; and under a stream of charges, every
/// charge that starts after the mark has returned is refused: the mark
/// waits for the charges in flight and every later one sees it.
#[test]
fn a_period_marked_ending_charges_nothing_more() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 8);
    let (p, q) = (PeriodId::generate(), PeriodId::generate());
    let charge = |period, idem: &[u8]| store.charge_once(&store_order(period, idem, b"s")).unwrap();
    assert_eq!(charge(p, b"i-1"), Charge::Charged);
    assert_eq!(charge(q, b"i-1"), Charge::Charged);
    store.mark_ending(&p).unwrap();
    assert_eq!(charge(p, b"i-2"), Charge::PeriodEnding);
    assert_eq!(charge(p, b"i-1"), Charge::PeriodEnding);
    assert_eq!(charge(q, b"i-2"), Charge::Charged);
    // Marked before anything was written: nothing is charged either.
    let r = PeriodId::generate();
    store.mark_ending(&r).unwrap();
    assert_eq!(charge(r, b"i-1"), Charge::PeriodEnding);

    // Eight threads charge a fresh period without a limit while it is
    // marked; each records when its charge started and what it got.
    let period = PeriodId::generate();
    let next = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, next, stop) = (store.clone(), next.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let order = ChargeOrder {
                        limit: None,
                        ..store_order(period, &i.to_be_bytes(), b"s")
                    };
                    let started = Instant::now();
                    seen.push((started, store.charge_once(&order).unwrap()));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    store.mark_ending(&period).unwrap();
    let marked = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let before = seen.iter().filter(|(_, c)| *c == Charge::Charged).count();
    let after: Vec<_> = seen.iter().filter(|(at, _)| *at > marked).collect();
    assert!(before > 0 && !after.is_empty(), "{before} {}", after.len());
    assert!(
        after.iter().all(|(_, c)| *c == Charge::PeriodEnding),
        "a charge started after the mark was granted"
    );
}

#[test]
fn the_engine_purge_drops_the_partitions() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 4);
    let (p, keep) = (PeriodId::generate(), PeriodId::generate());
    for _ in 0..5 {
        store.put_record(&p, &ResidentId::generate(), b"x").unwrap();
    }
    store.index_claim(&p, &[3; 32], b"r").unwrap();
    store.state_insert(&p, b"s", b"session").unwrap();
    store
        .put_record(&keep, &ResidentId::generate(), b"y")
        .unwrap();
    let partitions_of = |period: &PeriodId| {
        db.sql(&format!(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_p{period}'"
        ))
    };
    assert_eq!(partitions_of(&p), "3");

    assert_eq!(store.purge_period(&p).unwrap(), 7);
    assert_eq!(partitions_of(&p), "0");
    assert_eq!(partitions_of(&keep), "3");
    assert_eq!(store.periods_present(), vec![keep]);
    assert!(store.state_get(&p, b"s").unwrap().is_none());
    assert_eq!(store.record_count(&p).unwrap(), 0);
    assert_eq!(partitions_of(&p), "0");
    // Purging it again (a restart's recovery) removes nothing and fails not.
    assert_eq!(store.purge_period(&p).unwrap(), 0);

    store.purge_period(&keep).unwrap();
    assert!(store.periods_present().is_empty());
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_tables WHERE tablename ~ '_p[0-9a-f]{32}$'"),
        "0"
    );
    // A write after the purge starts the period afresh.
    store.state_insert(&p, b"s", b"again").unwrap();
    assert_eq!(store.periods_present(), vec![p]);
}

/// One node per database: a second open while the first holds the
/// database is refused, and succeeds once the first is closed.
#[test]
fn a_second_node_on_the_same_database_is_refused() {
    let Some(db) = postgres::database() else {
        return;
    };
    let first = engine(&db, 2);
    let refused = Store::open_postgres(&db.conninfo(), 2, OWNER).unwrap_err();
    assert!(matches!(refused, StoreError::OtherNode), "{refused:?}");
    assert!(
        refused
            .to_string()
            .contains("another blindpass node uses this database"),
        "{refused}"
    );
    // Another database of the same cluster is another node's to take.
    let other = postgres::database().unwrap();
    drop(engine(&other, 2));
    drop(first);
    engine(&db, 2).probe().unwrap();
}

/// A database is one data directory's: another issuer (another audit log
/// key) is refused, even once the first has stopped.
#[test]
fn a_database_of_another_data_directory_is_refused() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 1);
    let p = PeriodId::generate();
    store.state_insert(&p, b"k", b"v").unwrap();
    drop(store);
    let refused = Store::open_postgres(&db.conninfo(), 1, "another/audit+key").unwrap_err();
    assert!(matches!(refused, StoreError::OtherIssuer), "{refused:?}");
    // Nothing was purged or changed.
    assert_eq!(engine(&db, 1).periods_present(), vec![p]);
}

/// A database migrated by a newer build is refused, and left as it was.
#[test]
fn a_schema_newer_than_the_code_is_refused() {
    let Some(db) = postgres::database() else {
        return;
    };
    drop(engine(&db, 1));
    assert_eq!(db.sql("SELECT max(version) FROM schema_migrations"), "4");
    db.sql("INSERT INTO schema_migrations (version) VALUES (99)");
    let refused = Store::open_postgres(&db.conninfo(), 1, OWNER).unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::SchemaTooNew {
                found: 99,
                known: 4
            }
        ),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("newer"), "{refused}");
    assert_eq!(db.sql("SELECT count(*) FROM schema_migrations"), "5");
}

/// A database of an older schema (here: version 1, before the charge became
/// one statement and before the shared rows) is brought up to date at open,
/// and charges afterwards.
#[test]
fn an_older_schema_is_migrated_at_open() {
    let Some(db) = postgres::database() else {
        return;
    };
    drop(engine(&db, 1));
    db.sql("DROP FUNCTION blindpass_charge");
    db.sql("DROP TABLE key_ring, master_slot, audit_entries");
    db.sql("ALTER TABLE periods DROP COLUMN ending");
    db.sql("DELETE FROM schema_migrations WHERE version >= 2");
    let store = engine(&db, 1);
    assert_eq!(db.sql("SELECT max(version) FROM schema_migrations"), "4");
    let order = store_order(PeriodId::generate(), b"i-old", b"signature");
    assert_eq!(store.charge_once(&order).unwrap(), Charge::Charged);
    assert_eq!(
        store.charge_once(&order).unwrap(),
        Charge::Replayed(b"signature".to_vec())
    );
}

/// Every table and index the engine creates is named by a fixed word,
/// optionally followed by `_p` and a period id in hex (and `_pkey`):
/// nothing else, and nothing personal, reaches the catalog.
#[test]
fn table_and_index_names_carry_only_fixed_prefixes_and_period_ids() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 4);
    for _ in 0..2 {
        let p = PeriodId::generate();
        store.put_record(&p, &ResidentId::generate(), b"x").unwrap();
        store.index_claim(&p, &[4; 32], b"r").unwrap();
        store
            .charge_once(&store_order(p, b"DOC00000007", b"Resident DOC00000007"))
            .unwrap();
    }
    let names = db.sql(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' ORDER BY 1",
    );
    let fixed = [
        "schema_migrations",
        "owner",
        "periods",
        "records",
        "doc_index",
        "state",
        "key_ring",
        "master_slot",
        "audit_entries",
    ];
    let mut partitions = 0;
    for name in names.lines() {
        let base = name.strip_suffix("_pkey").unwrap_or(name);
        let table = match base.rsplit_once("_p") {
            Some((table, id)) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                assert!(PeriodId::parse(id).is_some(), "{name}");
                partitions += 1;
                table
            }
            _ => base,
        };
        assert!(fixed.contains(&table), "unexpected name {name}");
        assert!(!name.contains("DOC"), "{name}");
    }
    // Three partitions and their three keys for each of the two periods.
    assert_eq!(partitions, 12, "{names}");
}

/// `blindpass serve --store <conninfo>` runs on the database (its schema
/// applied), and a second node started on the same database refuses, with
/// a message and a hint, while the first runs.
#[test]
fn serve_runs_on_postgres_and_a_second_node_is_refused() {
    let Some(db) = postgres::database() else {
        return;
    };
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let serve = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_blindpass"))
            .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .args(["--key-horizon-days", "1", "--store", &db.conninfo()])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = serve(dirs.0.path());
    let stdout = first.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let listening = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    assert!(listening.contains("listening"), "{listening:?}");
    assert_eq!(db.sql("SELECT max(version) FROM schema_migrations"), "4");

    let second = serve(dirs.1.path()).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("another blindpass node"), "{stderr}");
    assert!(stderr.contains("several nodes share one"), "{stderr}");

    let _ = first.kill();
    let _ = first.wait();
}

/// The engine's figures (run alone: `cargo test --test postgres
/// engine_figures -- --ignored --nocapture`): charges through the
/// synchronous `Store` call from 16 threads, and the purge of a period of
/// `BLINDPASS_PG_PURGE_ROWS` records (a million by default, written by SQL
/// for speed, 200 bytes each as a sealed record is about).
#[test]
#[ignore = "a measurement, not a check: run it alone with --ignored --nocapture"]
fn engine_figures() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 16);
    let p = PeriodId::generate();
    let n = 2_000u32;
    let next = Arc::new(AtomicU32::new(0));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    // Kind bytes as the issuer's ('q' counters, 'i' entries).
                    let order = ChargeOrder {
                        quota_key: [&b"q"[..], &(i % 500).to_be_bytes()].concat(),
                        limit: None,
                        ..store_order(p, &[&b"i"[..], &i.to_be_bytes()].concat(), b"signature")
                    };
                    assert_eq!(store.charge_once(&order).unwrap(), Charge::Charged);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    eprintln!(
        "engine: {n} charges over 500 counters from 16 threads: {:.0}/s",
        f64::from(n) / t0.elapsed().as_secs_f64()
    );

    let rows: u64 = std::env::var("BLINDPASS_PG_PURGE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let big = PeriodId::generate();
    store
        .put_record(&big, &ResidentId::generate(), b"x")
        .unwrap();
    let t0 = Instant::now();
    db.sql(&format!(
        "INSERT INTO records (period, resident, sealed) \
         SELECT '\\x{big}'::bytea, int8send(g), convert_to(repeat('x', 200), 'UTF8') \
         FROM generate_series(1, {rows}) g"
    ));
    eprintln!(
        "engine: {rows} records written by SQL in {:?}",
        t0.elapsed()
    );
    let size = store.size_on_disk().unwrap();
    let t0 = Instant::now();
    assert_eq!(store.purge_period(&big).unwrap() as u64, rows + 1);
    eprintln!(
        "engine: purge of {} records ({} MiB database): {:?}",
        rows + 1,
        size / (1024 * 1024),
        t0.elapsed()
    );
    assert!(!store.periods_present().contains(&big));
}

/// A server refusal reaches the caller as the step and its SQLSTATE code:
/// the server's own message quotes the row it refused (shown first, with
/// the client the engine uses), the store's error does not.
#[test]
fn engine_errors_carry_the_sqlstate_never_the_values() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 2);
    let p = PeriodId::generate();
    store
        .put_record(&p, &ResidentId::generate(), b"ok")
        .unwrap();
    db.sql("ALTER TABLE records ADD CONSTRAINT short_records CHECK (length(sealed) < 8)");
    let secret = b"SEALED-BUT-STILL-NOT-FOR-LOGS";
    let secret_hex = hex::encode(secret);

    // The server's error, as tokio-postgres reports it, carries the row.
    let raw = runtime().block_on(async {
        let (client, connection) = db
            .conninfo()
            .parse::<tokio_postgres::Config>()
            .unwrap()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .execute(
                "INSERT INTO records (period, resident, sealed) VALUES ($1, $2, $3)",
                &[&p.as_bytes().as_slice(), &&[9u8; 16][..], &&secret[..]],
            )
            .await
            .unwrap_err()
    });
    let detail = raw.as_db_error().unwrap().detail().unwrap_or_default();
    assert!(detail.contains(&secret_hex), "{detail}");

    let refused = store
        .put_record(&p, &ResidentId::generate(), secret)
        .unwrap_err();
    let text = refused.to_string();
    assert!(matches!(refused, StoreError::Postgres(_)), "{refused:?}");
    assert!(text.contains("SQLSTATE 23514"), "{text}");
    assert!(
        !text.contains(&secret_hex) && !text.contains("Failing row"),
        "{text}"
    );
    assert!(!format!("{refused:?}").contains(&secret_hex));
}

/// A purge does not stall the other periods: while a transaction that has
/// read another period's records is still open (a request in flight), the
/// purge of one period may wait for it, but a new read of another period's
/// record does not queue behind the purge.
#[test]
fn a_purge_does_not_stall_reads_of_other_periods() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 4);
    let (gone, live) = (PeriodId::generate(), PeriodId::generate());
    store
        .put_record(&gone, &ResidentId::generate(), b"x")
        .unwrap();
    let resident = ResidentId::generate();
    store.put_record(&live, &resident, b"y").unwrap();

    let rt = runtime();
    let reader = rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&db.conninfo(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        // Another period's read, pruned to its partition: it holds a
        // lock on the parent table and that partition only.
        client
            .batch_execute(&format!(
                "BEGIN; SELECT count(*) FROM records WHERE period = '\\x{live}'"
            ))
            .await
            .unwrap();
        client
    });
    let purging = {
        let store = store.clone();
        std::thread::spawn(move || store.purge_period(&gone))
    };
    std::thread::sleep(Duration::from_millis(500));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let store = store.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let found = store.record(&live, &resident);
            let _ = tx.send((found, t0.elapsed()));
        });
    }
    let read = rx.recv_timeout(Duration::from_secs(5));
    rt.block_on(reader.batch_execute("COMMIT")).unwrap();
    assert_eq!(purging.join().unwrap().unwrap(), 1);
    let (found, waited) = read.expect("the read of another period queued behind the purge");
    assert_eq!(found.unwrap().as_deref(), Some(&b"y"[..]));
    eprintln!("a read of another period during the purge took {waited:?}");
}

/// A detach interrupted part-way (here: cancelled by a statement timeout
/// while it waited for a transaction in flight) leaves the partition
/// pending; the next purge finishes it with `FINALIZE` and drops it.
#[test]
fn a_purge_finishes_a_detach_left_pending() {
    let Some(db) = postgres::database() else {
        return;
    };
    let store = engine(&db, 2);
    let gone = PeriodId::generate();
    store
        .put_record(&gone, &ResidentId::generate(), b"x")
        .unwrap();
    let rt = runtime();
    let connect = || async {
        let (client, connection) = tokio_postgres::connect(&db.conninfo(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };
    let (reader, detacher) = rt.block_on(async { (connect().await, connect().await) });
    rt.block_on(reader.batch_execute("BEGIN; SELECT count(*) FROM records"))
        .unwrap();
    rt.block_on(detacher.batch_execute("SET statement_timeout = '300ms'"))
        .unwrap();
    let cancelled = rt.block_on(detacher.batch_execute(&format!(
        "ALTER TABLE records DETACH PARTITION records_p{gone} CONCURRENTLY"
    )));
    let error = cancelled.expect_err("the detach waits for the reader and times out");
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
    rt.block_on(reader.batch_execute("COMMIT")).unwrap();
    assert_eq!(
        db.sql(&format!(
            "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'records_p{gone}'::regclass"
        )),
        "t"
    );
    assert_eq!(store.purge_period(&gone).unwrap(), 1);
    assert_eq!(
        db.sql(&format!(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_p{gone}'"
        )),
        "0"
    );
}
