//! Machine tokens (issue 11, spec §5) end to end against MockClerk: every type, opaque and JWT,
//! valid / revoked / expired / unknown / wrong type / secret key refused / Backend API down /
//! 429, the cache and its coalescing, and the abuse bound — with the calls to the mock counted.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix_web::{
    dev::{Service, ServiceResponse},
    http::{header, StatusCode},
    test, web, App, HttpResponse,
};
use clerk_actix::{
    clerk_protected,
    extract::{ClerkAuth, ClerkMachine},
    machine::MachinePolicy,
    testing::{Endpoint, Fault, MockClerk},
    AuthErrorReason, ClerkEvent, ClerkMiddleware, ClerkSession, TokenType, TokenTypes,
};
use clerk_actix_tests::{bearer, Recorder};
use serde_json::Value;

const VERIFY: [Endpoint; 3] = [
    Endpoint::ApiKeysVerify,
    Endpoint::M2mTokensVerify,
    Endpoint::OAuthTokensVerify,
];

fn verify_calls(mock: &MockClerk) -> u64 {
    VERIFY.iter().map(|e| mock.requests(*e)).sum()
}

/// `/machine` (machine types in `accepts`, `ClerkMachine`), `/any` (everything, `ClerkAuth`)
/// and `/me` (the default: sessions only).
async fn app(
    clerk: clerk_actix::Clerk,
    accepts: TokenTypes,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> {
    test::init_service(
        App::new()
            .service(
                web::scope("/machine")
                    .wrap(ClerkMiddleware::new(clerk.clone()).accepts_token(accepts))
                    .route(
                        "",
                        web::get().to(|m: ClerkMachine| async move {
                            HttpResponse::Ok().json(m.into_inner())
                        }),
                    ),
            )
            .service(
                web::scope("/any")
                    .wrap(ClerkMiddleware::new(clerk.clone()).accepts_token(TokenTypes::ANY))
                    .route(
                        "",
                        web::get().to(|auth: ClerkAuth| async move {
                            let who = match &auth {
                                ClerkAuth::Session(s) => format!("session:{}", s.user_id()),
                                ClerkAuth::Machine(m) => format!("machine:{}", m.subject()),
                            };
                            HttpResponse::Ok().body(who)
                        }),
                    ),
            )
            .service(web::scope("").wrap(ClerkMiddleware::new(clerk)).route(
                "/me",
                web::get().to(|s: ClerkSession| async move {
                    HttpResponse::Ok().body(s.user_id().to_owned())
                }),
            )),
    )
    .await
}

async fn call<B: actix_web::body::MessageBody>(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    path: &str,
    token: &str,
) -> (StatusCode, Option<String>, Value) {
    let res = test::call_service(
        app,
        test::TestRequest::get()
            .uri(path)
            .insert_header(bearer(token))
            .to_request(),
    )
    .await;
    let status = res.status();
    let retry = res
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let Ok(bytes) = actix_web::body::to_bytes(res.into_body()).await else {
        panic!("the body could not be read");
    };
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, retry, body)
}

fn reason(body: &Value) -> &str {
    body["reason"].as_str().unwrap_or("<no reason>")
}

#[actix_web::test]
async fn each_opaque_type_verifies_with_one_call_then_from_the_cache() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), TokenTypes::MACHINE).await;
    let ak = mock.create_api_key("user_alice", "ci", &["read:reports"]);
    let mt = mock.create_m2m_token("mch_billing", &["mch_reports"], 3600);
    let oat = mock.create_oauth_token("client_app", "user_bob", &["profile", "email"], 3600);
    for (token, ty, subject, endpoint) in [
        (&ak, "api_key", "user_alice", Endpoint::ApiKeysVerify),
        (&mt, "m2m_token", "mch_billing", Endpoint::M2mTokensVerify),
        (&oat, "oauth_token", "user_bob", Endpoint::OAuthTokensVerify),
    ] {
        let (status, _, body) = call(&app, "/machine", token).await;
        assert_eq!(status, StatusCode::OK, "{ty}: {body}");
        assert_eq!(body["token_type"], ty);
        assert_eq!(body["subject"], subject);
        assert!(body["id"].as_str().unwrap().len() > 4);
        assert!(
            !body.to_string().contains(token.as_str()),
            "the token is never echoed"
        );
        assert_eq!(mock.requests(endpoint), 1, "{ty}: one verify call");
        // Repeated: answered from the cache.
        let (status, _, _) = call(&app, "/machine", token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(mock.requests(endpoint), 1, "{ty}: cached");
    }
    let (_, _, body) = call(&app, "/machine", &ak).await;
    assert_eq!(body["scopes"], serde_json::json!(["read:reports"]));
    assert_eq!(body["name"], "ci");
    let (_, _, body) = call(&app, "/machine", &oat).await;
    assert_eq!(body["client_id"], "client_app");
}

#[actix_web::test]
async fn revoked_expired_and_unknown_opaque_tokens_are_401_with_their_reason() {
    let mock = MockClerk::start();
    let clerk = mock
        .clerk_builder()
        .machine_tokens(MachinePolicy::default().cache_ttl(Duration::ZERO))
        .build()
        .unwrap();
    let app = app(clerk, TokenTypes::MACHINE).await;
    for make in [
        |m: &MockClerk| m.create_api_key("user_1", "k", &[]),
        |m: &MockClerk| m.create_m2m_token("mch_1", &[], 3600),
        |m: &MockClerk| m.create_oauth_token("c", "user_1", &[], 3600),
    ] {
        let revoked = make(&mock);
        assert_eq!(call(&app, "/machine", &revoked).await.0, StatusCode::OK);
        mock.revoke_machine_token(&revoked);
        let (status, _, body) = call(&app, "/machine", &revoked).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::UNAUTHORIZED, "token-revoked")
        );

        let expired = make(&mock);
        mock.expire_machine_token(&expired);
        let (status, _, body) = call(&app, "/machine", &expired).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::UNAUTHORIZED, "token-expired")
        );
    }
    let before = verify_calls(&mock);
    for unknown in [
        "ak_0000000000000000000000000000000000",
        "mt_0000000000000000000000000000000000",
        "oat_000000000000000000000000000000000",
    ] {
        let (status, _, body) = call(&app, "/machine", unknown).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::UNAUTHORIZED, "token-invalid")
        );
        // The negative answer is cached.
        call(&app, "/machine", unknown).await;
    }
    assert_eq!(verify_calls(&mock) - before, 3);
    // Badly shaped: refused before any call.
    for bad in [
        "ak_short",
        "ak_has spaces in it 12345",
        "mt_!!!!!!!!!!!!!!!!!!!!",
    ] {
        let (status, _, body) = call(&app, "/machine", bad).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::UNAUTHORIZED, "token-invalid")
        );
    }
    assert_eq!(verify_calls(&mock) - before, 3);
}

#[actix_web::test]
async fn a_revoked_key_stops_working_within_the_cache_ttl() {
    let mock = MockClerk::start();
    // The handle's clock, moved by the test: no window to hit, no sleep.
    let clock = clerk_actix::testing::TestClock::new();
    let clerk = mock
        .clerk_builder()
        .clock(clock.reader())
        .machine_tokens(MachinePolicy::default().cache_ttl(Duration::from_secs(10)))
        .build()
        .unwrap();
    let app = app(clerk, TokenTypes::API_KEY).await;
    let ak = mock.create_api_key("user_1", "k", &[]);
    assert_eq!(call(&app, "/machine", &ak).await.0, StatusCode::OK);
    mock.revoke_machine_token(&ak);
    // Within the TTL the cached answer stands (one second before its end too)...
    assert_eq!(call(&app, "/machine", &ak).await.0, StatusCode::OK);
    clock.advance(Duration::from_secs(9));
    assert_eq!(call(&app, "/machine", &ak).await.0, StatusCode::OK);
    assert_eq!(mock.requests(Endpoint::ApiKeysVerify), 1);
    // ... and after it, Clerk's answer.
    clock.advance(Duration::from_secs(1));
    let (status, _, body) = call(&app, "/machine", &ak).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "token-revoked")
    );
    assert_eq!(mock.requests(Endpoint::ApiKeysVerify), 2);
}

#[actix_web::test]
async fn jwt_machine_tokens_verify_without_any_backend_api_call() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let app = app(clerk, TokenTypes::M2M | TokenTypes::OAUTH).await;
    // Warm the JWKS.
    let _ = call(&app, "/me", &mock.token().build()).await;
    mock.reset_counters();

    let m2m = mock.m2m_jwt("mch_billing", &["mch_reports", "mch_ledger"], 60);
    let (status, _, body) = call(&app, "/machine", &m2m).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "m2m_token");
    assert_eq!(body["subject"], "mch_billing");
    assert_eq!(
        body["scopes"],
        serde_json::json!(["mch_reports", "mch_ledger"])
    );
    assert!(body["id"].as_str().unwrap().starts_with("mt_"));

    let oauth = mock.oauth_jwt("client_app", "user_bob", &["read:foo", "write:bar"], 60);
    let (status, _, body) = call(&app, "/machine", &oauth).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "oauth_token");
    assert_eq!(
        (body["subject"].as_str(), body["client_id"].as_str()),
        (Some("user_bob"), Some("client_app"))
    );
    assert_eq!(body["scopes"], serde_json::json!(["read:foo", "write:bar"]));

    // Expired, forged, wrong category.
    let (status, _, body) = call(&app, "/machine", &mock.m2m_jwt("mch_1", &[], -60)).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "token-expired")
    );
    // An empty subject names no machine and no user (found by mutation testing:
    // RELIABILITY.md); an M2M JWT's must also be a machine id.
    for token in [mock.m2m_jwt("", &[], 60), mock.oauth_jwt("c", "", &[], 60)] {
        let (status, _, body) = call(&app, "/machine", &token).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::UNAUTHORIZED, "token-verification-failed")
        );
    }
    // A character inside the signature (the last one may carry only padding bits).
    let mut forged = mock.oauth_jwt("c", "user_1", &[], 60).into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let (status, _, body) = call(&app, "/machine", &forged).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "token-invalid-signature"),
        "{body}"
    );
    let wrong_cat = mock
        .token()
        .subject("mch_1")
        .header("cat", "cl_B7d4PD222AAA")
        .build();
    let (status, _, body) = call(&app, "/machine", &wrong_cat).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "token-invalid")
    );

    assert_eq!(verify_calls(&mock), 0);
    assert_eq!(mock.requests(Endpoint::Jwks), 0);
}

#[actix_web::test]
async fn wrong_types_are_token_type_mismatch_without_any_call() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let app = app(clerk, TokenTypes::API_KEY).await;
    let session = mock.token().subject("user_alice").build();
    assert_eq!(call(&app, "/me", &session).await.0, StatusCode::OK);
    let ak = mock.create_api_key("user_1", "k", &[]);
    let mt = mock.create_m2m_token("mch_1", &[], 60);
    mock.reset_counters();

    // A session token on a machine-only route; machine tokens on the session-only route; an
    // M2M token (opaque and JWT) where only API keys are accepted.
    for (path, token) in [
        ("/machine", session.as_str()),
        ("/me", ak.as_str()),
        ("/me", mt.as_str()),
        ("/me", &mock.m2m_jwt("mch_1", &[], 60)),
        ("/me", &mock.oauth_jwt("c", "user_1", &[], 60)),
        ("/machine", mt.as_str()),
        ("/machine", &mock.m2m_jwt("mch_1", &[], 60)),
    ] {
        let (status, _, body) = call(&app, path, token).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::UNAUTHORIZED, "token-type-mismatch"),
            "{path}"
        );
    }
    assert_eq!(verify_calls(&mock), 0);
    assert_eq!(mock.requests(Endpoint::Jwks), 0);

    // `/any` takes both, and the handler matches on which.
    assert_eq!(call(&app, "/any", &session).await.2, "session:user_alice");
    assert_eq!(call(&app, "/any", &ak).await.2, "machine:user_1");
}

#[actix_web::test]
async fn outages_are_503_and_a_refused_secret_key_is_a_server_error() {
    let mock = MockClerk::start();
    for (endpoint, token) in [
        (
            Endpoint::ApiKeysVerify,
            mock.create_api_key("user_1", "k", &[]),
        ),
        (
            Endpoint::M2mTokensVerify,
            mock.create_m2m_token("mch_1", &[], 60),
        ),
        (
            Endpoint::OAuthTokensVerify,
            mock.create_oauth_token("c", "user_1", &[], 60),
        ),
    ] {
        // A handle per endpoint: a 429 holds back every call of its handle.
        let app = app(mock.clerk_builder().build().unwrap(), TokenTypes::MACHINE).await;
        mock.set_fault(endpoint, Fault::Status(502));
        let (status, retry, body) = call(&app, "/machine", &token).await;
        assert_eq!(
            (status, reason(&body)),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "machine-verify-unavailable"
            )
        );
        assert!(retry.is_some());
        // Outages are not cached: the token works as soon as Clerk answers.
        mock.clear_fault(endpoint);
        assert_eq!(call(&app, "/machine", &token).await.0, StatusCode::OK);

        let fresh = match endpoint {
            Endpoint::ApiKeysVerify => mock.create_api_key("user_1", "k2", &[]),
            Endpoint::M2mTokensVerify => mock.create_m2m_token("mch_1", &[], 60),
            _ => mock.create_oauth_token("c", "user_1", &[], 60),
        };
        mock.set_fault(
            endpoint,
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        );
        let (status, retry, body) = call(&app, "/machine", &fresh).await;
        assert_eq!(
            (status, reason(&body)),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "machine-verify-unavailable"
            )
        );
        assert_eq!(retry.as_deref(), Some("7"));
        // Rate-limited: Clerk is not asked again before its Retry-After, even once it would
        // answer, and the answer says how long is left.
        mock.clear_fault(endpoint);
        let calls = mock.requests(endpoint);
        let (status, retry, _) = call(&app, "/machine", &fresh).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let left: u64 = retry.unwrap().parse().unwrap();
        assert!((1..=7).contains(&left), "{left}");
        assert_eq!(mock.requests(endpoint), calls, "no call during the hold");
    }

    let wrong_key = mock
        .clerk_builder()
        .secret_key("sk_test_wrong")
        .build()
        .unwrap();
    let app = self::app(wrong_key, TokenTypes::MACHINE).await;
    let ak = mock.create_api_key("user_1", "k", &[]);
    let (status, _, body) = call(&app, "/machine", &ak).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::INTERNAL_SERVER_ERROR, "secret-key-invalid")
    );
}

#[actix_web::test]
async fn concurrent_checks_of_one_token_share_one_call() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let app = app(clerk, TokenTypes::API_KEY).await;
    let ak = mock.create_api_key("user_1", "k", &[]);
    mock.set_fault(
        Endpoint::ApiKeysVerify,
        Fault::Delay(Duration::from_millis(300)),
    );
    let started = std::time::Instant::now();
    let answers =
        futures_util::future::join_all((0..20).map(|_| call(&app, "/machine", &ak))).await;
    assert!(answers.iter().all(|(s, _, _)| *s == StatusCode::OK));
    assert_eq!(mock.requests(Endpoint::ApiKeysVerify), 1);
    // They overlapped: twenty sequential checks would take 20 × 300 ms.
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[actix_web::test]
async fn ten_thousand_random_keys_make_a_bounded_number_of_calls_and_a_genuine_key_keeps_working() {
    let mock = MockClerk::start();
    let events = Recorder::default();
    let clerk = mock
        .clerk_builder()
        .machine_tokens(MachinePolicy::default().cache_ttl(Duration::from_millis(200)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let app = app(clerk, TokenTypes::API_KEY).await;
    let genuine = mock.create_api_key("user_real", "prod", &[]);
    assert_eq!(call(&app, "/machine", &genuine).await.0, StatusCode::OK);
    mock.reset_counters();

    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    let mut genuine_ok = 0;
    for i in 0..10_000 {
        let random: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(32)
            .collect();
        let (status, _, _) = call(&app, "/machine", &format!("ak_{random}")).await;
        *statuses.entry(status.as_u16()).or_default() += 1;
        if i % 500 == 0 {
            // The genuine key's cache entry expires during the flood: it is re-verified past
            // the unknown-token budget.
            actix_web::rt::time::sleep(Duration::from_millis(250)).await;
            let (status, _, body) = call(&app, "/machine", &genuine).await;
            assert_eq!(status, StatusCode::OK, "genuine key refused at {i}: {body}");
            genuine_ok += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = mock.requests(Endpoint::ApiKeysVerify);
    // Budget: a burst of 20, then 10 per second; plus one per genuine re-verification.
    let bound = 20 + (elapsed * 10.0).ceil() as u64 + genuine_ok;
    println!("10,000 random keys in {elapsed:.1} s: {calls} verify calls (bound {bound}), statuses {statuses:?}");
    assert!(calls <= bound, "{calls} calls > {bound}");
    assert!(calls < 10_000 / 10);
    assert_eq!(genuine_ok, 20);
    // Refused as unknown (401) or held back (503); never 200.
    assert_eq!(statuses.get(&200), None);
    assert_eq!(statuses.values().sum::<u64>(), 10_000);
    let held_back = events
        .take()
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClerkEvent::AuthFailed {
                    reason: AuthErrorReason::MachineVerifyUnavailable,
                    ..
                }
            )
        })
        .count();
    assert!(held_back > 0 && held_back as u64 == statuses[&503]);
}

#[actix_web::test]
async fn a_machine_token_in_a_cookie_is_never_read() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let app = app(clerk, TokenTypes::ANY).await;
    let ak = mock.create_api_key("user_1", "k", &[]);
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/machine")
            .cookie(actix_web::cookie::Cookie::new("__session", ak.clone()))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(mock.requests(Endpoint::ApiKeysVerify), 0);
}

#[actix_web::test]
async fn authenticate_machine_token_outside_the_middleware() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let ak = mock.create_api_key("org_acme", "k", &["a", "b"]);
    let m = clerk
        .authenticate_machine_token(&ak, TokenTypes::API_KEY)
        .await
        .unwrap();
    assert_eq!(m.token_type(), TokenType::ApiKey);
    assert_eq!(m.subject(), "org_acme");
    assert!(m.has_scopes(&["a", "b"]) && !m.has_scope("c"));
    let session = mock.token().build();
    let err = clerk
        .authenticate_machine_token(&session, TokenTypes::ANY)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), AuthErrorReason::TokenTypeMismatch);
    let err = clerk
        .authenticate_machine_token(&ak, TokenTypes::M2M)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), AuthErrorReason::TokenTypeMismatch);
}

// Per-handler opt-in under one app-wide, sessions-only middleware.

#[clerk_protected(accepts_token = ["api_key", "m2m_token"], scope = "read:reports")]
async fn reports(caller: ClerkMachine) -> HttpResponse {
    HttpResponse::Ok().json(caller.into_inner())
}

#[clerk_protected(accepts_token = ["session_token", "api_key"])]
async fn either(auth: ClerkAuth) -> HttpResponse {
    match auth {
        ClerkAuth::Session(s) => HttpResponse::Ok().body(format!("session:{}", s.user_id())),
        ClerkAuth::Machine(m) => HttpResponse::Ok().body(format!("machine:{}", m.subject())),
    }
}

#[clerk_protected(accepts_token = "oauth_token", any(scope = "openid", scope = "admin"))]
async fn oauth_only() -> &'static str {
    "oauth"
}

#[actix_web::test]
async fn a_handler_opts_in_to_machine_tokens_under_an_app_wide_session_middleware() {
    let mock = MockClerk::start();
    let events = Recorder::default();
    let clerk = mock
        .clerk_builder()
        .on_event(events.listener())
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(clerk))
            .route("/reports", web::get().to(reports))
            .route("/either", web::get().to(either))
            .route("/oauth", web::get().to(oauth_only))
            .route(
                "/me",
                web::get().to(|s: ClerkSession| async move {
                    HttpResponse::Ok().body(s.user_id().to_owned())
                }),
            )
            .route(
                "/machine-extractor",
                web::get().to(|m: ClerkMachine| async move {
                    HttpResponse::Ok().body(m.subject().to_owned())
                }),
            )
            .route("/public", web::get().to(|| async { "public" })),
    )
    .await;
    let session = mock.token().subject("user_alice").build();
    assert_eq!(call(&app, "/me", &session).await.0, StatusCode::OK);
    let reader = mock.create_api_key("user_1", "reader", &["read:reports"]);
    let writer = mock.create_api_key("user_2", "writer", &["write:reports"]);
    let m2m = mock.m2m_jwt("mch_billing", &["read:reports"], 60);
    let oat = mock.create_oauth_token("client_app", "user_3", &["openid"], 3600);
    mock.reset_counters();
    events.take();

    // The opted-in handler verifies its types (one Backend API call for the opaque key, none
    // for the JWT) and checks the scope.
    let (status, _, body) = call(&app, "/reports", &reader).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["token_type"].as_str(), body["subject"].as_str()),
        (Some("api_key"), Some("user_1"))
    );
    assert_eq!(mock.requests(Endpoint::ApiKeysVerify), 1);
    let (status, _, body) = call(&app, "/reports", &m2m).await;
    assert_eq!(
        (status, body["subject"].as_str()),
        (StatusCode::OK, Some("mch_billing"))
    );
    let (status, _, body) = call(&app, "/reports", &writer).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "insufficient-scope"),
        "{body}"
    );
    let seen = events.take();
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, ClerkEvent::AuthFailed { .. })),
        "an accepted machine token is not reported as refused: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, ClerkEvent::MachineAuthenticated { .. }))
            .count(),
        3
    );
    mock.reset_counters();

    // Types the handler leaves out, and every handler that did not opt in: 401
    // token-type-mismatch, no verification, reported once each.
    for (path, token) in [
        ("/reports", oat.as_str()),
        ("/reports", session.as_str()),
        ("/oauth", reader.as_str()),
        ("/me", reader.as_str()),
        ("/me", m2m.as_str()),
        ("/machine-extractor", reader.as_str()),
    ] {
        let (status, _, body) = call(&app, path, token).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::UNAUTHORIZED, "token-type-mismatch"),
            "{path}"
        );
    }
    assert_eq!(verify_calls(&mock), 0);
    let refused = events
        .take()
        .into_iter()
        .filter(|e| {
            matches!(e, ClerkEvent::AuthFailed { reason, .. } if *reason == AuthErrorReason::TokenTypeMismatch)
        })
        .count();
    assert_eq!(
        refused, 5,
        "the session on /reports is refused by the guard, unreported by the middleware"
    );

    // Sessions where the handler takes them; a page without Clerk extractors ignores the token.
    assert_eq!(
        call(&app, "/either", &session).await.2,
        "session:user_alice"
    );
    assert_eq!(call(&app, "/either", &reader).await.2, "machine:user_1");
    assert_eq!(call(&app, "/oauth", &oat).await.2, "oauth");
    assert_eq!(call(&app, "/public", &reader).await.0, StatusCode::OK);
    assert_eq!(mock.requests(Endpoint::OAuthTokensVerify), 1);

    // An invalid key on the opted-in handler is refused with its own reason.
    let (status, _, body) = call(&app, "/reports", "ak_doesnotexist0000").await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "token-invalid"),
        "{body}"
    );
}

#[actix_web::test]
async fn a_required_middleware_refuses_machine_tokens_it_does_not_accept() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(clerk).required())
            .route("/reports", web::get().to(reports)),
    )
    .await;
    let reader = mock.create_api_key("user_1", "reader", &["read:reports"]);
    mock.reset_counters();
    let (status, _, body) = call(&app, "/reports", &reader).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "token-type-mismatch")
    );
    assert_eq!(verify_calls(&mock), 0);
}

#[actix_web::test]
async fn jwt_machine_tokens_expired_unknown_key_and_jwks_down() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let app = app(clerk, TokenTypes::MACHINE).await;

    // Clerk's JWKS down before any key is known: 503 with Retry-After, not 401.
    mock.set_fault(Endpoint::Jwks, Fault::Status(503));
    for token in [
        mock.m2m_jwt("mch_1", &[], 60),
        mock.oauth_jwt("c", "user_1", &[], 60),
    ] {
        let (status, retry, body) = call(&app, "/machine", &token).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(retry.is_some(), "{body}");
    }
    mock.clear_fault(Endpoint::Jwks);
    // (The JWKS is retried after a back-off: a fresh handle for the rest.)
    let app = self::app(mock.clerk_builder().build().unwrap(), TokenTypes::MACHINE).await;
    let (status, _, body) = call(&app, "/machine", &mock.m2m_jwt("mch_1", &[], 60)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Expired OAuth JWT; an M2M JWT signed with a key the instance does not publish.
    let (status, _, body) = call(&app, "/machine", &mock.oauth_jwt("c", "user_1", &[], -60)).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "token-expired")
    );
    let unknown_kid = mock
        .token()
        .subject("mch_1")
        .without_claim("sid")
        .without_claim("azp")
        .header("cat", "cl_B7d4PD333AAA")
        .kid("ins_never_published")
        .build();
    let (status, _, body) = call(&app, "/machine", &unknown_kid).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(reason(&body).starts_with("jwk-"), "{body}");
    // No opaque verify call for any of them.
    assert_eq!(verify_calls(&mock), 0);
}

#[actix_web::test]
async fn a_refused_secret_key_is_a_server_error_for_every_opaque_type() {
    let mock = MockClerk::start();
    let wrong_key = mock
        .clerk_builder()
        .secret_key("sk_test_wrong")
        .build()
        .unwrap();
    let app = app(wrong_key, TokenTypes::MACHINE).await;
    for token in [
        mock.create_api_key("user_1", "k", &[]),
        mock.create_m2m_token("mch_1", &[], 60),
        mock.create_oauth_token("c", "user_1", &[], 60),
    ] {
        let (status, _, body) = call(&app, "/machine", &token).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::INTERNAL_SERVER_ERROR, "secret-key-invalid"),
            "{token}"
        );
    }
    assert_eq!(verify_calls(&mock), 3);
}

#[actix_web::test]
async fn a_flood_of_unknown_keys_from_one_address_leaves_another_addresss_new_keys_verified() {
    use clerk_actix_tests::pages::{client_from, made_up};
    let mock = MockClerk::start();
    let base = clerk_actix_tests::http::serve_machine(
        mock.clerk_builder().build().unwrap(),
        TokenTypes::API_KEY,
    );
    let url = format!("{base}/machine");
    let (flooder, genuine_client) = (client_from("127.0.0.2"), client_from("127.0.0.1"));
    let genuine: Vec<String> = (0..65)
        .map(|i| mock.create_api_key(&format!("user_{i}"), "first-time", &[]))
        .collect();
    let started = std::time::Instant::now();
    let mut flood = std::collections::BTreeMap::<u16, u64>::new();
    let mut served = 0;
    // Over real HTTP: 127.0.0.2 sends ten made-up keys every 100 ms; 127.0.0.1 presents a key
    // never verified before, one every 100 ms.
    for key in &genuine {
        for _ in 0..10 {
            let res = flooder
                .get(&url)
                .bearer_auth(format!("ak_{}", made_up(32)))
                .send()
                .await
                .unwrap();
            *flood.entry(res.status().as_u16()).or_default() += 1;
        }
        let res = genuine_client
            .get(&url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::OK {
            served += 1;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = mock.requests(Endpoint::ApiKeysVerify);
    println!("650 made-up keys from 127.0.0.2 in {elapsed:.1} s: {calls} verify calls, flood statuses {flood:?}, {served}/65 first-time keys from 127.0.0.1 served");
    assert_eq!(served, 65, "every genuine first-time key is verified");
    // The flooder's own budget: 5, then one a second; plus the 65 genuine calls.
    let bound = 65 + 5 + elapsed.ceil() as u64;
    assert!(calls <= bound, "{calls} calls > {bound}");
    assert_eq!(flood.get(&200), None);
    assert_eq!(flood.values().sum::<u64>(), 650);
}

#[actix_web::test]
async fn a_machine_secret_key_accepts_only_m2m_tokens_granted_to_this_machine() {
    let mock = MockClerk::start();
    let key = mock.create_machine_secret_key("mch_reports");
    let clerk = mock
        .clerk_builder()
        .machine_secret_key(&key)
        .build()
        .unwrap();
    assert!(
        !format!("{clerk:?}").contains(&key),
        "the key stays out of Debug"
    );
    let service = app(clerk, TokenTypes::M2M | TokenTypes::API_KEY).await;
    // Granted access to mch_reports: verified with the machine's key.
    let for_us = mock.create_m2m_token("mch_billing", &["mch_reports"], 3600);
    let (status, _, body) = call(&service, "/machine", &for_us).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subject"], "mch_billing");
    // Minted for another machine of the instance: refused, as an unknown token.
    let for_others = mock.create_m2m_token("mch_billing", &["mch_payroll"], 3600);
    let (status, _, body) = call(&service, "/machine", &for_others).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(reason(&body), "token-invalid");
    assert_eq!(mock.requests(Endpoint::M2mTokensVerify), 2);
    // API keys are still verified with the instance's secret key.
    let ak = mock.create_api_key("user_1", "ci", &[]);
    assert_eq!(call(&service, "/machine", &ak).await.0, StatusCode::OK);

    // Without the machine key (the instance's key), any token of the instance verifies.
    let instance_wide = mock.clerk_builder().build().unwrap();
    let service = app(instance_wide, TokenTypes::M2M).await;
    assert_eq!(
        call(&service, "/machine", &for_others).await.0,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn the_configured_audience_applies_to_m2m_jwts_as_clerks_verify_jwt_does() {
    let mock = MockClerk::start();
    let clerk = mock
        .clerk_builder()
        .audience(["mch_reports"])
        .build()
        .unwrap();
    let service = app(clerk, TokenTypes::M2M).await;
    // `aud` (the machines the token may reach) includes this one.
    let for_us = mock.m2m_jwt("mch_billing", &["mch_reports", "mch_audit"], 60);
    let (status, _, body) = call(&service, "/machine", &for_us).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Minted for another machine only.
    let for_others = mock.m2m_jwt("mch_billing", &["mch_payroll"], 60);
    let (status, _, body) = call(&service, "/machine", &for_others).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "token-verification-failed")
    );
    // No `aud` at all: Clerk's rule checks only when both sides are non-empty.
    let no_aud = mock
        .token()
        .subject("mch_billing")
        .without_claim("sid")
        .without_claim("azp")
        .header("cat", clerk_actix::verify::CATEGORY_M2M)
        .build();
    let (status, _, body) = call(&service, "/machine", &no_aud).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(verify_calls(&mock), 0);
}
