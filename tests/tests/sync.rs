//! User sync against the real PostgreSQL (127.0.0.1:5432) and SQLite, with MockClerk as the
//! Backend API: upsert rules, coalescing, the warm path, faults.

#![allow(clippy::unwrap_used)]

use std::{sync::atomic::Ordering, time::Duration};

use actix_web::{http::StatusCode, test, web, App, HttpResponse};
use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore},
    testing::{mock_user_json, Endpoint, Fault, MockClerk},
    ClerkEvent, ClerkMiddleware, ClerkUser, ClerkUserData, DeletedUserPolicy, UserSource,
    UserStore,
};
use clerk_actix_tests::{
    bearer,
    db::{Backend, TestDb, BACKENDS},
    Probe, Recorder,
};
use futures_util::future::join_all;
use serde_json::{json, Value};

fn user_data(id: &str, updated_at: i64, first_name: Option<&str>) -> ClerkUserData {
    let mut v = mock_user_json(id);
    v["updated_at"] = json!(updated_at);
    v["first_name"] = json!(first_name);
    serde_json::from_value(v).unwrap()
}

async fn me_user(user: ClerkUser<ClerkUserRecord>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "source": user.source(),
        "user": &*user,
    }))
}

async fn user_app(
    clerk: clerk_actix::Clerk,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
    Error = actix_web::Error,
> {
    test::init_service(
        App::new()
            .wrap(ClerkMiddleware::new(clerk))
            .route("/me/user", web::get().to(me_user)),
    )
    .await
}

async fn get_user(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    token: &str,
) -> (StatusCode, Option<String>, Value) {
    let req = test::TestRequest::get()
        .uri("/me/user")
        .insert_header(bearer(token))
        .to_request();
    clerk_actix_tests::call_json(app, req).await
}

#[actix_web::test]
async fn upsert_inserts_updates_clears_and_ignores_stale_updates() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let id = "user_upsert1";

        let first = store
            .upsert(&user_data(id, 1_000, Some("Ada")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.first_name.as_deref(), Some("Ada"), "{backend:?}");
        assert_eq!(first.email.as_deref(), Some("upsert1@example.com"));
        assert_eq!(first.last_name.as_deref(), Some("User upsert1"));
        assert!(first.is_active);
        assert_eq!(first.updated_at, 1_000);

        // Newer update: changes.
        let mut newer = user_data(id, 2_000, Some("Grace"));
        newer.username = Some("grace".into());
        let second = store.upsert(&newer).await.unwrap().unwrap();
        assert_eq!(second.id, first.id, "same row");
        assert_eq!(second.first_name.as_deref(), Some("Grace"));
        assert_eq!(second.username.as_deref(), Some("grace"));

        // A value removed in Clerk clears the column.
        let cleared = store
            .upsert(&user_data(id, 3_000, None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cleared.first_name, None, "{backend:?}");

        // An older update changes nothing and returns the stored row.
        let stale = store
            .upsert(&user_data(id, 2_500, Some("Stale")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stale.first_name, None,
            "{backend:?}: stale update must not overwrite"
        );
        assert_eq!(stale.updated_at, 3_000);
        let stored = store.find(id).await.unwrap().unwrap();
        assert_eq!(stored, stale);

        // Banned → inactive; then deleted (the row goes, a tombstone stays).
        let mut banned = user_data(id, 4_000, Some("B"));
        banned.banned = true;
        assert!(!store.upsert(&banned).await.unwrap().unwrap().is_active);
        assert!(store
            .mark_deleted(id, 5_000, DeletedUserPolicy::Delete)
            .await
            .unwrap());
        assert!(store.find(id).await.unwrap().is_none());
        assert_eq!(store.deleted_at(id).await.unwrap(), Some(5_000));
        // Idempotent: the first deletion time stays.
        assert!(!store
            .mark_deleted(id, 6_000, DeletedUserPolicy::Delete)
            .await
            .unwrap());
        assert_eq!(store.deleted_at(id).await.unwrap(), Some(5_000));
        // Deletion is final: a later upsert writes nothing.
        assert!(store
            .upsert(&user_data(id, 9_000, Some("Back")))
            .await
            .unwrap()
            .is_none());
        assert_eq!(db.count_rows(&store).await, 0);
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn fifty_concurrent_first_logins_make_one_row_one_api_call() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let probe = Probe::new(store);
        let clerk = mock
            .clerk_builder()
            .user_store(probe.clone())
            .build()
            .unwrap();
        let app = user_app(clerk).await;
        let tokens: Vec<String> = (0..50)
            .map(|i| {
                mock.token()
                    .subject("user_storm")
                    .session_id(&format!("sess_{i}"))
                    .build()
            })
            .collect();
        // Each Backend API call takes 200 ms: 50 loads one after another would take 10 s.
        mock.set_fault(Endpoint::User, Fault::Delay(Duration::from_millis(200)));
        let started = std::time::Instant::now();
        let results = join_all(tokens.iter().map(|t| get_user(&app, t))).await;
        let elapsed = started.elapsed();
        for (status, _, body) in &results {
            assert_eq!(*status, StatusCode::OK, "{backend:?}: {body}");
            assert_eq!(body["user"]["clerk_user_id"], "user_storm");
        }
        assert!(
            elapsed < Duration::from_secs(3),
            "{backend:?}: the requests overlapped on one load ({elapsed:?})"
        );
        assert_eq!(
            mock.requests(Endpoint::User),
            1,
            "{backend:?}: one Backend API call"
        );
        assert_eq!(
            probe.upserts.load(Ordering::SeqCst),
            1,
            "{backend:?}: one upsert"
        );
        // And one read of the row before it (was it synced recently by another replica?).
        assert_eq!(
            probe.calls.load(Ordering::SeqCst),
            2,
            "{backend:?}: one find, one upsert"
        );
        assert_eq!(db.count_rows(&probe.inner).await, 1);
        let api_sources = results
            .iter()
            .filter(|(_, _, b)| b["source"] == "api")
            .count();
        assert_eq!(api_sources, 1);
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn a_cached_user_costs_no_api_call_and_no_sql() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let probe = Probe::new(store);
        let rec = Recorder::default();
        let clerk = mock
            .clerk_builder()
            .user_store(probe.clone())
            .on_event(rec.listener())
            .build()
            .unwrap();
        let app = user_app(clerk).await;
        let token = mock.token().subject("user_warm").build();
        assert_eq!(get_user(&app, &token).await.2["source"], "api");
        mock.reset_counters();
        probe.calls.store(0, Ordering::SeqCst);
        rec.take();
        for i in 0..25 {
            // Fresh tokens too: the user cache is keyed by user, not by token.
            let t = if i % 2 == 0 {
                token.clone()
            } else {
                mock.token().subject("user_warm").session_id("s2").build()
            };
            let (status, _, body) = get_user(&app, &t).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["source"], "cache");
        }
        assert_eq!(mock.requests(Endpoint::User), 0, "no Backend API call");
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0, "no SQL");
        let events = rec.take();
        let cached = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ClerkEvent::UserAuthenticated {
                        source: UserSource::Cache,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(cached, 25);
        let user_event = events.iter().find_map(|e| match e {
            ClerkEvent::UserAuthenticated { user, .. } => user.get::<ClerkUserRecord>().cloned(),
            _ => None,
        });
        assert_eq!(user_event.unwrap().clerk_user_id, "user_warm");
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn backend_api_faults_map_to_503_and_stored_users_are_still_served() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let clerk = mock
            .clerk_builder()
            .user_store(store)
            .api_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let app = user_app(clerk.clone()).await;

        // 500 with nothing stored: 503 + Retry-After, nothing written.
        mock.set_fault(Endpoint::User, Fault::Status(500));
        let (status, retry, body) = get_user(&app, &mock.token().subject("user_f1").build()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{backend:?}");
        assert!(retry.is_some());
        assert_eq!(body["reason"], "user-sync-failed");
        assert_eq!(
            mock.requests(Endpoint::User),
            3,
            "5xx retried a bounded number of times"
        );

        // 429: Retry-After passed through, and the handle holds back its calls until then
        // (a handle of its own: the hold would answer the rest of this test).
        let limited = user_app(
            mock.clerk_builder()
                .user_store(
                    DieselUserStore::<ClerkUserRecord>::connect(&db.url)
                        .await
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .await;
        mock.set_fault(
            Endpoint::User,
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        );
        let before = mock.requests(Endpoint::User);
        let (status, retry, _) = get_user(&limited, &mock.token().subject("user_f2").build()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("7"));
        assert_eq!(
            mock.requests(Endpoint::User),
            before + 1,
            "429 is not retried"
        );
        mock.clear_faults();
        let (status, retry, body) =
            get_user(&limited, &mock.token().subject("user_f2b").build()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let left: u64 = retry.unwrap().parse().unwrap();
        assert!((1..=7).contains(&left), "{left}");
        assert_eq!(
            mock.requests(Endpoint::User),
            before + 1,
            "{backend:?}: no call while Clerk's Retry-After holds"
        );

        // Timeout.
        mock.set_fault(Endpoint::User, Fault::Delay(Duration::from_secs(2)));
        let (status, _, _) = get_user(&app, &mock.token().subject("user_f3").build()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

        // A user stored earlier (e.g. by a webhook or sync_user) is served from the database.
        mock.clear_faults();
        let stored: ClerkUserRecord = clerk
            .sync_user(&user_data("user_f4", 5, Some("Kept")))
            .await
            .unwrap();
        clerk.invalidate_user::<ClerkUserRecord>("user_f4").await;
        mock.set_fault(Endpoint::User, Fault::Status(503));
        let (status, _, body) = get_user(&app, &mock.token().subject("user_f4").build()).await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: {body}");
        assert_eq!(body["source"], "database");
        assert_eq!(body["user"]["id"], stored.id);
        assert_eq!(
            db.count_rows(&DieselUserStore::connect(&db.url).await.unwrap())
                .await,
            1
        );

        // Deleted in Clerk: 401.
        mock.clear_faults();
        mock.remove_user("user_gone");
        let (status, _, body) = get_user(&app, &mock.token().subject("user_gone").build()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["reason"], "user-not-found");

        // Banned in Clerk: 401 user-inactive.
        let mut banned = mock_user_json("user_banned");
        banned["banned"] = json!(true);
        mock.set_user(banned);
        let (status, _, body) = get_user(&app, &mock.token().subject("user_banned").build()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["reason"], "user-inactive");
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn database_down_is_503_and_cached_users_are_still_served() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let probe = Probe::new(store);
        let clerk = mock
            .clerk_builder()
            .user_store(probe.clone())
            .build()
            .unwrap();
        let app = user_app(clerk).await;
        let cached = mock.token().subject("user_cached").build();
        assert_eq!(get_user(&app, &cached).await.0, StatusCode::OK);

        probe.down.store(true, Ordering::SeqCst);
        let (status, retry, body) = get_user(&app, &mock.token().subject("user_new").build()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry.is_some());
        assert_eq!(body["reason"], "user-store-unavailable");
        assert!(
            !body.to_string().contains("database down"),
            "internals leak: {body}"
        );
        let (status, _, body) = get_user(&app, &cached).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["source"], "cache");

        // Nothing half-written: the failed user was not cached and is loaded once the DB is back.
        probe.down.store(false, Ordering::SeqCst);
        let (status, _, body) = get_user(&app, &mock.token().subject("user_new").build()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["source"], "api");
        assert_eq!(db.count_rows(&probe.inner).await, 2);
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn an_unreachable_database_is_503_not_500() {
    let mock = MockClerk::start();
    let store: DieselUserStore =
        DieselUserStore::connect("postgres://postgres@127.0.0.1:1/nowhere")
            .await
            .unwrap();
    let app = user_app(mock.clerk_builder().user_store(store).build().unwrap()).await;
    let (status, retry, body) = get_user(&app, &mock.token().subject("user_x").build()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.is_some());
    assert_eq!(body["reason"], "user-store-unavailable");
}

#[actix_web::test]
async fn in_memory_sqlite_is_refused_with_a_clear_error() {
    for url in [
        ":memory:",
        "sqlite::memory:",
        "sqlite://file:x?mode=memory",
        "",
    ] {
        let err = DieselUserStore::<ClerkUserRecord>::connect(url)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("in-memory SQLite"), "{url}: {err}");
    }
}

#[actix_web::test]
async fn anonymous_and_missing_store() {
    let mock = MockClerk::start();
    let app = user_app(mock.clerk_builder().build().unwrap()).await;
    let req = test::TestRequest::get().uri("/me/user").to_request();
    assert_eq!(
        test::call_service(&app, req).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _, body) = get_user(&app, &mock.token().build()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["reason"], "user-store-missing");
    assert!(body["fix"].as_str().unwrap().contains("user_store"));
}

#[actix_web::test]
async fn client_api_get_user_details_and_sync_user() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let clerk = mock.clerk_builder().user_store(store).build().unwrap();
        let data = clerk.get_user_details("user_client").await.unwrap();
        assert_eq!(data.primary_email(), Some("client@example.com"));
        assert!(matches!(
            clerk.get_user_details("user_../../jwks").await,
            Err(clerk_actix::api::ApiError::NotFound)
        ));
        mock.remove_user("user_missing");
        assert!(matches!(
            clerk.get_user_details("user_missing").await,
            Err(clerk_actix::api::ApiError::NotFound)
        ));
        let row: ClerkUserRecord = clerk.sync_user(&data).await.unwrap();
        assert_eq!(row.email.as_deref(), Some("client@example.com"));
        // sync_user refreshed the cache: no Backend API call for this user now.
        mock.reset_counters();
        let cached: ClerkUserRecord = clerk.user("user_client").await.unwrap();
        assert_eq!(cached.id, row.id);
        assert_eq!(mock.requests(Endpoint::User), 0);
        let err = no_secret_key_error().await;
        assert!(matches!(err, clerk_actix::api::ApiError::NoSecretKey));
        db.cleanup().await;
    }
}

async fn no_secret_key_error() -> clerk_actix::api::ApiError {
    let mock = MockClerk::start();
    let clerk = clerk_actix::Clerk::builder()
        .jwt_key(mock.active_key().public_pem)
        .build()
        .unwrap();
    clerk.get_user_details("user_1").await.unwrap_err()
}

#[actix_web::test]
async fn public_metadata_is_jsonb_on_postgres_and_existing_rows_are_converted() {
    use diesel::{sql_types::BigInt, QueryableByName};
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let (db, store) = TestDb::new(Backend::Postgres).await;
    let clerk_actix::store::DbPool::Postgres(pool) = store.pool() else {
        unreachable!()
    };
    let mut conn = pool.get().await.unwrap();
    // A database from before the JSONB migration, with a row written then (JSON text).
    conn.batch_execute(
        "ALTER TABLE clerk_users ALTER COLUMN public_metadata DROP DEFAULT;
         ALTER TABLE clerk_users ALTER COLUMN public_metadata TYPE TEXT USING public_metadata::text;
         DELETE FROM __diesel_schema_migrations WHERE version = '20261202000001';
         INSERT INTO clerk_users (clerk_user_id, public_metadata, created_at, updated_at, synced_at)
         VALUES ('user_old', '{\"plan\": \"gold\"}', 1, 1, 1);",
    )
    .await
    .unwrap();
    drop(conn);
    store.run_migrations().await.unwrap();

    let old = store.find("user_old").await.unwrap().unwrap();
    assert_eq!(old.public_metadata.0, json!({"plan": "gold"}));
    let mut data = user_data("user_new", 1_000, Some("Ada"));
    data.public_metadata = json!({"plan": "gold", "seats": 3});
    let new = store.upsert(&data).await.unwrap().unwrap();
    assert_eq!(new.public_metadata.0["seats"], 3);
    // Null from Clerk is stored as {}.
    let mut bare = user_data("user_bare", 1_000, None);
    bare.public_metadata = serde_json::Value::Null;
    assert_eq!(
        store
            .upsert(&bare)
            .await
            .unwrap()
            .unwrap()
            .public_metadata
            .0,
        json!({})
    );

    // What users query JSONB for: containment, on old and new rows alike.
    let mut conn = pool.get().await.unwrap();
    let gold: Vec<Count> = diesel::sql_query(
        "SELECT count(*) AS n FROM clerk_users WHERE public_metadata @> '{\"plan\": \"gold\"}'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(gold[0].n, 2);
    let kind: Vec<Count> = diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.columns \
         WHERE table_name = 'clerk_users' AND column_name = 'public_metadata' AND data_type = 'jsonb'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(kind[0].n, 1);
    drop(conn);
    db.cleanup().await;
}

/// The sweep of leftover test databases drops those of exited runs only: a concurrent run's
/// databases (its process alive) survive it.
#[actix_web::test]
async fn the_test_database_sweep_spares_live_runs() {
    use diesel::prelude::*;
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let mut conn = clerk_actix_tests::db::admin().await;
    let tag = fastrand::u64(..);
    // pid 1 is always alive; pids are below 2^22 on Linux, so 999999999 never is.
    let live = format!("clerk_actix_test_1_{tag}");
    let dead = format!("clerk_actix_test_999999999_{tag}");
    for name in [&live, &dead] {
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    clerk_actix_tests::db::sweep_dead_owners(&mut conn).await;
    let left: Vec<String> = diesel::sql_query(format!(
        "SELECT datname FROM pg_database WHERE datname LIKE 'clerk_actix_test_%_{tag}'"
    ))
    .load::<Name>(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|n| n.datname)
    .collect();
    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {live}"))
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![live],
        "the dead run's database is dropped, the live one kept"
    );
}

/// The database-fallback window: a stored row served while Clerk is down is cached for
/// `user_fallback_ttl` only (not the hour of `user_cache_ttl`), then Clerk is asked again;
/// by default the window is longer than a moment (30 s).
#[actix_web::test]
async fn a_row_served_while_clerk_is_down_is_cached_for_the_fallback_window_only() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let short = mock
            .clerk_builder()
            .user_store(store)
            .user_fallback_ttl(Duration::from_secs(2))
            .build()
            .unwrap();
        let other: DieselUserStore<ClerkUserRecord> =
            DieselUserStore::connect(&db.url).await.unwrap();
        let aging: DieselUserStore<ClerkUserRecord> =
            DieselUserStore::connect(&db.url).await.unwrap();
        let default = mock.clerk_builder().user_store(other).build().unwrap();
        let (short_app, default_app) = (
            user_app(short.clone()).await,
            user_app(default.clone()).await,
        );
        let _: ClerkUserRecord = short
            .sync_user(&user_data("user_fb", 5, Some("Kept")))
            .await
            .unwrap();
        short.invalidate_user::<ClerkUserRecord>("user_fb").await;
        // Not a recent sync: a handle missing the user asks Clerk first.
        db.age_rows(&aging).await;
        let token = mock.token().subject("user_fb").build();

        mock.set_fault(Endpoint::User, Fault::Status(503));
        // The short handle last: its window starts when its (retried) load ends.
        for app in [&default_app, &short_app] {
            let (status, _, body) = get_user(app, &token).await;
            assert_eq!(status, StatusCode::OK, "{backend:?}: {body}");
            assert_eq!(body["source"], "database");
        }
        let calls = mock.requests(Endpoint::User);
        assert_eq!(
            calls, 6,
            "{backend:?}: each handle tried Clerk (3 attempts)"
        );

        // Clerk is back; inside the window both answer from the cache, without asking it.
        mock.clear_faults();
        for app in [&short_app, &default_app] {
            assert_eq!(get_user(app, &token).await.0, StatusCode::OK);
        }
        assert_eq!(mock.requests(Endpoint::User), calls, "{backend:?}");

        // Past the short window: that handle asks Clerk again; the default one still waits.
        actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
        let (status, _, body) = get_user(&short_app, &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["source"], "api", "{backend:?}");
        assert_eq!(mock.requests(Endpoint::User), calls + 1);
        assert_eq!(get_user(&default_app, &token).await.0, StatusCode::OK);
        assert_eq!(
            mock.requests(Endpoint::User),
            calls + 1,
            "{backend:?}: the default window is longer than 2.5 s"
        );
        db.cleanup().await;
    }
}
