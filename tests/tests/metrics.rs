//! Metrics (feature `metrics`) read back from the Prometheus exporter: each counter moves by the
//! right amount for a good token (verified, then cached), a bad one, a new user, webhooks. One
//! test in its own binary: the recorder is process-wide.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;

use actix_web::{web, App, HttpResponse, HttpServer};
use clerk_actix::{
    store::ClerkUserRecord,
    testing::{unix_now, MockClerk},
    webhooks, ClerkMiddleware, ClerkSession, ClerkUser,
};
use clerk_actix_tests::{
    db::{Backend, TestDb},
    http::{get, user_json},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

const BUCKETS: &[f64] = &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The value of one sample line (`name{labels} value`), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

#[actix_web::test]
async fn counters_move_by_the_right_amount() {
    // Histograms as buckets, as the quickstart and the Grafana dashboard use them.
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix("clerk_".into()), BUCKETS)
        .unwrap()
        .install_recorder()
        .unwrap();
    let (db, store) = TestDb::new(Backend::Sqlite).await;
    let mock = MockClerk::start();
    let clerk = mock.clerk_builder().user_store(store).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(ClerkMiddleware::new(clerk.clone()))
            .service(webhooks::resource::<ClerkUserRecord>("/webhooks/clerk"))
            .route(
                "/me",
                web::get().to(|s: ClerkSession| async move {
                    HttpResponse::Ok().body(s.user_id().to_owned())
                }),
            )
            .route(
                "/me/user",
                web::get().to(|u: ClerkUser<ClerkUserRecord>| async move {
                    HttpResponse::Ok().body(u.clerk_user_id.clone())
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);

    // A good token twice: verified, then from the cache. Its user: from the API, then cached.
    let good = mock.token().subject("user_metrics").build();
    assert_eq!(get(&base, "/me", &good).await.0, 200);
    assert_eq!(get(&base, "/me/user", &good).await.0, 200);
    assert_eq!(get(&base, "/me/user", &good).await.0, 200);
    // Bad tokens with known reasons.
    let expired = mock.token().expires_at(unix_now() - 60).build();
    assert_eq!(get(&base, "/me", &expired).await.0, 401);
    assert_eq!(get(&base, "/me", "not.a.jwt").await.0, 401);
    // Webhooks: applied, then the same delivery again.
    let hook = format!("{base}/webhooks/clerk");
    let delivery = mock.webhook(
        "user.updated",
        user_json("user_metrics", i64::MAX / 2, "Ada"),
    );
    assert_eq!(delivery.send(&hook).await.unwrap().1["status"], "applied");
    assert_eq!(delivery.send(&hook).await.unwrap().1["status"], "duplicate");

    let text = recorder.render();
    let count = |series: &str| sample(&text, series);
    assert_eq!(
        count(r#"clerk_auth_success_total{source="verified"}"#),
        1.0,
        "{text}"
    );
    // /me/user twice (each a cached token) after /me.
    assert_eq!(count(r#"clerk_auth_success_total{source="cache"}"#), 2.0);
    assert_eq!(
        count(r#"clerk_auth_failure_total{reason="token-expired"}"#),
        1.0
    );
    assert_eq!(
        count(r#"clerk_auth_failure_total{reason="token-invalid"}"#),
        1.0
    );
    // Misses: the good token, the expired one and the malformed one (each decoded once).
    assert_eq!(count("clerk_token_cache_misses_total"), 3.0);
    assert_eq!(count("clerk_token_verify_seconds_count"), 3.0);
    assert_eq!(count(r#"clerk_user_sync_total{source="api"}"#), 1.0);
    assert_eq!(count(r#"clerk_user_sync_total{source="cache"}"#), 1.0);
    assert_eq!(
        count(r#"clerk_backend_api_requests_total{endpoint="users",status="2xx"}"#),
        1.0
    );
    assert_eq!(
        count(r#"clerk_backend_api_requests_total{endpoint="jwks",status="2xx"}"#),
        1.0
    );
    assert_eq!(count(r#"clerk_jwks_refresh_total{result="ok"}"#), 1.0);
    assert_eq!(count(r#"clerk_webhooks_total{outcome="applied"}"#), 1.0);
    assert_eq!(count(r#"clerk_webhooks_total{outcome="duplicate"}"#), 1.0);
    assert!(count("clerk_jwks_last_refresh_timestamp_seconds") > 1.7e9);
    // Only the good token is cached (refused tokens never are).
    assert_eq!(count("clerk_token_cache_entries"), 1.0);
    assert_eq!(count("clerk_token_verify_seconds_bucket{le=\"+Inf\"}"), 3.0);

    // Every series the Grafana dashboard in examples/ queries exists.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/grafana-dashboard.json"
    ))
    .unwrap();
    let mut names: Vec<&str> = dashboard
        .match_indices("clerk_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| name.len() > "clerk_".len() && *name != "clerk_actix")
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "the dashboard queries {name}, which is never recorded"
        );
    }
    // No user id or token in any label.
    assert!(!text.contains("user_metrics") && !text.contains(&good));
    db.cleanup().await;
}
