//! The remote JWKS against MockClerk: single-flight refresh, rotation, rate-limited unknown
//! kids, outages with and without known keys, back-off, bad secret key, networkless PEM.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix_web::{http::StatusCode, test};
use clerk_actix::{
    jwks::JwksPolicy,
    testing::{Endpoint, Fault, MockClerk},
    Clerk, ClerkEvent,
};
use clerk_actix_tests::{app, bearer, Recorder};
use futures_util::future::join_all;
use serde_json::Value;

fn fast_policy() -> JwksPolicy {
    JwksPolicy {
        timeout: Duration::from_millis(500),
        backoff_base: Duration::from_secs(2),
        ..JwksPolicy::default()
    }
}

async fn status_and_reason(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    token: &str,
) -> (StatusCode, Option<String>, Value) {
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(token))
        .to_request();
    clerk_actix_tests::call_json(app, req).await
}

#[actix_web::test]
async fn fifty_concurrent_requests_with_a_never_seen_kid_fetch_the_jwks_once() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), false).await;
    // Cold: no keys yet, 50 concurrent tokens with a kid nobody has seen.
    let tokens: Vec<String> = (0..50)
        .map(|i| {
            mock.token()
                .subject(&format!("user_{i}"))
                .kid("ins_never_seen")
                .build()
        })
        .collect();
    let results = join_all(tokens.iter().map(|t| status_and_reason(&app, t))).await;
    assert_eq!(mock.requests(Endpoint::Jwks), 1);
    for (status, _, body) in &results {
        assert_eq!(*status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["reason"], "jwk-kid-mismatch");
    }

    // Warm (keys loaded, unknown-kid refresh allowed again after a fresh client):
    let mock = MockClerk::start();
    let app = clerk_actix_tests::app(mock.clerk_builder().build().unwrap(), false).await;
    let (ok, _, _) = status_and_reason(&app, &mock.token().build()).await;
    assert_eq!(ok, StatusCode::OK);
    assert_eq!(mock.requests(Endpoint::Jwks), 1);
    let tokens: Vec<String> = (0..50)
        .map(|i| {
            mock.token()
                .subject(&format!("user_{i}"))
                .kid(&format!("ins_random_{i}"))
                .build()
        })
        .collect();
    let results = join_all(tokens.iter().map(|t| status_and_reason(&app, t))).await;
    assert_eq!(
        mock.requests(Endpoint::Jwks),
        2,
        "one refresh for 50 unknown kids"
    );
    assert!(results
        .iter()
        .all(|(s, _, b)| *s == StatusCode::UNAUTHORIZED && b["reason"] == "jwk-kid-mismatch"));
    // Still rate-limited: more random kids cause no more fetches.
    for i in 0..5 {
        let t = mock.token().kid(&format!("ins_more_{i}")).build();
        assert_eq!(
            status_and_reason(&app, &t).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(mock.requests(Endpoint::Jwks), 2);
}

#[actix_web::test]
async fn key_rotation_is_picked_up_with_one_fetch() {
    let mock = MockClerk::start();
    let app = app(mock.clerk_builder().build().unwrap(), false).await;
    assert_eq!(
        status_and_reason(&app, &mock.token().build()).await.0,
        StatusCode::OK
    );
    assert_eq!(mock.requests(Endpoint::Jwks), 1);
    let old_token = mock.token().subject("user_old").build();
    mock.rotate_keys();
    let new_tokens: Vec<String> = (0..10)
        .map(|i| mock.token().subject(&format!("user_new{i}")).build())
        .collect();
    let results = join_all(new_tokens.iter().map(|t| status_and_reason(&app, t))).await;
    assert!(results.iter().all(|(s, _, _)| *s == StatusCode::OK));
    assert_eq!(mock.requests(Endpoint::Jwks), 2);
    // Tokens signed with the previous key stay valid (merged, not replaced).
    assert_eq!(status_and_reason(&app, &old_token).await.0, StatusCode::OK);
    assert_eq!(mock.requests(Endpoint::Jwks), 2);
}

#[actix_web::test]
async fn outage_with_known_keys_keeps_serving() {
    let mock = MockClerk::start();
    // TTL zero: every request wants a refresh, so the outage is really hit.
    let policy = JwksPolicy {
        ttl: Duration::ZERO,
        ..fast_policy()
    };
    let recorder = Recorder::default();
    let app = app(
        mock.clerk_builder()
            .jwks_policy(policy)
            .on_event(recorder.listener())
            .build()
            .unwrap(),
        false,
    )
    .await;
    assert_eq!(
        status_and_reason(&app, &mock.token().build()).await.0,
        StatusCode::OK
    );
    mock.set_fault(Endpoint::Jwks, Fault::Status(503));
    let before = mock.requests(Endpoint::Jwks);
    let (status, _, _) =
        status_and_reason(&app, &mock.token().subject("user_outage").build()).await;
    assert_eq!(status, StatusCode::OK);
    // The refresh runs in the background while the request is served with the known keys.
    let mut refresh_failed = false;
    for _ in 0..100 {
        let events = recorder.take();
        if events
            .iter()
            .any(|e| matches!(e, ClerkEvent::JwksRefreshFailed { .. }))
        {
            refresh_failed = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refresh_failed, "the refresh was attempted and failed");
    assert!(mock.requests(Endpoint::Jwks) > before);
    // In back-off: still served, and Clerk is left alone.
    let during = mock.requests(Endpoint::Jwks);
    let (status, _, _) =
        status_and_reason(&app, &mock.token().subject("user_outage2").build()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.requests(Endpoint::Jwks), during);
}

#[actix_web::test]
async fn outage_with_no_keys_is_503_with_retry_after_not_401() {
    let mock = MockClerk::start();
    mock.set_fault(Endpoint::Jwks, Fault::Status(500));
    let app = app(
        mock.clerk_builder()
            .jwks_policy(fast_policy())
            .build()
            .unwrap(),
        false,
    )
    .await;
    let token = mock.token().build();
    let (status, retry, body) = status_and_reason(&app, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(body["reason"], "jwk-remote-failed-to-load");
    assert_eq!(body["error"], "temporarily_unavailable");
    // 3 attempts (bounded retries of a 5xx), then back-off: the next request does not call Clerk.
    assert_eq!(mock.requests(Endpoint::Jwks), 3);
    let (status, _, _) = status_and_reason(&app, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        mock.requests(Endpoint::Jwks),
        3,
        "back-off keeps us off Clerk"
    );
}

#[actix_web::test]
async fn an_unusable_jwks_is_503_jwk_remote_invalid() {
    for body in [
        r#"{"keys":[]}"#,
        "<html>oops</html>",
        r#"{"keys":[{"kty":"EC","kid":"x"}]}"#,
    ] {
        let mock = MockClerk::start();
        mock.set_fault(Endpoint::Jwks, Fault::Body(body.to_owned()));
        let app = app(
            mock.clerk_builder()
                .jwks_policy(fast_policy())
                .build()
                .unwrap(),
            false,
        )
        .await;
        let (status, retry, json) = status_and_reason(&app, &mock.token().build()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(retry.is_some());
        assert_eq!(json["reason"], "jwk-remote-invalid", "{body}");
        assert_eq!(
            mock.requests(Endpoint::Jwks),
            1,
            "an invalid body is not retried"
        );
    }
}

#[actix_web::test]
async fn retry_after_zero_with_no_keys_is_still_503() {
    let mock = MockClerk::start();
    mock.set_fault(
        Endpoint::Jwks,
        Fault::RateLimited {
            retry_after_secs: 0,
        },
    );
    let app = app(
        mock.clerk_builder()
            .jwks_policy(fast_policy())
            .build()
            .unwrap(),
        false,
    )
    .await;
    let (status, retry, body) = status_and_reason(&app, &mock.token().build()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(body["reason"], "jwk-remote-failed-to-load");
}

#[actix_web::test]
async fn a_request_dropped_mid_fetch_neither_cancels_nor_fails_the_fetch() {
    let mock = MockClerk::start();
    mock.set_fault(Endpoint::Jwks, Fault::Delay(Duration::from_secs(1)));
    let policy = JwksPolicy {
        timeout: Duration::from_secs(5),
        ..fast_policy()
    };
    let recorder = Recorder::default();
    let app = app(
        mock.clerk_builder()
            .jwks_policy(policy)
            .on_event(recorder.listener())
            .build()
            .unwrap(),
        false,
    )
    .await;
    let token = mock.token().build();
    // The client gives up after 300 ms: its request future is dropped, the fetch is not.
    let gave_up =
        actix_web::rt::time::timeout(Duration::from_millis(300), status_and_reason(&app, &token))
            .await;
    assert!(gave_up.is_err());
    // The next request waits for that same fetch and gets its keys: no second fetch, no
    // failure, no back-off.
    let (status, _, body) = status_and_reason(&app, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(mock.requests(Endpoint::Jwks), 1);
    let events = recorder.take();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ClerkEvent::JwksRefreshFailed { .. })),
        "{events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ClerkEvent::JwksRefreshed { .. }))
            .count(),
        1
    );
}

#[actix_web::test]
async fn a_refresh_finishes_even_when_every_waiting_request_is_dropped() {
    let mock = MockClerk::start();
    mock.set_fault(Endpoint::Jwks, Fault::Delay(Duration::from_millis(300)));
    let app = app(
        mock.clerk_builder()
            .jwks_policy(fast_policy())
            .build()
            .unwrap(),
        false,
    )
    .await;
    let token = mock.token().build();
    for _ in 0..3 {
        let gave_up = actix_web::rt::time::timeout(
            Duration::from_millis(50),
            status_and_reason(&app, &token),
        )
        .await;
        assert!(gave_up.is_err());
    }
    // Nobody waits any more; the fetch still lands, and later requests use its keys.
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    mock.clear_faults();
    assert_eq!(status_and_reason(&app, &token).await.0, StatusCode::OK);
    assert_eq!(mock.requests(Endpoint::Jwks), 1);
}

#[actix_web::test]
async fn rate_limited_jwks_honours_retry_after() {
    let mock = MockClerk::start();
    mock.set_fault(
        Endpoint::Jwks,
        Fault::RateLimited {
            retry_after_secs: 42,
        },
    );
    let app = app(
        mock.clerk_builder()
            .jwks_policy(fast_policy())
            .build()
            .unwrap(),
        false,
    )
    .await;
    let (status, retry, _) = status_and_reason(&app, &mock.token().build()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!((40..=42).contains(&retry), "{retry}");
    assert_eq!(mock.requests(Endpoint::Jwks), 1, "429 is not retried");
}

#[actix_web::test]
async fn jwks_timeout_is_503_and_recovery_after_backoff_works() {
    let mock = MockClerk::start();
    mock.set_fault(Endpoint::Jwks, Fault::Delay(Duration::from_secs(3)));
    let policy = JwksPolicy {
        timeout: Duration::from_millis(200),
        attempts: 1,
        backoff_base: Duration::from_millis(300),
        ..JwksPolicy::default()
    };
    let app = app(
        mock.clerk_builder().jwks_policy(policy).build().unwrap(),
        false,
    )
    .await;
    let token = mock.token().build();
    assert_eq!(
        status_and_reason(&app, &token).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    mock.clear_faults();
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_and_reason(&app, &token).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn a_refused_secret_key_is_a_500_naming_the_key() {
    let mock = MockClerk::start();
    let clerk = Clerk::builder()
        .secret_key("sk_test_wrong")
        .api_url(mock.api_url())
        .build()
        .unwrap();
    let app = app(clerk, false).await;
    let (status, _, body) = status_and_reason(&app, &mock.token().build()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["reason"], "secret-key-invalid");
    assert!(body["fix"].as_str().unwrap().contains("CLERK_SECRET_KEY"));
    assert!(!body.to_string().contains("sk_test_wrong"));
}

#[actix_web::test]
async fn a_pem_key_needs_no_network() {
    let mock = MockClerk::start();
    let clerk = Clerk::builder()
        .jwt_key(mock.active_key().public_pem)
        .secret_key(mock.secret_key())
        .api_url(mock.api_url())
        .build()
        .unwrap();
    let app = app(clerk, false).await;
    assert_eq!(
        status_and_reason(&app, &mock.token().build()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        status_and_reason(&app, &mock.token().kid("ins_whatever").build())
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(mock.requests(Endpoint::Jwks), 0);
}
