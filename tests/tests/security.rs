//! The security defects of issue 9, one test (or more) per defect, each named after it: they
//! reproduce the attack and assert it no longer works.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix_web::{http::StatusCode, test};
use clerk_actix::{
    store::DieselUserStore,
    testing::{Endpoint, Fault, MockClerk, WebhookDelivery, MOCK_WEBHOOK_SECRET},
    ClerkEvent, DeletedUserPolicy, UserStore,
};
use clerk_actix_tests::{
    app, bearer, call_json,
    db::{Backend, TestDb, BACKENDS},
    http::{get, serve, user_json},
    replica::within,
    Probe, Recorder,
};
use serde_json::json;

fn misses(events: &[ClerkEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, ClerkEvent::TokenCacheMiss { .. }))
        .count()
}

// --- 1. Cache flooding through padding -------------------------------------------------------

#[actix_web::test]
async fn padding_flood_costs_one_verification_and_one_cache_entry() {
    let mock = MockClerk::start();
    let recorder = Recorder::default();
    let clerk = mock
        .clerk_builder()
        .on_event(recorder.listener())
        .build()
        .unwrap();
    let app = app(clerk.clone(), false).await;
    let token = mock.token().subject("user_padding").build();
    let room = clerk_actix::verify::DEFAULT_MAX_TOKEN_LEN - token.len();
    // Every padded variant verifies (Clerk's decoder ignores trailing `=`) and must share the
    // one cache entry: one RSA verification for the whole flood.
    for pad in (0..room).step_by(room / 500) {
        let variant = format!("{token}{}", "=".repeat(pad));
        let req = test::TestRequest::get()
            .uri("/me")
            .insert_header(bearer(&variant))
            .to_request();
        let (status, _, body) = call_json(&app, req).await;
        assert_eq!(status, StatusCode::OK, "{pad} padding: {body}");
        assert_eq!(body["user_id"], "user_padding");
    }
    assert_eq!(
        misses(&recorder.take()),
        1,
        "one verification for the flood"
    );
    assert_eq!(clerk.cached_tokens(), 1, "one cache entry for the flood");

    // Past the size limit the variant is refused before any decoding or cache lookup.
    let oversized = format!("{token}{}", "=".repeat(room + 1));
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(&oversized))
        .to_request();
    let (status, _, body) = call_json(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["reason"], "token-invalid");
    assert_eq!(misses(&recorder.take()), 0);
}

#[actix_web::test]
async fn padding_inside_the_signed_input_is_not_merged_with_the_valid_token() {
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().build().unwrap();
    let app = app(clerk.clone(), false).await;
    let token = mock.token().subject("user_padding2").build();
    // Warm the cache with the valid token.
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(&token))
        .to_request();
    assert_eq!(call_json(&app, req).await.0, StatusCode::OK);
    // `=` after the header or the payload changes what was signed: refused, cache or not.
    let (header, rest) = token.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    for forged in [
        format!("{header}=.{payload}.{signature}"),
        format!("{header}.{payload}==.{signature}"),
    ] {
        let req = test::TestRequest::get()
            .uri("/me")
            .insert_header(bearer(&forged))
            .to_request();
        let (status, _, body) = call_json(&app, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{forged}");
        assert_eq!(body["reason"], "token-invalid-signature");
    }
}

#[actix_web::test]
async fn token_cache_is_bounded_in_bytes() {
    let mock = MockClerk::start();
    let budget = 64 * 1024;
    let clerk = mock
        .clerk_builder()
        .token_cache_max_bytes(budget)
        .build()
        .unwrap();
    let app = app(clerk.clone(), false).await;
    // Large custom claims: ~4 KiB tokens, all distinct and valid.
    let filler = "x".repeat(2500);
    for i in 0..100 {
        let token = mock
            .token()
            .subject(&format!("user_bytes_{i}"))
            .claim("filler", filler.as_str())
            .build();
        let req = test::TestRequest::get()
            .uri("/me")
            .insert_header(bearer(&token))
            .to_request();
        assert_eq!(call_json(&app, req).await.0, StatusCode::OK);
    }
    let bytes = clerk.cached_token_bytes();
    let entries = clerk.cached_tokens();
    assert!(bytes <= budget, "{bytes} bytes held, budget {budget}");
    assert!(entries > 0 && entries < 100, "{entries} entries");
}

// --- 5. Session cookies without `azp` --------------------------------------------------------

async fn body_text(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    req: actix_http::Request,
) -> (StatusCode, String) {
    let res = test::call_service(app, req).await;
    let status = res.status();
    let bytes = actix_web::body::to_bytes(res.into_body())
        .await
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn with_cookie(uri: &str, token: &str) -> actix_http::Request {
    test::TestRequest::get()
        .uri(uri)
        .cookie(actix_web::cookie::Cookie::new(
            "__session",
            token.to_owned(),
        ))
        .to_request()
}

#[actix_web::test]
async fn session_cookie_is_ignored_without_authorized_parties() {
    let mock = MockClerk::start();
    // A token from any subdomain: without an azp check the cookie must not count.
    let token = mock
        .token()
        .subject("user_cookie")
        .authorized_party("https://evil.example.com")
        .build();
    let clerk = clerk_actix::Clerk::builder()
        .secret_key(mock.secret_key())
        .api_url(mock.api_url())
        .build()
        .unwrap();
    let app = app(clerk, false).await;
    let (status, body) = body_text(&app, with_cookie("/state", &token)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
    let (status, _) = body_text(&app, with_cookie("/me", &token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The same token in the Authorization header is read (and azp is not checked there).
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(bearer(&token))
        .to_request();
    assert_eq!(call_json(&app, req).await.0, StatusCode::OK);

    // Asking for cookies without parties is a configuration error.
    let err = clerk_actix::Clerk::builder()
        .secret_key(mock.secret_key())
        .api_url(mock.api_url())
        .accept_session_cookie(true)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        clerk_actix::ConfigError::CookieWithoutAuthorizedParties
    );
}

// --- 6. Invalid cookie on a public page ------------------------------------------------------

#[actix_web::test]
async fn invalid_cookie_signs_out_on_public_pages_but_invalid_bearer_is_401() {
    let mock = MockClerk::start();
    let recorder = Recorder::default();
    let clerk = mock
        .clerk_builder()
        .on_event(recorder.listener())
        .build()
        .unwrap();
    let app = app(clerk.clone(), false).await;
    let expired = mock
        .token()
        .subject("user_idle_tab")
        .expires_at(clerk_actix::testing::unix_now() - 60)
        .build();

    // A public page renders signed out, and the state keeps the reason.
    let (status, body) = body_text(&app, with_cookie("/public", &expired)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
    let (status, body) = body_text(&app, with_cookie("/state", &expired)).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "signed-out:token-expired")
    );
    // The failure is still an event.
    assert!(recorder.take().iter().any(|e| matches!(
        e,
        ClerkEvent::AuthFailed { reason, .. } if reason.as_str() == "token-expired"
    )));
    // A protected route answers 401 invalid_token with the cookie's reason.
    let res = test::call_service(&app, with_cookie("/me", &expired)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(challenge.contains("token-expired"), "{challenge}");

    // The same token as a Bearer header is refused even on the public page.
    let req = test::TestRequest::get()
        .uri("/public")
        .insert_header(bearer(&expired))
        .to_request();
    let (status, _, body) = call_json(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["reason"], "token-expired");

    // Required mode: the cookie must be valid.
    let required = clerk_actix_tests::app(clerk, true).await;
    let (status, _) = body_text(&required, with_cookie("/public", &expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// --- 8. What callers and logs see ------------------------------------------------------------

#[actix_web::test]
async fn server_errors_carry_no_configuration_detail_unless_allowed() {
    use actix_web::{web, App};
    // A webhook endpoint without a signing secret is a 500: the fix goes to the logs.
    for expose in [false, true] {
        let mock = MockClerk::start();
        let clerk = clerk_actix::Clerk::builder()
            .secret_key(mock.secret_key())
            .api_url(mock.api_url())
            .expose_error_details(expose)
            .build()
            .unwrap();
        let app = test::init_service(App::new().app_data(web::Data::new(clerk)).service(
            clerk_actix::webhooks::resource::<clerk_actix::store::ClerkUserRecord>(
                "/webhooks/clerk",
            ),
        ))
        .await;
        let req = test::TestRequest::post()
            .uri("/webhooks/clerk")
            .set_payload("{}")
            .to_request();
        let (status, _, body) = call_json(&app, req).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["reason"], "webhook-secret-missing");
        assert_eq!(body.get("fix").is_some(), expose, "{body}");
        assert!(!body.to_string().contains("CLERK_WEBHOOK_SIGNING_SECRET") || expose);
    }
    // The same rule for extractor misconfiguration: a user store that was never registered.
    let mock = MockClerk::start();
    let clerk = mock
        .clerk_builder()
        .expose_error_details(false)
        .build()
        .unwrap();
    let err = clerk_actix::SyncError::NoStore.to_auth_error();
    let req = test::TestRequest::default().to_http_request();
    let res = clerk.error_response(&err, &req);
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = actix_web::body::to_bytes(res.into_body()).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["reason"], "user-store-missing");
    assert!(body.get("fix").is_none(), "{body}");
}

// --- 2. Deleted users come back ---------------------------------------------------------------

fn now_ms() -> i64 {
    clerk_actix::testing::unix_now() * 1000
}

/// A Clerk for `store` with this deletion policy, served over HTTP: (mock, clerk, base URL,
/// webhook URL).
fn served<S: UserStore>(
    store: S,
    policy: DeletedUserPolicy,
) -> (MockClerk, clerk_actix::Clerk, String, String) {
    let mock = MockClerk::start();
    let clerk = mock
        .clerk_builder()
        .user_store(store)
        .on_user_deleted(policy)
        .build()
        .unwrap();
    let base = serve(clerk.clone());
    let hook = format!("{base}/webhooks/clerk");
    (mock, clerk, base, hook)
}

/// Clerk's `user.deleted` delivery for `id`.
fn deleted(mock: &MockClerk, id: &str) -> WebhookDelivery {
    mock.webhook(
        "user.deleted",
        json!({"object": "user", "id": id, "deleted": true}),
    )
}

#[actix_web::test]
async fn deletion_is_final_under_both_policies_with_late_replayed_and_resigned_deliveries() {
    for backend in BACKENDS {
        for policy in [DeletedUserPolicy::Deactivate, DeletedUserPolicy::Delete] {
            let case = format!("{backend:?}/{policy:?}");
            let (db, store) = TestDb::new(backend).await;
            let (mock, _clerk, base, hook) = served(store, policy);
            let fresh: DieselUserStore = DieselUserStore::connect(&db.url).await.unwrap();
            let id = "user_gone";
            let token = mock.token().subject(id).build();

            let created = mock.webhook("user.created", user_json(id, 1_000, "Ada"));
            assert_eq!(created.send(&hook).await.unwrap().1["status"], "applied");
            assert_eq!(get(&base, "/api/me/user", &token).await.0, 200, "{case}");

            let deleted = deleted(&mock, id);
            assert_eq!(deleted.send(&hook).await.unwrap().1["status"], "applied");
            // The tombstone keeps Clerk's time of the deletion (the envelope's timestamp).
            assert_eq!(
                fresh.deleted_at(id).await.unwrap(),
                Some(deleted.timestamp * 1000),
                "{case}"
            );
            let check_row = || async {
                match policy {
                    DeletedUserPolicy::Delete => {
                        assert_eq!(db.count_rows(&fresh).await, 0, "{case}: personal data back");
                    }
                    _ => {
                        let row = fresh.find(id).await.unwrap().unwrap();
                        assert!(!row.is_active, "{case}: reactivated");
                        assert_eq!(row.first_name.as_deref(), Some("Ada"), "{case}");
                        assert_eq!(row.updated_at, 1_000, "{case}: Clerk's time kept");
                    }
                }
            };
            check_row().await;

            // Late, retried, replayed and re-signed deliveries: every one acknowledged,
            // none applied. Their `updated_at` is far past the local clock at deletion.
            let far = now_ms() + 86_400_000;
            let resigned_created = WebhookDelivery::sign(
                MOCK_WEBHOOK_SECRET,
                "msg_resigned_created".into(),
                clerk_actix::testing::unix_now(),
                created.body.clone(),
            );
            for (what, delivery, expected) in [
                (
                    "late update",
                    mock.webhook("user.updated", user_json(id, far, "Zombie")),
                    "ignored",
                ),
                (
                    "late create",
                    mock.webhook("user.created", user_json(id, far, "Zombie")),
                    "ignored",
                ),
                ("re-signed create", resigned_created, "ignored"),
                ("replayed create", created.clone(), "duplicate"),
                ("replayed delete", deleted.clone(), "duplicate"),
            ] {
                let (status, body) = delivery.send(&hook).await.unwrap();
                assert_eq!(
                    (status, body["status"].as_str()),
                    (200, Some(expected)),
                    "{case}: {what}"
                );
                check_row().await;
            }
            // The revocation was never lifted: every route refuses the token.
            assert_eq!(get(&base, "/api/me", &token).await.0, 401, "{case}");
            assert_eq!(get(&base, "/api/me/user", &token).await.0, 401, "{case}");

            // A restarted process (empty memory) over the same database: the Backend API
            // still answers with the user, and the tombstone refuses it.
            let restarted = mock
                .clerk_builder()
                .user_store(
                    DieselUserStore::<clerk_actix::store::ClerkUserRecord>::connect(&db.url)
                        .await
                        .unwrap(),
                )
                .on_user_deleted(policy)
                .build()
                .unwrap();
            let base2 = serve(restarted);
            let (status, body) = get(&base2, "/api/me/user", &token).await;
            assert_eq!(status, 401, "{case}: {body}");
            // On PostgreSQL the restarted process loaded the deletion's revocation from the
            // change log before serving (the token is refused before any user lookup). On
            // SQLite the user is looked up: the deactivated row (synced recently, so served
            // without asking Clerk) is inactive; without a row, the tombstone refuses the
            // Backend API's answer.
            let expected = match (backend, policy) {
                (Backend::Postgres, _) | (_, DeletedUserPolicy::Deactivate) => "user-inactive",
                _ => "user-not-found",
            };
            assert_eq!(body["reason"], expected, "{case}");
            if backend == Backend::Postgres {
                // Also on routes that only check the session.
                assert_eq!(get(&base2, "/api/me", &token).await.0, 401, "{case}");
            }
            let late = mock.webhook("user.updated", user_json(id, far + 1, "Zombie"));
            let (status, body) = late.send(&format!("{base2}/webhooks/clerk")).await.unwrap();
            assert_eq!(
                (status, body["status"].as_str()),
                (200, Some("ignored")),
                "{case}"
            );
            check_row().await;
            db.cleanup().await;
        }
    }
}

#[actix_web::test]
async fn backend_api_answer_arriving_after_the_deletion_does_not_bring_the_user_back() {
    for backend in BACKENDS {
        for policy in [DeletedUserPolicy::Deactivate, DeletedUserPolicy::Delete] {
            let case = format!("{backend:?}/{policy:?}");
            let (db, store) = TestDb::new(backend).await;
            let (mock, _clerk, base, hook) = served(store, policy);
            let id = "user_raced";
            let token = mock.token().subject(id).build();
            // The first request's Backend API call is slow; the deletion lands meanwhile, and
            // then Clerk's (stale) answer still describes the user. The deletion is sent once
            // the mock has received the call (not after a guessed sleep).
            mock.set_fault(Endpoint::User, Fault::Delay(Duration::from_millis(800)));
            let deletion = async {
                within(Duration::from_secs(5), "the Backend API call", || async {
                    mock.requests(Endpoint::User) == 1
                })
                .await;
                let deleted = deleted(&mock, id);
                deleted.send(&hook).await.unwrap()
            };
            let ((status, body), (hook_status, _)) =
                futures_util::join!(get(&base, "/api/me/user", &token), deletion);
            assert_eq!(hook_status, 200);
            assert_eq!(mock.requests(Endpoint::User), 1, "{case}");
            assert_eq!(status, 401, "{case}: {body}");
            let fresh: DieselUserStore = DieselUserStore::connect(&db.url).await.unwrap();
            assert_eq!(
                db.count_rows(&fresh).await,
                0,
                "{case}: the answer was stored"
            );
            assert!(fresh.deleted_at(id).await.unwrap().is_some(), "{case}");
            db.cleanup().await;
        }
    }
}

// --- 3. Stale writes into the user cache ------------------------------------------------------

#[actix_web::test]
async fn a_slow_first_load_never_overwrites_a_newer_cached_user() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let probe = Probe::new(store);
        let events = Recorder::default();
        let clerk = mock
            .clerk_builder()
            .user_store(probe.clone())
            .on_event(events.listener())
            .build()
            .unwrap();
        let base = serve(clerk);
        let hook = format!("{base}/webhooks/clerk");
        let id = "user_stale";
        let token = mock.token().subject(id).build();
        mock.set_user(user_json(id, 1_000, "Old"));
        // The request's load (Backend API v1 + upsert) is held once v1 is written...
        let mut held = probe.hold_next_upsert();
        let webhook = async {
            held.written().await;
            // ... while a webhook with v2 arrives. Its write and cache update are ordered
            // behind the load (the user's cache entry is computed one at a time), so v2 only
            // reaches the table after the load; code that wrote v2 and cached it meanwhile
            // would show v2 in the table now, and v1 would then overwrite it in the cache.
            let update = mock.webhook("user.updated", user_json(id, 2_000, "New"));
            let hook = hook.clone();
            let sending = actix_web::rt::spawn(async move { update.send(&hook).await.unwrap() });
            within(Duration::from_secs(5), "the webhook arrives", || async {
                events
                    .take()
                    .iter()
                    .any(|e| matches!(e, ClerkEvent::WebhookReceived { .. }))
            })
            .await;
            // Time for such code to get v2 in (this bounds how long the test gives a broken
            // ordering to show; the result does not depend on it).
            // (A deadline, not a timeout around the query: a cancelled SQLite query panics.)
            let deadline = std::time::Instant::now() + Duration::from_millis(300);
            let mut stored_early = false;
            while !stored_early && std::time::Instant::now() < deadline {
                let row = probe.inner.find(id).await.unwrap();
                stored_early = row.and_then(|u| u.first_name).as_deref() == Some("New");
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(
                !stored_early,
                "{backend:?}: v2 stored before the load ended"
            );
            held.release();
            sending.await.unwrap()
        };
        let ((status, first), (hook_status, hook_body)) =
            futures_util::join!(get(&base, "/api/me/user", &token), webhook);
        assert_eq!((status, hook_status), (200, 200), "{first} {hook_body}");
        assert_eq!(first["user"]["first_name"], "Old", "the request saw v1");
        // v1 must not have replaced v2 in the cache (nor in the table).
        let (_, again) = get(&base, "/api/me/user", &token).await;
        assert_eq!(again["source"], "cache");
        assert_eq!(
            again["user"]["first_name"], "New",
            "{backend:?}: stale cache write"
        );
        let row = probe.inner.find(id).await.unwrap().unwrap();
        assert_eq!(row.first_name.as_deref(), Some("New"));
        assert_eq!(mock.requests(Endpoint::User), 1);
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn a_webhook_update_racing_a_deletion_never_puts_the_user_back_in_the_cache() {
    for backend in BACKENDS {
        for policy in [DeletedUserPolicy::Deactivate, DeletedUserPolicy::Delete] {
            let case = format!("{backend:?}/{policy:?}");
            let (db, store) = TestDb::new(backend).await;
            let probe = Probe::new(store);
            let (mock, clerk, _base, hook) = served(probe.clone(), policy);
            let id = "user_racing";
            let created = mock.webhook("user.created", user_json(id, 1_000, "Ada"));
            assert_eq!(created.send(&hook).await.unwrap().0, 200);
            // The update's write lands, then its answer is held back while the deletion
            // arrives: the deletion must win in the cache as it does in the table. Ordered by
            // what happened (the update has written; the deletion's tombstone is stored), not
            // by sleeps.
            let mut held = probe.hold_next_upsert();
            let update = mock.webhook("user.updated", user_json(id, 2_000, "Grace"));
            let update_hook = hook.clone();
            let updating =
                actix_web::rt::spawn(async move { update.send(&update_hook).await.unwrap().0 });
            held.written().await;
            let deletion = deleted(&mock, id);
            let deletion_hook = hook.clone();
            let deleting =
                actix_web::rt::spawn(async move { deletion.send(&deletion_hook).await.unwrap() });
            while probe.inner.deleted_at(id).await.unwrap().is_none() {
                actix_web::rt::time::sleep(Duration::from_millis(2)).await;
            }
            held.release();
            let (updated, deleted) = (updating.await.unwrap(), deleting.await.unwrap());
            assert_eq!((updated, deleted.0), (200, 200), "{case}");
            assert_eq!(
                clerk
                    .cached_users::<clerk_actix::store::ClerkUserRecord>()
                    .await,
                0,
                "{case}: the deleted user is back in the cache"
            );
            // And whatever answers next, the user is refused.
            let loaded = clerk.user::<clerk_actix::store::ClerkUserRecord>(id).await;
            match (policy, loaded) {
                (DeletedUserPolicy::Deactivate, Ok(user)) => assert!(!user.is_active, "{case}"),
                (_, Err(clerk_actix::SyncError::NotFound)) => {}
                (_, other) => panic!("{case}: {other:?}"),
            }
            db.cleanup().await;
        }
    }
}

#[actix_web::test]
async fn concurrent_upserts_and_deletions_never_resurrect_a_row() {
    // PostgreSQL serializes an id's upsert and deletion (advisory lock); without it an upsert
    // inserting a new row and a deletion that cannot see it yet both commit.
    let (db, store) = TestDb::new(clerk_actix_tests::db::Backend::Postgres).await;
    let ids: Vec<String> = (0..200).map(|i| format!("user_storm_{i}")).collect();
    let data: Vec<_> = ids
        .iter()
        .map(|id| serde_json::from_value(user_json(id, 1_000, "Storm")).unwrap())
        .collect();
    // Each id's upsert and deletion start together, on connections of their own.
    let pairs = data.iter().map(|d| async {
        futures_util::join!(
            store.upsert(d),
            store.mark_deleted(&d.id, 5_000, DeletedUserPolicy::Delete)
        )
    });
    for (written, deleted) in futures_util::future::join_all(pairs).await {
        assert!(written.is_ok() && deleted.is_ok());
    }
    assert_eq!(
        db.count_rows(&store).await,
        0,
        "a deleted user's row came back"
    );
    for id in &ids {
        assert_eq!(store.deleted_at(id).await.unwrap(), Some(5_000));
    }
    db.cleanup().await;
}

#[actix_web::test]
async fn requests_queued_behind_a_failed_load_share_its_answer() {
    use actix_web::{web, App, HttpResponse};
    let (db, store) = TestDb::new(clerk_actix_tests::db::Backend::Sqlite).await;
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().user_store(store).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(clerk_actix::ClerkMiddleware::new(clerk))
            .route(
                "/me/user",
                web::get().to(
                    |u: clerk_actix::ClerkUser<clerk_actix::store::ClerkUserRecord>| async move {
                        HttpResponse::Ok().body(u.clerk_user_id.clone())
                    },
                ),
            ),
    )
    .await;
    let token = mock.token().subject("user_outage").build();
    // Clerk is down; the user was never stored.
    mock.set_fault(Endpoint::User, Fault::Status(503));
    let requests = (0..20).map(|_| {
        let req = test::TestRequest::get()
            .uri("/me/user")
            .insert_header(bearer(&token))
            .to_request();
        call_json(&app, req)
    });
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers
        .iter()
        .all(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE));
    // One load (with its bounded retries), not one per waiting request.
    let calls = mock.requests(Endpoint::User);
    assert!(
        (1..=3).contains(&calls),
        "{calls} Backend API calls for 20 requests"
    );
    db.cleanup().await;
}
