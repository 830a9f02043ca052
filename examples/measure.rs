//! Quick figures for the closing notes and docs: seal/open per second,
//! key-ring replace time, blind-sign per second, and issuance over HTTP
//! on this machine, measured in one run. Not a test; run with
//! `cargo run --release --example measure`.

use std::sync::Arc;
use std::time::Instant;

use blindpass::clock::SystemClock;
use blindpass::crypto::blind::{Backend, IssuerSigningKey, begin_issuance};
use blindpass::crypto::kdf::Argon2Params;
use blindpass::crypto::seal;
use blindpass::crypto::secret::Passphrase;
use blindpass::issuer::{Authority, AuthorityConfig};

fn per_second(n: usize, f: impl FnMut()) -> f64 {
    let mut f = f;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let key = [7u8; 32];
    let record = vec![0x42u8; 300];
    let sealed = seal::seal(&key, b"aad", &record).unwrap();
    let seals = per_second(100_000, || {
        seal::seal(&key, b"aad", &record).unwrap();
    });
    let opens = per_second(100_000, || {
        seal::open(&key, b"aad", &sealed).unwrap();
    });
    println!("seal (300 B record):  {seals:>10.0} /s");
    println!("open (300 B record):  {opens:>10.0} /s");

    let signer = IssuerSigningKey::generate().unwrap();
    let (request, pending) = begin_issuance(signer.public(), [1; 32]).unwrap();
    let token = blindpass::crypto::blind::finalize(&pending, &signer.blind_sign(&request).unwrap())
        .unwrap();
    for backend in [Backend::PureRust, Backend::OpenSsl] {
        let signs = per_second(300, || {
            signer.blind_sign_with(backend, &request).unwrap();
        });
        let verifies = per_second(3000, || {
            signer
                .public()
                .verify_signature_with(backend, &token)
                .unwrap();
        });
        println!(
            "{backend:?}: blind_sign (1 core) {signs:>7.0} /s, verify (1 core) {verifies:>7.0} /s"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::init(
        dir.path(),
        &Passphrase::new("measure".into()),
        Argon2Params::DEFAULT,
        AuthorityConfig {
            key_horizon_days: 7,
            ..AuthorityConfig::default()
        },
        Arc::new(SystemClock),
    )
    .unwrap();
    let t = Instant::now();
    authority.ensure_signing_keys().unwrap();
    println!(
        "keygen, 18 signing keys: {:>7.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let n = 20;
    let t = Instant::now();
    for i in 0..n {
        authority
            .open_period(
                &format!("p{i}"),
                authority.now() + time::Duration::days(1),
                0,
            )
            .unwrap();
    }
    println!(
        "key-ring replace (18 RSA keys, fsync'd): {:>5.1} ms each",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );

    // Raw blind signing on every core, for comparison with HTTP issuance.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let per_thread = 200;
    let t = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                for _ in 0..per_thread {
                    signer.blind_sign(&request).unwrap();
                }
            });
        }
    });
    let raw_all = (cores * per_thread) as f64 / t.elapsed().as_secs_f64();
    println!("blind_sign, default backend ({cores} cores): {raw_all:>9.0} /s");
    let clients = 4 * cores;
    let http = issuance_over_http(Arc::new(authority), clients);
    println!(
        "issuance over HTTP ({clients} client threads, same box): {http:.0} passes/s = {:.2} x raw blind_sign on {cores} cores",
        http / raw_all
    );
}

/// Enrols one resident, prepares blinded `medical` requests before the
/// clock starts (blinding is the client's cost), then issues them over
/// HTTP from `clients` threads.
fn issuance_over_http(authority: Arc<Authority>, clients: usize) -> f64 {
    use blindpass::crypto::blind::IssuerPublicKey;
    use blindpass::http::{AppState, HttpConfig};
    use blindpass::protocol::permit::{Window, WindowKind};
    use blindpass::protocol::token::TokenChallenge;

    let period = authority
        .open_period("bench", authority.now() + time::Duration::days(3), 0)
        .unwrap();
    let _ = period;
    let state = AppState::new(authority.clone(), HttpConfig::default(), "admin");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            blindpass::http::serve(listener, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    let url = format!("http://{}", rx.recv().unwrap());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let enrol = serde_json::json!({"full_name": "Bench Resident", "date_of_birth": "1980-01-01",
        "document_number": "BENCH0001", "address": "Bench street 1", "phone": "+74950000001",
        "password": "bench password"});
    agent
        .post(&format!("{url}/v1/residents"))
        .send_json(&enrol)
        .unwrap();
    let mut resp = agent
        .post(&format!("{url}/v1/sessions"))
        .send_json(
            serde_json::json!({"document_number": "BENCH0001", "password": "bench password"}),
        )
        .unwrap();
    let login: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let session = login["session_token"].as_str().unwrap().to_owned();
    let window = Window::containing(WindowKind::Day, authority.now().date());
    let key: IssuerPublicKey = authority.public_key("medical", &window).unwrap();
    let digest = TokenChallenge::permit(&authority.config().issuer_name)
        .digest()
        .unwrap();
    let per_client = 150;
    let requests: Vec<Vec<Vec<u8>>> = (0..clients)
        .map(|_| {
            (0..per_client)
                .map(|_| begin_issuance(&key, digest).unwrap().0.encode())
                .collect()
        })
        .collect();
    let target = format!("{url}/token-request?class=medical&window={window}");
    let t = Instant::now();
    std::thread::scope(|scope| {
        for batch in &requests {
            let (agent, target, session) = (agent.clone(), &target, &session);
            scope.spawn(move || {
                for body in batch {
                    let resp = agent
                        .post(target)
                        .header("Authorization", &format!("Bearer {session}"))
                        .header("Content-Type", "application/private-token-request")
                        .send(&body[..])
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 200);
                }
            });
        }
    });
    (clients * per_client) as f64 / t.elapsed().as_secs_f64()
}
