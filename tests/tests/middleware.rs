//! The middleware and extractors end to end against MockClerk: statuses, challenges, bodies,
//! token sources, modes, hooks and events.

#![allow(clippy::unwrap_used)]

use actix_web::{
    http::{header, header::HeaderValue, StatusCode},
    test, web, App, HttpMessage, HttpResponse,
};
use clerk_actix::{
    testing::{unix_now, Breakage, Endpoint, MockClerk},
    AuthErrorReason, AuthSource, ClerkEvent, ClerkMiddleware, ClerkSession, TokenCarrier,
};
use clerk_actix_tests::{app, bearer, Recorder};
use serde_json::Value;

async fn body_json(
    res: actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
) -> Value {
    let bytes = actix_web::body::to_bytes(res.into_body())
        .await
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn www_auth(
    res: &actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
) -> Option<String> {
    res.headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[actix_web::test]
async fn bearer_token_reaches_the_handler() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), false).await;
    let token = mock.token().subject("user_alice").build();
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/me")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = body_json(res).await;
    assert_eq!(body["user_id"], "user_alice");
    assert_eq!(body["carrier"], "header");
}

#[actix_web::test]
async fn scheme_is_case_insensitive_and_a_bare_token_is_accepted() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), false).await;
    let token = mock.token().build();
    for value in [
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("Bearer   {token}  "),
        token.clone(),
    ] {
        let req = test::TestRequest::get()
            .uri("/me")
            .insert_header(("Authorization", value.clone()))
            .to_request();
        assert_eq!(
            test::call_service(&app, req).await.status(),
            StatusCode::OK,
            "{value:.20}"
        );
    }
}

#[actix_web::test]
async fn session_cookie_is_read_when_there_is_no_header() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), false).await;
    let token = mock.token().subject("user_cookie").build();
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(("Cookie", format!("other=1; __session={token}")))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = body_json(res).await;
    assert_eq!(body["user_id"], "user_cookie");
    assert_eq!(body["carrier"], "cookie");

    // The value is percent-decoded, as Clerk's SDKs decode cookies (`cookie.parse`), and the
    // first `__session` wins (found by the `authorization` fuzz target: the token need not be
    // a literal slice of the header).
    let encoded = token.replacen('.', "%2E", 2);
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header((
            "Cookie",
            format!("a=b; __session={encoded}; __session=garbage"),
        ))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_json(res).await["user_id"], "user_cookie");

    // The header wins over the cookie.
    let header_token = mock.token().subject("user_header").build();
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(&header_token))
        .insert_header(("Cookie", format!("__session={token}")))
        .to_request();
    assert_eq!(
        body_json(test::call_service(&app, req).await).await["user_id"],
        "user_header"
    );

    // Cookies can be turned off.
    let app = clerk_actix_tests::app(
        mock.clerk_builder()
            .accept_session_cookie(false)
            .build()
            .unwrap(),
        false,
    )
    .await;
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(("Cookie", format!("__session={token}")))
        .to_request();
    assert_eq!(
        test::call_service(&app, req).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn anonymous_is_401_with_a_bare_bearer_challenge_on_protected_routes_only() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), false).await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/me").to_request()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_auth(&res).as_deref(), Some("Bearer"));
    let body = body_json(res).await;
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(body["reason"], "session-token-missing");

    let res = test::call_service(&app, test::TestRequest::get().uri("/public").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(test::read_body(res).await, "anonymous");

    // "Bearer" with nothing after it carries no token.
    for value in ["Bearer", "Bearer ", "bearer    "] {
        let req = test::TestRequest::get()
            .uri("/public")
            .insert_header(("Authorization", value))
            .to_request();
        assert_eq!(
            test::read_body(test::call_service(&app, req).await).await,
            "anonymous",
            "{value:?}"
        );
    }
    // Another scheme is not a Clerk token: anonymous, not an error.
    let req = test::TestRequest::get()
        .uri("/public")
        .insert_header(("Authorization", "Basic dXNlcjpwYXNz"))
        .to_request();
    assert_eq!(
        test::read_body(test::call_service(&app, req).await).await,
        "anonymous"
    );
    assert_eq!(mock.requests(Endpoint::Jwks), 0, "no token, no JWKS fetch");
}

#[actix_web::test]
async fn invalid_tokens_are_401_with_the_reason_even_on_optional_routes() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), false).await;
    let cases = [
        (mock.token().expires_in(-60).build(), "token-expired"),
        (
            mock.token().broken(Breakage::TamperPayload).build(),
            "token-invalid-signature",
        ),
        (
            mock.token().broken(Breakage::AlgNone).build(),
            "token-invalid-algorithm",
        ),
        (
            mock.token()
                .authorized_party("https://evil.example")
                .build(),
            "token-invalid-authorized-parties",
        ),
        ("not-a-jwt".to_owned(), "token-invalid"),
        (
            mock.token().claim("blob", "x".repeat(100 * 1024)).build(),
            "token-invalid",
        ),
        (
            mock.token().subject("mch_robot").build(),
            "token-type-mismatch",
        ),
        ("ak_LCWGdaM8mv8K4PC".to_owned(), "token-type-mismatch"),
    ];
    for (token, reason) in cases {
        for path in ["/me", "/public"] {
            let req = test::TestRequest::get()
                .uri(path)
                .insert_header(bearer(&token))
                .to_request();
            let res = test::call_service(&app, req).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path} {reason}");
            assert_eq!(
                www_auth(&res).unwrap(),
                format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"")
            );
            let body = body_json(res).await;
            assert_eq!(body["error"], "invalid_token");
            assert_eq!(body["reason"], reason);
            assert!(
                !body.to_string().contains(&token),
                "the body echoes the token"
            );
        }
    }
}

#[actix_web::test]
async fn non_ascii_authorization_bytes_are_a_401_not_a_panic() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), false).await;
    let value = HeaderValue::from_bytes(b"Bearer \xff\xfe\x80abc").unwrap();
    let req = test::TestRequest::get()
        .uri("/public")
        .insert_header((header::AUTHORIZATION, value))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_json(res).await["reason"], "token-invalid");
}

#[actix_web::test]
async fn required_mode_refuses_anonymous_but_lets_preflight_through() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), true).await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/public").to_request()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_auth(&res).as_deref(), Some("Bearer"));

    let preflight = test::TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri("/public")
        .insert_header(("Origin", "http://localhost:3000"))
        .insert_header(("Access-Control-Request-Method", "GET"))
        .to_request();
    assert_eq!(
        test::call_service(&app, preflight).await.status(),
        StatusCode::NO_CONTENT
    );

    let token = mock.token().subject("user_r").build();
    let req = test::TestRequest::get()
        .uri("/public")
        .insert_header(bearer(&token))
        .to_request();
    assert_eq!(
        test::read_body(test::call_service(&app, req).await).await,
        "user_r"
    );
}

#[actix_web::test]
async fn extractor_without_middleware_is_a_500_naming_the_fix() {
    let app =
        test::init_service(App::new().route(
            "/me",
            web::get().to(|s: ClerkSession| async move {
                HttpResponse::Ok().body(s.user_id().to_owned())
            }),
        ))
        .await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/me").to_request()).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = body_json(res).await;
    assert_eq!(body["reason"], "middleware-missing");
    assert!(body["fix"].as_str().unwrap().contains("ClerkMiddleware"));
}

#[actix_web::test]
async fn the_global_error_hook_shapes_every_auth_response() {
    let mock = MockClerk::start();
    let clerk = mock
        .clerk_builder()
        .error_response(|err, req| {
            // A hook may touch the request's extensions (no borrow is held while it runs).
            req.extensions_mut().insert(7u8);
            HttpResponse::build(err.status())
                .insert_header(("x-auth-reason", err.reason().as_str()))
                .body(format!("custom {} at {}", err.reason(), req.path()))
        })
        .build()
        .unwrap();
    let app = app(clerk, false).await;
    // From the extractor (anonymous).
    let res = test::call_service(&app, test::TestRequest::get().uri("/me").to_request()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers().get("x-auth-reason").unwrap(),
        "session-token-missing"
    );
    assert_eq!(
        test::read_body(res).await,
        "custom session-token-missing at /me"
    );
    // From the middleware (invalid token).
    let token = mock.token().expires_in(-60).build();
    let req = test::TestRequest::get()
        .uri("/public")
        .insert_header(bearer(&token))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        test::read_body(res).await,
        "custom token-expired at /public"
    );
}

#[actix_web::test]
async fn pending_sessions_are_signed_out_by_default() {
    let mock = MockClerk::start();
    let token = mock.token().v2().session_status("pending").build();
    let app1 = app(mock.clerk_builder().build().unwrap(), false).await;
    let res = test::call_service(
        &app1,
        test::TestRequest::get()
            .uri("/me")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_json(res).await["reason"], "session-pending");
    let req = test::TestRequest::get()
        .uri("/state")
        .insert_header(bearer(&token))
        .to_request();
    assert_eq!(
        test::read_body(test::call_service(&app1, req).await).await,
        "pending"
    );
    let req = test::TestRequest::get()
        .uri("/public")
        .insert_header(bearer(&token))
        .to_request();
    assert_eq!(
        test::read_body(test::call_service(&app1, req).await).await,
        "anonymous"
    );

    let app2 = app(
        mock.clerk_builder()
            .treat_pending_as_signed_out(false)
            .build()
            .unwrap(),
        false,
    )
    .await;
    let res = test::call_service(
        &app2,
        test::TestRequest::get()
            .uri("/me")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn events_report_success_source_cache_misses_and_failures_without_tokens() {
    let mock = MockClerk::start();
    let rec = Recorder::default();
    let app = app(
        mock.clerk_builder()
            .on_event(rec.listener())
            .build()
            .unwrap(),
        false,
    )
    .await;
    let token = mock.token().subject("user_ev").build();

    for expected_source in ["verified", "cache"] {
        let req = test::TestRequest::get()
            .uri("/me")
            .insert_header(bearer(&token))
            .to_request();
        let body = body_json(test::call_service(&app, req).await).await;
        assert_eq!(body["source"], expected_source);
    }
    let events = rec.take();
    let successes: Vec<AuthSource> = events
        .iter()
        .filter_map(|e| match e {
            ClerkEvent::AuthSucceeded {
                source,
                carrier,
                claims,
            } => {
                assert_eq!(*carrier, TokenCarrier::Header);
                assert_eq!(claims.user_id(), "user_ev");
                Some(*source)
            }
            _ => None,
        })
        .collect();
    assert_eq!(successes, [AuthSource::Verified, AuthSource::Cache]);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ClerkEvent::TokenCacheMiss { .. }))
            .count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ClerkEvent::JwksRefreshed { .. }))
            .count(),
        1
    );

    let bad = mock.token().expires_in(-60).build();
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(&bad))
        .to_request();
    test::call_service(&app, req).await;
    let events = rec.take();
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ClerkEvent::AuthFailed { reason, token_hash } => Some((*reason, token_hash.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, AuthErrorReason::TokenExpired);
    assert_eq!(failed[0].1.len(), 16);
    assert!(failed[0].1.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(failed[0].1, clerk_actix::events::token_hash(&bad));
    // The header segment is the same for every mock token: look for this token's own parts.
    let dump = format!("{events:?}");
    let (unsigned, signature) = bad.rsplit_once('.').unwrap();
    let payload = unsigned.split_once('.').unwrap().1;
    assert!(!dump.contains(signature), "an event carries the signature");
    assert!(!dump.contains(payload), "an event carries the payload");
}

#[actix_web::test]
async fn cached_tokens_are_never_served_past_exp() {
    let mock = MockClerk::start();
    let clock = clerk_actix::testing::TestClock::new();
    let clerk = mock
        .clerk_builder()
        .clock_skew(std::time::Duration::ZERO)
        .clock(clock.reader())
        .build()
        .unwrap();
    let app = app(clerk.clone(), false).await;
    let token = mock.token().expires_at(unix_now() + 2).build();
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(&token))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), StatusCode::OK);
    assert_eq!(clerk.cached_tokens(), 1);
    // The cache holds it; the clock passes its exp (no sleep, no wall-clock race).
    clock.advance(std::time::Duration::from_secs(3));
    assert_eq!(clerk.cached_tokens(), 1);
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(&token))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_json(res).await["reason"], "token-expired");
}

#[actix_web::test]
async fn authenticate_request_client_api() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let token = mock.token().subject("user_api").build();
    let req = test::TestRequest::get()
        .insert_header(bearer(&token))
        .to_http_request();
    let session = clerk.authenticate_request(&req).await.unwrap().unwrap();
    assert_eq!(session.user_id(), "user_api");
    let anon = test::TestRequest::get().to_http_request();
    assert!(clerk.authenticate_request(&anon).await.unwrap().is_none());
    let forged = test::TestRequest::get()
        .insert_header(bearer(
            &mock.token().broken(Breakage::TamperSignature).build(),
        ))
        .to_http_request();
    assert_eq!(
        clerk
            .authenticate_request(&forged)
            .await
            .unwrap_err()
            .reason(),
        AuthErrorReason::TokenInvalidSignature
    );
}

#[actix_web::test]
async fn middleware_works_on_a_scope() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let app = test::init_service(
        App::new()
            .route(
                "/open",
                web::get().to(|| async { HttpResponse::Ok().body("open") }),
            )
            .service(
                web::scope("/api")
                    .wrap(ClerkMiddleware::new(clerk).required())
                    .route("/me", web::get().to(clerk_actix_tests::me)),
            ),
    )
    .await;
    assert_eq!(
        test::call_service(&app, test::TestRequest::get().uri("/open").to_request())
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        test::call_service(&app, test::TestRequest::get().uri("/api/me").to_request())
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn the_session_hands_out_its_token_for_forwarding_but_never_prints_it() {
    let mock = MockClerk::start();
    async fn forward(session: ClerkSession) -> HttpResponse {
        assert!(!format!("{session:?}").contains(session.token()));
        assert!(!serde_json::to_string(&session)
            .unwrap()
            .contains(session.token()));
        HttpResponse::Ok().body(session.token().to_owned())
    }
    let app = test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(mock.clerk_builder().build().unwrap()))
            .route("/forward", web::get().to(forward)),
    )
    .await;
    let token = mock.token().build();
    // Twice: verified, then from the cache; padding (ignored by Clerk) is not part of it.
    for sent in [token.clone(), format!("{token}==")] {
        let req = test::TestRequest::get()
            .uri("/forward")
            .insert_header(bearer(&sent))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(test::read_body(res).await, token.as_bytes());
    }
}

#[actix_web::test]
async fn one_registration_serves_extractors_hooks_and_the_webhook_endpoint() {
    use clerk_actix::{store::ClerkUserRecord, webhooks};
    let mock = MockClerk::start();
    let clerk = mock
        .clerk_builder()
        .error_response(|err, _| HttpResponse::build(err.status()).body("hooked"))
        .build()
        .unwrap();
    // No app_data: the middleware alone.
    let app = test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(clerk))
            .route(
                "/me",
                web::get().to(|s: ClerkSession| async move {
                    HttpResponse::Ok().body(s.user_id().to_owned())
                }),
            )
            .service(webhooks::resource::<ClerkUserRecord>("/webhooks/clerk")),
    )
    .await;
    let token = mock.token().subject("user_one").build();
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(&token))
        .to_request();
    assert_eq!(
        test::read_body(test::call_service(&app, req).await).await,
        "user_one"
    );
    // The error hook is found through the middleware too.
    let res = test::call_service(&app, test::TestRequest::get().uri("/me").to_request()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(test::read_body(res).await, "hooked");
    // The webhook endpoint finds the handle: a signed delivery of a non-user event is handled.
    let delivery = mock.webhook("session.created", serde_json::json!({"id": "sess_1"}));
    let mut req = test::TestRequest::post()
        .uri("/webhooks/clerk")
        .set_payload(delivery.body.clone());
    for (name, value) in delivery.headers() {
        req = req.insert_header((name, value));
    }
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(body["status"], "ignored");
}

#[actix_web::test]
async fn required_mode_lets_preflights_through_to_what_answers_options_only() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static GET_ONLY: AtomicUsize = AtomicUsize::new(0);
    static GUARDED: AtomicUsize = AtomicUsize::new(0);
    static OPEN: AtomicUsize = AtomicUsize::new(0);
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let app = test::init_service(
        actix_web::App::new()
            .wrap(clerk_actix::ClerkMiddleware::new(clerk).required())
            .route(
                "/get-only",
                actix_web::web::get().to(|| async {
                    GET_ONLY.fetch_add(1, Ordering::SeqCst);
                    actix_web::HttpResponse::Ok().finish()
                }),
            )
            .route(
                "/guarded",
                actix_web::web::to(|_s: clerk_actix::ClerkSession| async {
                    GUARDED.fetch_add(1, Ordering::SeqCst);
                    actix_web::HttpResponse::Ok().finish()
                }),
            )
            .route(
                "/open",
                actix_web::web::to(|| async {
                    OPEN.fetch_add(1, Ordering::SeqCst);
                    actix_web::HttpResponse::Ok().finish()
                }),
            ),
    )
    .await;
    let preflight = |path: &str| {
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri(path)
            .insert_header(("Origin", "http://localhost:3000"))
            .insert_header(("Access-Control-Request-Method", "POST"))
            .to_request()
    };
    // A handler registered for GET never sees a preflight.
    let res = test::call_service(&app, preflight("/get-only")).await;
    assert!(!res.status().is_success(), "{}", res.status());
    assert_eq!(GET_ONLY.load(Ordering::SeqCst), 0);
    // A handler for every method with a Clerk extractor: the preflight is anonymous, so 401.
    let res = test::call_service(&app, preflight("/guarded")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(GUARDED.load(Ordering::SeqCst), 0);
    // A handler for every method without one runs for a preflight, unauthenticated (as the
    // the guide's `usage` chapter warns: register per method, use an extractor, or answer CORS outside).
    let res = test::call_service(&app, preflight("/open")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(OPEN.load(Ordering::SeqCst), 1);
    // An OPTIONS that is not a preflight is authenticated like any request.
    let res = test::call_service(
        &app,
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/open")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(OPEN.load(Ordering::SeqCst), 1);
}
