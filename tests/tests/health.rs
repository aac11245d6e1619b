//! Health and readiness: `/readyz` 503 while no keys can be had, 200 once they can; what the
//! report says about keys, the Backend API and the stores; nothing secret in it.

#![allow(clippy::unwrap_used)]

use std::{sync::atomic::Ordering, time::Duration};

use actix_web::{http::StatusCode, test, web, App, HttpResponse};
use clerk_actix::{
    health,
    jwks::JwksPolicy,
    store::ClerkUserRecord,
    testing::{Endpoint, Fault, MockClerk, TEST_KEYS},
    Clerk, ClerkMiddleware, ClerkUser,
};
use clerk_actix_tests::{
    bearer, call_json,
    db::{Backend, TestDb},
    Probe,
};

fn quick_policy() -> JwksPolicy {
    JwksPolicy {
        timeout: Duration::from_millis(500),
        attempts: 1,
        backoff_base: Duration::from_millis(100),
        ..JwksPolicy::default()
    }
}

async fn readyz(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
) -> (StatusCode, Option<String>, serde_json::Value) {
    call_json(app, test::TestRequest::get().uri("/readyz").to_request()).await
}

#[actix_web::test]
async fn readyz_is_503_while_no_keys_can_be_had_and_200_once_they_can() {
    let mock = MockClerk::start();
    mock.set_fault(Endpoint::Jwks, Fault::Status(503));
    let clerk = mock
        .clerk_builder()
        .jwks_policy(quick_policy())
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(clerk))
            .route("/readyz", web::get().to(health::readyz)),
    )
    .await;

    // Start-up with Clerk's JWKS down: the probe makes the fetch, and it fails.
    let (status, retry, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(retry.is_some());
    assert_eq!(body["ready"], false);
    assert_eq!(body["keys"]["source"], "jwks");
    assert_eq!(body["keys"]["keys"], 0);
    assert_eq!(body["keys"]["last_error"], "jwk-remote-failed-to-load");
    assert_eq!(body["keys"]["consecutive_failures"], 1);
    assert_eq!(mock.requests(Endpoint::Jwks), 1);
    assert!(!body.to_string().contains(mock.secret_key()));

    // Clerk is back: after the back-off, the next probe loads the keys.
    mock.clear_faults();
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    let (status, _, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ready"], true);
    assert!(body["keys"]["keys"].as_u64().unwrap() >= 1);
    assert_eq!(body["keys"]["age_seconds"], 0);
    assert_eq!(body["keys"]["last_error"], serde_json::Value::Null);
    assert_eq!(mock.requests(Endpoint::Jwks), 2);
    // Ready probes do not fetch again while the keys are fresh.
    readyz(&app).await;
    assert_eq!(mock.requests(Endpoint::Jwks), 2);
}

#[actix_web::test]
async fn a_pem_key_is_ready_without_network() {
    let mock = MockClerk::start();
    let clerk = Clerk::builder()
        .jwt_key(TEST_KEYS[0].public_pem)
        .build()
        .unwrap();
    let health = clerk.health().await;
    assert!(health.ready);
    assert_eq!(health.keys.source, "pem");
    assert!(health.backend_api.is_none());
    assert_eq!(mock.requests(Endpoint::Jwks), 0);
}

#[actix_web::test]
async fn the_report_shows_stores_and_backend_api_failures_without_leaving_readiness() {
    let (db, store) = TestDb::new(Backend::Sqlite).await;
    let mock = MockClerk::start();
    let probe = Probe::new(store);
    let clerk = mock
        .clerk_builder()
        .user_store(probe.clone())
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(clerk))
            .route("/readyz", web::get().to(health::readyz))
            .route(
                "/me/user",
                web::get().to(|u: ClerkUser<ClerkUserRecord>| async move {
                    HttpResponse::Ok().body(u.clerk_user_id.clone())
                }),
            ),
    )
    .await;
    let (status, _, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["stores"][0]["reachable"], true);
    assert!(body["stores"][0]["model"]
        .as_str()
        .unwrap()
        .ends_with("ClerkUserRecord"));
    assert_eq!(body["backend_api"]["last_error"], serde_json::Value::Null);

    // The Backend API fails a user call: reported, with how long ago.
    mock.set_fault(
        Endpoint::User,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    );
    let token = mock.token().subject("user_health").build();
    let req = test::TestRequest::get()
        .uri("/me/user")
        .insert_header(bearer(&token))
        .to_request();
    assert_eq!(
        call_json(&app, req).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The store goes down too: reported, but the replica can still verify tokens.
    probe.down.store(true, Ordering::SeqCst);
    let (status, _, body) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backend_api"]["last_error"], "rate-limited");
    assert_eq!(body["backend_api"]["last_error_seconds_ago"], 0);
    assert_eq!(body["stores"][0]["reachable"], false);
    probe.down.store(false, Ordering::SeqCst);
    db.cleanup().await;
}

#[actix_web::test]
async fn an_unreachable_database_at_start_up_is_reported_and_admits_no_token() {
    let mock = MockClerk::start();
    let store: clerk_actix::store::DieselUserStore =
        clerk_actix::store::DieselUserStore::connect("postgres://postgres@127.0.0.1:1/nowhere")
            .await
            .unwrap();
    let clerk = mock.clerk_builder().user_store(store).build().unwrap();
    let health = clerk.health().await;
    assert_eq!(health.keys.keys, 1, "keys load from MockClerk");
    assert_eq!(health.stores.len(), 1);
    assert!(!health.stores[0].reachable);
    // PostgreSQL is where other replicas record revocations: until they are loaded the replica
    // is not ready, and says why.
    assert!(!health.ready, "{health:?}");
    let feed = &health.change_feeds[0];
    assert!(!feed.connected && !feed.revocations_loaded, "{feed:?}");
    // Fail closed: a valid token waits for the revocations, then gets a 503, not a 200.
    let app = clerk_actix_tests::app(clerk.clone(), false).await;
    let token = mock.token().subject("user_waits").build();
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(&token))
        .to_request();
    let (status, _, body) = call_json(&app, req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["reason"], "user-store-unavailable");
    let health = clerk.health().await;
    assert!(health.change_feeds[0].last_error.is_some(), "{health:?}");
}
