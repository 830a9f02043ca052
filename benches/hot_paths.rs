//! Criterion benchmarks of the hot operations, one group each:
//!
//! - `blind_sign/{pure-rust,openssl}` — the RSA private-key operation of
//!   issuance (checked: the result is verified before release);
//! - `issue_core/openssl` — `Authority::issue` without HTTP: key lookup,
//!   keyed hashes, idempotency read, the signature, the quota transaction
//!   and its flush;
//! - `store/charge_once` — the quota and idempotency transaction with its
//!   durable flush, alone: what issuance adds to the signature;
//! - `verify/{pure-rust,openssl}` and `verify/offline_check` — RSA-PSS
//!   verification, and the verifier's whole check of a QR payload;
//!   `verify/openssl_public_op_only` is the floor: the raw RSA public-key
//!   operation alone, as `openssl speed` times it, and `verify/qr_decode_only`
//!   the parse of a `BP1:` payload (base45 and the token);
//! - `keygen/rsa2048` — one issuer signing key (18 are made per 7 days);
//! - `record/{seal,open}` — a resident record (JSON of a full enrolment
//!   with a password hash) sealed and opened;
//! - `argon2id/default` — one password hash at the service's parameters;
//! - `keyring/replace` — `Vault::update` with a realistic ring (18 signing
//!   keys, 3 periods): serialize, seal, write, fsync, rename, fsync dir;
//! - `destroy_10k/{key_only,key_and_purge}` — a period of 10 000 residents
//!   destroyed: until the key is gone, and until the background purge of its
//!   sled entries has finished.
//!
//! Run with `cargo bench --bench hot_paths` (a filter such as `blind_sign`
//! selects groups). Setup failures abort the run: there is nothing to
//! measure without them, hence the `expect`s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blindpass::clock::{ManualClock, SystemClock};
use blindpass::crypto::blind::{Backend, IssuerSigningKey, begin_issuance, finalize};
use blindpass::crypto::kdf::{self, Argon2Params};
use blindpass::crypto::seal;
use blindpass::crypto::secret::{Passphrase, PeriodKey};
use blindpass::ids::PeriodId;
use blindpass::issuer::resident::PersonalData;
use blindpass::issuer::{Authority, AuthorityConfig, ResidentRecord};
use blindpass::protocol::directory::{Directory, PublishedKey};
use blindpass::protocol::permit::{ClassName, Window, WindowKind};
use blindpass::protocol::qr::encode_payload;
use blindpass::protocol::token::{Token, TokenChallenge, TokenRequest};
use blindpass::store::{ChargeOrder, Store, StoreConfig};
use blindpass::vault::Vault;
use blindpass::vault::keyring::{LivePeriod, SigningKeyEntry};
use blindpass::vault::master::PassphraseSlot;
use blindpass::verifier::DirectoryCache;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use time::macros::date;

const ISSUER: &str = "bench.invalid";

fn backends() -> Vec<(&'static str, Backend)> {
    let mut out = vec![("pure-rust", Backend::PureRust)];
    if cfg!(feature = "openssl") {
        out.push(("openssl", Backend::OpenSsl));
    }
    out
}

fn requests(key: &IssuerSigningKey, n: usize) -> Vec<TokenRequest> {
    let digest = TokenChallenge::permit(ISSUER).digest().expect("digest");
    (0..n)
        .map(|_| begin_issuance(key.public(), digest).expect("blind").0)
        .collect()
}

fn person(n: usize) -> PersonalData {
    PersonalData {
        full_name: format!("Bench Resident {n}"),
        date_of_birth: date!(1980 - 01 - 01),
        document_number: format!("B{n:09}"),
        address: format!("{n} Benchmark Street"),
        phone: format!("+7495{:07}", n % 10_000_000),
        employer_tax_number: None,
    }
}

fn blind_sign(c: &mut Criterion) {
    let key = IssuerSigningKey::generate().expect("keygen");
    let reqs = requests(&key, 64);
    let mut group = c.benchmark_group("blind_sign");
    group.measurement_time(Duration::from_secs(4));
    for (name, backend) in backends() {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                key.blind_sign_with(backend, &reqs[i]).expect("sign")
            })
        });
    }
    group.finish();
}

fn issue_core(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let authority = Authority::init(
        dir.path(),
        &Passphrase::new("bench passphrase".into()),
        Argon2Params::INSECURE_FAST_FOR_TESTS,
        AuthorityConfig {
            key_horizon_days: 1,
            ..AuthorityConfig::default()
        },
        Arc::new(SystemClock),
    )
    .expect("init");
    authority
        .open_period("bench", authority.now() + time::Duration::days(3), 0)
        .expect("period");
    authority.ensure_signing_keys().expect("keys");
    let password = Passphrase::new("bench password".into());
    authority
        .enrol_with_password(person(1), &password, Argon2Params::INSECURE_FAST_FOR_TESTS)
        .expect("enrol");
    let session = authority
        .login(
            "B000000001",
            &password,
            time::Duration::hours(1),
            Argon2Params::INSECURE_FAST_FOR_TESTS,
        )
        .expect("login")
        .expect("session");
    let owner = authority
        .session(&session.token)
        .expect("session lookup")
        .expect("owner");
    let window = Window::containing(WindowKind::Day, authority.now().date());
    let public = authority.public_key("medical", &window).expect("key");
    let digest = TokenChallenge::permit(&authority.config().issuer_name)
        .digest()
        .expect("digest");
    let mut group = c.benchmark_group("issue_core");
    group.measurement_time(Duration::from_secs(4));
    // Every issuance needs a fresh blinded message (a repeated one is an
    // idempotent replay, which skips the signature); blinding is untimed.
    group.bench_function(
        if cfg!(feature = "openssl") {
            "openssl"
        } else {
            "pure-rust"
        },
        |b| {
            b.iter_batched(
                || begin_issuance(&public, digest).expect("blind").0,
                |request| {
                    authority
                        .issue(&owner, "medical", &window, &request)
                        .expect("issue")
                },
                BatchSize::SmallInput,
            )
        },
    );
    group.finish();
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
    let period = PeriodId::generate();
    let mut group = c.benchmark_group("store");
    group.measurement_time(Duration::from_secs(3));
    let mut n = 0u64;
    group.bench_function("charge_once", |b| {
        b.iter(|| {
            n += 1;
            let mut idem = b"i".to_vec();
            idem.extend_from_slice(&n.to_be_bytes());
            // A stored blind signature is ~350 bytes of JSON.
            store
                .charge_once(&ChargeOrder {
                    period,
                    idem_key: idem,
                    quota_key: b"q-medical".to_vec(),
                    limit: None,
                    value: vec![0x5a; 350],
                })
                .expect("charge")
        })
    });
    group.finish();
}

fn verify(c: &mut Criterion) {
    let key = IssuerSigningKey::generate().expect("keygen");
    let digest = TokenChallenge::permit(ISSUER).digest().expect("digest");
    let tokens: Vec<Token> = (0..64)
        .map(|_| {
            let (request, pending) = begin_issuance(key.public(), digest).expect("blind");
            finalize(&pending, &key.blind_sign(&request).expect("sign")).expect("finalize")
        })
        .collect();
    let mut group = c.benchmark_group("verify");
    group.measurement_time(Duration::from_secs(3));
    for (name, backend) in backends() {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % tokens.len();
                key.public()
                    .verify_signature_with(backend, &tokens[i])
                    .expect("verify")
            })
        });
    }
    let now = time::OffsetDateTime::now_utc();
    let directory = Directory {
        issuer_name: ISSUER.into(),
        issuer_request_uri: "http://bench.invalid/token-request".into(),
        generated_at: now.unix_timestamp(),
        max_age_s: 3600,
        keys: vec![PublishedKey::new(
            key.public().spki(),
            ClassName::new("medical").expect("class"),
            Window::containing(WindowKind::Day, now.date()),
        )],
    };
    #[cfg(feature = "openssl")]
    {
        // The floor of any RSA-2048 verification: s^e mod n and nothing
        // else (no digest, no padding check, no per-call set-up).
        let rsa = openssl::pkey::PKey::public_key_from_der(key.public().spki())
            .and_then(|k| k.rsa())
            .expect("SPKI parses in OpenSSL");
        let mut out = vec![0u8; 256];
        let mut i = 0;
        group.bench_function("openssl_public_op_only", |b| {
            b.iter(|| {
                i = (i + 1) % tokens.len();
                rsa.public_decrypt(
                    &tokens[i].authenticator,
                    &mut out,
                    openssl::rsa::Padding::NONE,
                )
                .expect("public op")
            })
        });
    }
    let cache = DirectoryCache::new(directory, now, None).expect("directory");
    let payloads: Vec<String> = tokens.iter().map(encode_payload).collect();
    let mut i = 0;
    group.bench_function("qr_decode_only", |b| {
        b.iter(|| {
            i = (i + 1) % payloads.len();
            blindpass::protocol::qr::decode_payload(&payloads[i]).expect("decode")
        })
    });
    let mut i = 0;
    group.bench_function("offline_check", |b| {
        b.iter(|| {
            i = (i + 1) % payloads.len();
            assert!(
                cache
                    .check(&payloads[i], now, time::Duration::minutes(5))
                    .verdict
                    .is_valid()
            );
        })
    });
    group.finish();
}

fn record(c: &mut Criterion) {
    let key = [7u8; 32];
    let aad = b"blindpass-record-v1 period-id resident-id";
    // A record as enrolment over HTTP stores it: personal data and the
    // Argon2id hash of the password.
    let hash = blindpass::issuer::accounts::hash_password(
        &Passphrase::new("bench password".into()),
        Argon2Params::INSECURE_FAST_FOR_TESTS,
    )
    .expect("hash");
    let plain = serde_json::to_vec(&ResidentRecord {
        personal: person(123_456),
        password_hash: Some(hash),
    })
    .expect("json");
    let sealed = seal::seal(&key, aad, &plain).expect("seal");
    let mut group = c.benchmark_group("record");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function(format!("seal_{}B", plain.len()), |b| {
        b.iter(|| seal::seal(&key, aad, &plain).expect("seal"))
    });
    group.bench_function(format!("open_{}B", plain.len()), |b| {
        b.iter(|| seal::open(&key, aad, &sealed).expect("open"))
    });
    group.finish();
}

fn argon2(c: &mut Criterion) {
    let password = Passphrase::new("bench password".into());
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("default", |b| {
        b.iter(|| {
            kdf::argon2id(&password, b"sixteen byte slt", Argon2Params::DEFAULT).expect("argon2")
        })
    });
    group.finish();
}

fn keygen(c: &mut Criterion) {
    let mut group = c.benchmark_group("keygen");
    group.sample_size(10);
    group.sampling_mode(criterion::SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("rsa2048", |b| {
        b.iter(|| IssuerSigningKey::generate().expect("keygen"))
    });
    group.finish();
}

fn keyring(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let slot = PassphraseSlot::create(
        &dir.path().join("master.slot"),
        &Passphrase::new("bench".into()),
        Argon2Params::INSECURE_FAST_FOR_TESTS,
    )
    .expect("slot");
    let mut vault = Vault::create(dir.path(), Box::new(slot)).expect("vault");
    // 18 signing keys is what three classes need for a 7-day horizon; one
    // key cloned costs the same to serialize as 18 distinct ones.
    let signing = IssuerSigningKey::generate().expect("keygen");
    let now = time::OffsetDateTime::now_utc();
    vault
        .update(|ring| {
            for d in 0..18 {
                ring.signing_keys.push(SigningKeyEntry {
                    class: ClassName::new("medical").expect("class"),
                    window: Window::containing(
                        WindowKind::Day,
                        now.date() + time::Duration::days(d),
                    ),
                    key: signing.clone(),
                });
            }
            for p in 0..3 {
                ring.periods.push(LivePeriod {
                    id: PeriodId::generate(),
                    name: format!("period-{p}"),
                    opened_at: now,
                    ends_at: now + time::Duration::days(14),
                    grace_s: 86_400,
                    key: PeriodKey::generate(),
                    destroy_pending: false,
                });
            }
        })
        .expect("fill ring");
    let mut group = c.benchmark_group("keyring");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("replace", |b| {
        b.iter(|| {
            vault
                .update(|ring| ring.periods[0].grace_s ^= 1)
                .expect("update")
        })
    });
    group.finish();
}

/// One issuer with its signing keys, reused by every iteration: each opens
/// a fresh period, enrols `N` residents (untimed), ends it, and destroys it.
fn destroy(c: &mut Criterion) {
    const N: usize = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let authority = Authority::init(
        dir.path(),
        &Passphrase::new("bench passphrase".into()),
        Argon2Params::INSECURE_FAST_FOR_TESTS,
        AuthorityConfig::default(),
        Arc::new(clock.clone()),
    )
    .expect("init");
    authority.ensure_signing_keys().expect("keys");
    let mut round = 0usize;
    let mut fill = |authority: &Authority| -> PeriodId {
        let period = authority
            .open_period(
                &format!("bench-{round}"),
                authority.now() + time::Duration::days(1),
                0,
            )
            .expect("period");
        for i in 0..N {
            authority
                .enrol(&period, person(round * N + i), None)
                .expect("enrol");
        }
        authority.store().flush().expect("flush");
        round += 1;
        clock.advance(time::Duration::days(2));
        period
    };
    let mut group = c.benchmark_group("destroy_10k");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("key_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let period = fill(&authority);
                authority.dangerous_inject_fault(Some(blindpass::vault::FaultPoint::BeforePurge));
                let t = Instant::now();
                let stopped = authority.destroy_period(&period);
                total += t.elapsed();
                assert!(stopped.is_err(), "the fault stops it before the purge");
                authority.dangerous_inject_fault(None);
                authority.destroy_period(&period).expect("purge");
                authority.wait_for_purges();
            }
            total
        })
    });
    group.bench_function("key_and_purge", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let period = fill(&authority);
                let t = Instant::now();
                authority.destroy_period(&period).expect("destroy");
                authority.wait_for_purges();
                total += t.elapsed();
                assert_eq!(authority.store().record_count(&period).expect("count"), 0);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(
    benches, blind_sign, issue_core, store, verify, record, argon2, keygen, keyring, destroy
);
criterion_main!(benches);
