//! The issuer as a client that knows only RFC 9577/9578 sees it: a pass
//! from the challenge, the RFC directory and a bare `TokenRequest`, and
//! problem+json with a stable type for malformed input on every route.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use blindpass::crypto::blind::{IssuerPublicKey, begin_issuance, finalize};
use blindpass::protocol::api::{ProblemDocument, ProblemType, paths};
use blindpass::protocol::directory::{RfcDirectory, decode_token_key};
use blindpass::protocol::permit::Window;
use blindpass::protocol::qr::encode_payload;
use blindpass::protocol::token::{TokenChallenge, TokenResponse};
use blindpass::verifier::{DirectoryCache, Verdict};
use common::{ADMIN, START, TestServer, key_for};
use time::Duration;

/// A parameter of a `WWW-Authenticate: PrivateToken a="…", b="…"` value.
fn auth_param<'a>(header: &'a str, name: &str) -> &'a str {
    let rest = header
        .strip_prefix("PrivateToken ")
        .expect("PrivateToken scheme");
    rest.split(", ")
        .find_map(|p| p.strip_prefix(&format!("{name}=\"")))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {name} in {header}"))
}

#[test]
fn a_standard_client_obtains_a_pass_with_only_the_rfc_body_and_a_session() {
    let server = TestServer::start();
    server.enrol("E1000001", None);
    let session = server.login("E1000001");
    let agent = server.agent();

    // RFC 9577: the challenge names the issuer's token key to use.
    let resp = agent
        .get(&format!(
            "{}/v1/challenge?class=personal&window=2026-12-02",
            server.url
        ))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let header = resp
        .headers()
        .get("www-authenticate")
        .expect("a PrivateToken challenge")
        .to_str()
        .unwrap()
        .to_owned();
    let challenge = URL_SAFE.decode(auth_param(&header, "challenge")).unwrap();
    let token_key = auth_param(&header, "token-key").to_owned();

    // RFC 9578 §4: the directory says where requests go and lists the key.
    let mut resp = agent
        .get(&format!(
            "{}/.well-known/private-token-issuer-directory",
            server.url
        ))
        .call()
        .unwrap();
    let rfc: RfcDirectory =
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert!(rfc.token_keys.iter().any(|k| k.token_key == token_key));
    let path = rfc
        .issuer_request_uri
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap();
    assert_eq!(path, "/token-request");

    // RFC 9578 §6.1: the request, with no query and no class or window.
    let key = IssuerPublicKey::from_spki(&decode_token_key(&token_key).unwrap()).unwrap();
    let digest = TokenChallenge::decode(&challenge)
        .unwrap()
        .digest()
        .unwrap();
    let (request, pending) = begin_issuance(&key, digest).unwrap();
    let mut resp = agent
        .post(&format!("{}{path}", server.url))
        .header("Authorization", &format!("Bearer {session}"))
        .header("Content-Type", "application/private-token-request")
        .send(&request.encode()[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let response = TokenResponse::decode(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    let token = finalize(&pending, &response).unwrap();

    let cache = DirectoryCache::new(server.directory(), START, None).unwrap();
    let at = START + Duration::days(1) + Duration::hours(3);
    let report = cache.check(&encode_payload(&token), at, Duration::minutes(5));
    match report.verdict {
        Verdict::Valid(pass) => {
            assert_eq!(pass.class().as_str(), "personal");
        }
        other => panic!("not valid: {other:?}"),
    }

    // Class and window stay optional, but must agree with the key.
    let (request, _) = begin_issuance(&key, digest).unwrap();
    let (status, body) =
        server.post_token_request(&session, "personal", "2026-12-03", &request.encode());
    assert_eq!(status, 422);
    let body: ProblemDocument = serde_json::from_slice(&body).unwrap();
    let name = body.kind.as_deref().and_then(ProblemType::from_uri);
    assert_eq!(name, Some(ProblemType::KeyMismatch));
    let (status, _) =
        server.post_token_request(&session, "personal", "2026-12-02", &request.encode());
    assert_eq!(status, 200);
}

/// Method, path, headers and body of one request.
type Case = (
    &'static str,
    String,
    Vec<(&'static str, String)>,
    Option<Vec<u8>>,
);

/// Bytes that must never come back in an answer.
const MARK: &str = "QZXMARK";

/// Sends one request; returns status, content type and body text.
fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> (u16, String, String) {
    let uri = format!("{}{path}", server.url);
    let mut builder = ureq::http::Request::builder().method(method).uri(&uri);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let agent = server.agent();
    let mut resp = match body {
        Some(body) => agent.run(builder.body(body).unwrap()).unwrap(),
        None => agent.run(builder.body(()).unwrap()).unwrap(),
    };
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (resp.status().as_u16(), kind, text)
}

/// `(name, template)` of every route constant in `protocol::api::paths`,
/// read from its source so that a constant added there is seen here. A
/// constant of a nested module is named by its path below `paths`
/// (`pages::VERIFY`).
fn route_constants() -> Vec<(String, String)> {
    let source = include_str!("../src/protocol/api.rs");
    let (_, module) = source.split_once("pub mod paths {").expect("mod paths");
    let (module, _) = module.split_once("\n}\n").expect("end of mod paths");
    let mut nested: Vec<&str> = Vec::new();
    let mut constants = Vec::new();
    for line in module.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(" {"))
        {
            nested.push(name);
        } else if line == "}" {
            nested.pop();
        } else if let Some((name, value)) = line
            .strip_prefix("pub const ")
            .and_then(|l| l.split_once(": &str = "))
        {
            let value = value.strip_suffix(';').expect(line).trim_matches('"');
            let name = nested.iter().chain([&name]).copied();
            constants.push((name.collect::<Vec<_>>().join("::"), value.to_owned()));
        }
    }
    constants
}

/// The names of the `paths` constants the issuer's router serves: its own
/// routes and the web pages' it merges in.
fn router_routes() -> Vec<String> {
    let names = |source: &str, function: &str| -> Vec<String> {
        let (_, body) = source.split_once(function).expect(function);
        let (body, _) = body.split_once("\n}\n").expect(function);
        body.split("paths::")
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect()
            })
            .collect()
    };
    let mut routes = names(include_str!("../src/http/mod.rs"), "pub fn router(");
    let merges_pages = include_str!("../src/http/mod.rs").contains(".merge(web::routes())");
    assert!(merges_pages, "the router no longer merges web::routes()");
    routes.extend(names(include_str!("../src/http/web.rs"), "pub fn routes<"));
    routes
}

/// Whether `path` (query ignored) is one of the router's `template`:
/// `{name}` takes one segment, `{*name}` the rest.
fn route_matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let mut want = template.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), Some(h)) if w.starts_with("{*") => return !h.is_empty(),
            (Some(w), Some(h)) if w.starts_with('{') => {
                if h.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

#[test]
fn the_route_matcher_reads_templates_as_the_router_does() {
    assert!(route_matches(paths::HEALTHZ, "/healthz"));
    assert!(!route_matches(paths::HEALTHZ, "/healthz/x"));
    assert!(route_matches(
        paths::ADMIN_PERIOD_END,
        "/v1/admin/periods/ab/end"
    ));
    assert!(!route_matches(
        paths::ADMIN_PERIOD_END,
        "/v1/admin/periods//end"
    ));
    assert!(!route_matches(
        paths::ADMIN_PERIOD_END,
        "/v1/admin/periods/ab/extend"
    ));
    assert!(route_matches(paths::pages::WALLET, "/"));
    assert!(!route_matches(paths::pages::WALLET, "/verify"));
    assert!(route_matches(paths::pages::ASSET, "/assets/style.css"));
    assert!(route_matches(paths::AUDIT_TILE, "/audit/tile/0/000"));
    assert!(!route_matches(paths::AUDIT_TILE, "/audit/tile/"));
    assert!(route_matches(
        paths::TOKEN_REQUEST,
        "/token-request?class=a"
    ));
}

#[test]
fn malformed_input_to_every_route_is_problem_json_with_a_stable_type_and_no_echo() {
    let server = TestServer::start();
    server.enrol("E1000001", None);
    let session = server.login("E1000001");
    let resident = vec![("Authorization", format!("Bearer {session}"))];
    let admin = vec![("Authorization", format!("Bearer {ADMIN}"))];
    let json_type = ("Content-Type", "application/json".to_owned());
    let token_type = (
        "Content-Type",
        "application/private-token-request".to_owned(),
    );
    let with = |auth: &[(&'static str, String)], extra: (&'static str, String)| {
        let mut h = auth.to_vec();
        h.push(extra);
        h
    };
    let bad_json = Some(format!("{{\"{MARK}\": [").into_bytes());
    let wrong_json = Some(format!("{{\"full_name\": 7, \"{MARK}\": 1}}").into_bytes());
    let big = Some(format!("{{\"{MARK}\": \"{}\"}}", "x".repeat(64 * 1024)).into_bytes());
    // "NC" as a token type: an old answer said "unknown token type 0x434e".
    let mut bad_token = b"NC".to_vec();
    bad_token.extend_from_slice(MARK.as_bytes());
    let mut long_token = vec![0u8, 2, 0];
    long_token.extend_from_slice(&[0x51; 300]);
    let none: Vec<(&str, String)> = Vec::new();

    // Every route of the router, each with what it can get wrong.
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // Wrong methods, one per route (checked below against the router).
        ("POST", paths::HEALTHZ.into(), none.clone(), None),
        ("POST", paths::READYZ.into(), none.clone(), None),
        ("PUT", paths::METRICS.into(), none.clone(), None),
        ("POST", paths::RFC_DIRECTORY.into(), none.clone(), None),
        ("DELETE", paths::DIRECTORY.into(), none.clone(), None),
        ("GET", paths::RESIDENTS.into(), none.clone(), None),
        ("GET", paths::RESIDENT_ME.into(), resident.clone(), None),
        ("GET", paths::SESSIONS.into(), none.clone(), None),
        ("GET", paths::TOKEN_REQUEST.into(), resident.clone(), None),
        ("POST", paths::CHALLENGE.into(), none.clone(), None),
        ("DELETE", paths::ADMIN_PERIODS.into(), admin.clone(), None),
        ("GET", paths::admin_period_extend(MARK), admin.clone(), None),
        ("GET", paths::admin_period_end(MARK), admin.clone(), None),
        ("POST", paths::AUDIT_CHECKPOINT.into(), none.clone(), None),
        ("POST", paths::AUDIT_KEY.into(), none.clone(), None),
        ("POST", paths::audit_tile("0/000"), none.clone(), None),
        // Pages, not API, but answered alike.
        ("POST", paths::pages::WALLET.into(), none.clone(), None),
        ("PUT", paths::pages::VERIFY.into(), none.clone(), None),
        ("DELETE", paths::pages::TRANSPARENCY.into(), none.clone(), None),
        ("POST", paths::pages::SERVICE_WORKER.into(), none.clone(), None),
        ("POST", paths::pages::ASSET.replace("{name}", "style.css"), none.clone(), None),
        // Unknown paths.
        ("GET", format!("/{MARK}"), none.clone(), None),
        ("POST", format!("/v1/{MARK}?{MARK}=1"), none.clone(), bad_json.clone()),
        // Bad JSON, wrong JSON, wrong content type, oversize bodies.
        ("POST", "/v1/residents".into(), with(&none, json_type.clone()), bad_json.clone()),
        ("POST", "/v1/residents".into(), with(&none, json_type.clone()), wrong_json.clone()),
        ("POST", "/v1/residents".into(), with(&none, ("Content-Type", format!("text/{MARK}"))), bad_json.clone()),
        ("POST", "/v1/residents".into(), with(&none, json_type.clone()), big.clone()),
        ("POST", "/v1/sessions".into(), with(&none, json_type.clone()), bad_json.clone()),
        ("POST", "/v1/sessions".into(), with(&none, json_type.clone()), wrong_json.clone()),
        ("POST", "/v1/sessions".into(), none.clone(), bad_json.clone()),
        ("POST", "/v1/sessions".into(), with(&none, json_type.clone()), big.clone()),
        ("POST", "/v1/admin/periods".into(), with(&admin, json_type.clone()), bad_json.clone()),
        ("POST", "/v1/admin/periods".into(), with(&admin, json_type.clone()), wrong_json.clone()),
        ("POST", "/v1/admin/periods".into(), admin.clone(), bad_json.clone()),
        ("POST", "/v1/admin/periods".into(), with(&admin, json_type.clone()), big.clone()),
        // Bad path parameters: not a period id, not UTF-8.
        ("POST", format!("/v1/admin/periods/{MARK}/extend"), with(&admin, json_type.clone()), Some(b"{}".to_vec())),
        ("POST", format!("/v1/admin/periods/%FF%FE{MARK}/extend"), with(&admin, json_type.clone()), Some(b"{}".to_vec())),
        ("POST", format!("/v1/admin/periods/{MARK}/end"), admin.clone(), None),
        ("POST", format!("/v1/admin/periods/%FF%FE{MARK}/end"), admin.clone(), None),
        ("GET", format!("/audit/tile/{MARK}/000"), none.clone(), None),
        ("GET", format!("/audit/tile/%FF%FE{MARK}"), none.clone(), None),
        // Bad queries.
        ("POST", format!("/token-request?class=a&class={MARK}"), with(&resident, token_type.clone()), Some(bad_token.clone())),
        ("POST", format!("/token-request?window={MARK}"), with(&resident, token_type.clone()), Some(bad_token.clone())),
        ("GET", format!("/v1/challenge?class={MARK}"), none.clone(), None),
        ("GET", format!("/v1/challenge?class={MARK}&window={MARK}"), none.clone(), None),
        ("GET", format!("/v1/challenge?class={MARK}&window=2026-12-02"), none.clone(), None),
        // Token requests the issuer cannot process, and other bodies.
        ("POST", "/token-request".into(), with(&resident, token_type.clone()), Some(bad_token.clone())),
        ("POST", "/token-request".into(), with(&resident, token_type.clone()), Some(long_token.clone())),
        ("POST", "/token-request".into(), with(&resident, json_type.clone()), bad_json.clone()),
        ("POST", "/token-request".into(), with(&resident, token_type.clone()), big.clone()),
        ("POST", "/token-request".into(), with(&none, token_type.clone()), Some(bad_token.clone())),
        ("DELETE", "/v1/residents/me".into(), vec![("Authorization", format!("Bearer {MARK}"))], None),
        ("GET", "/v1/admin/periods".into(), vec![("Authorization", format!("Bearer {MARK}"))], None),
    ];
    let stable = [
        ProblemType::BadRequest,
        ProblemType::NotFound,
        ProblemType::MethodNotAllowed,
        ProblemType::PayloadTooLarge,
        ProblemType::UnsupportedMediaType,
        ProblemType::MalformedJson,
        ProblemType::MalformedQuery,
        ProblemType::InvalidInput,
        ProblemType::BadTokenRequest,
        ProblemType::Unauthorized,
        ProblemType::Forbidden,
        ProblemType::UnknownClass,
    ];
    // The router's routes, by template, the pages' (`pages::*`, merged in
    // from `web::routes()`) among them. The witness's own routes
    // (`WITNESS_*`) are served by `blindpass witness`, not by the issuer;
    // tests/witness.rs drives them. Any other constant must be routed here.
    let constants = route_constants();
    let routed = router_routes();
    let unrouted: Vec<&str> = constants
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !routed.iter().any(|r| r == name))
        .collect();
    assert_eq!(unrouted, ["WITNESS_ADD_CHECKPOINT", "WITNESS_KEY"]);
    let templates: Vec<&str> = constants
        .iter()
        .filter(|(name, _)| routed.contains(name))
        .map(|(_, template)| template.as_str())
        .collect();
    assert_eq!(templates.len(), routed.len(), "{routed:?}");
    let mut refused_method = Vec::new();
    for (method, path, headers, body) in cases {
        let (status, kind, text) = send(&server, method, &path, &headers, body);
        let what = format!("{method} {path}: {status} {kind} {text}");
        assert!((400..500).contains(&status), "{what}");
        assert_eq!(kind, "application/problem+json", "{what}");
        let problem: ProblemDocument = serde_json::from_str(&text).expect(&what);
        let name = problem.kind.as_deref().and_then(ProblemType::from_uri);
        assert!(name.is_some_and(|n| stable.contains(&n)), "{what}");
        assert_eq!(problem.status, Some(status), "{what}");
        let lower = text.to_lowercase();
        assert!(!lower.contains(&MARK.to_lowercase()), "{what}");
        assert!(!lower.contains("434e") && !lower.contains("0x"), "{what}");
        let route = templates.iter().find(|t| route_matches(t, &path));
        match (route, name) {
            (Some(route), Some(ProblemType::MethodNotAllowed)) => refused_method.push(*route),
            (Some(_), _) => {}
            // A path of no route is not found, whatever the method.
            (None, _) => assert_eq!(name, Some(ProblemType::NotFound), "{what}"),
        }
    }
    // A route added without a case here fails: every one was exercised.
    for template in &templates {
        assert!(
            refused_method.contains(template),
            "{template}: no wrong-method case above"
        );
    }
    // A wrong method still says which methods are allowed.
    let resp = server
        .agent()
        .post(&format!("{}/healthz", server.url))
        .send_empty()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert!(resp.headers().get("allow").is_some());
    // 422, not 400, for a TokenRequest the issuer cannot process.
    for body in [bad_token, long_token] {
        let (status, _, text) = send(
            &server,
            "POST",
            "/token-request",
            &with(&resident, token_type.clone()),
            Some(body),
        );
        assert_eq!(status, 422, "{text}");
    }
    // Still serving.
    assert_eq!(server.get_json("/healthz").0, 200);
}

#[test]
fn a_key_id_two_kept_keys_share_is_ambiguous_unless_the_query_names_the_key() {
    let server = TestServer::start();
    server.enrol("E1000001", None);
    let session = server.login("E1000001");
    let window = Window::parse("2026-12-02").unwrap();
    // A ring from before truncated ids were kept unique: medical's key
    // for the window has the same truncated id as personal's.
    server
        .authority
        .dangerous_share_signing_key("medical", "personal", &window)
        .unwrap();
    let (key, digest) = key_for(&server.directory(), "personal", window);
    let (request, _) = begin_issuance(&key, digest).unwrap();
    let body = request.encode();
    let token_type = vec![(
        "Content-Type",
        "application/private-token-request".to_owned(),
    )];
    let mut headers = token_type.clone();
    headers.push(("Authorization", format!("Bearer {session}")));
    // Without class, the request cannot say which of the two keys it means.
    for query in ["", "?window=2026-12-02"] {
        let path = format!("/token-request{query}");
        let (status, kind, text) = send(&server, "POST", &path, &headers, Some(body.clone()));
        assert_eq!(status, 422, "{path}: {text}");
        assert_eq!(kind, "application/problem+json", "{path}: {text}");
        let problem: ProblemDocument = serde_json::from_str(&text).unwrap();
        let name = problem.kind.as_deref().and_then(ProblemType::from_uri);
        assert_eq!(name, Some(ProblemType::AmbiguousKey), "{path}: {text}");
    }
    // Naming the class chooses the key, and the pass is signed.
    for class in ["medical", "personal"] {
        let (status, text) = server.post_token_request(&session, class, "2026-12-02", &body);
        assert_eq!(status, 200, "{class}: {}", String::from_utf8_lossy(&text));
    }
}
