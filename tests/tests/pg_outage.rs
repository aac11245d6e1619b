//! PostgreSQL unreachable during traffic (issue 10): one replica reaches the database through a
//! proxy the test takes down (every connection cut, new ones refused, as a server restart looks
//! to a client) and brings back; a second replica keeps its own direct connection, as a replica
//! in another zone would. Nothing is restarted by the test: the pools and the change feed must
//! recover by themselves.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore},
    testing::{Endpoint, MockClerk, WebhookDelivery},
    Clerk,
};
use clerk_actix_tests::{
    db::{Backend, TestDb},
    http::{serve, user_json},
    pgproxy::PgProxy,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};

async fn replica(mock: &MockClerk, url: &str) -> (Clerk, String) {
    let store: DieselUserStore<ClerkUserRecord> = DieselUserStore::connect(url).await.unwrap();
    store.run_migrations().await.unwrap();
    let clerk = mock.clerk_builder().user_store(store).build().unwrap();
    let base = serve(clerk.clone());
    until(Duration::from_secs(10), "the change feed connects", || {
        feed_connected(&clerk)
    })
    .await;
    (clerk, base)
}

async fn feed_connected(clerk: &Clerk) -> bool {
    let health = clerk.health().await;
    health.change_feeds[0].connected && health.change_feeds[0].revocations_loaded
}

/// Polls `check` every 20 ms until it holds (or fails the test after `within`).
async fn until<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Status, `Retry-After` and JSON body of a request over HTTP.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn get(base: &str, path: &str, token: &str) -> Answer {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(15))
        .finish();
    let mut res = client
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    answer(&mut res).await
}

async fn post(hook: &str, delivery: &WebhookDelivery) -> Answer {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(15))
        .finish();
    let mut req = client
        .post(hook)
        .insert_header(("content-type", "application/json"));
    for header in delivery.headers() {
        req = req.insert_header(header);
    }
    let mut res = req.send_body(delivery.body.clone()).await.unwrap();
    answer(&mut res).await
}

async fn answer<S>(res: &mut awc::ClientResponse<S>) -> Answer
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let body = res.body().await.unwrap();
    Answer {
        status: res.status().as_u16(),
        retry_after: res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    clerk_user_id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    first_name: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    is_active: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    tombstoned: bool,
}

#[actix_web::test]
async fn database_down_then_back_cached_users_served_new_users_503_everything_recovers() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let proxy = PgProxy::plain().await;
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let mock = MockClerk::start();
    let (a, base_a) = replica(&mock, &proxy.url("127.0.0.1", &name, "sslmode=disable")).await;
    let (_b, base_b) = replica(&mock, &db.url).await;
    let (hook_a, hook_b) = (
        format!("{base_a}/webhooks/clerk"),
        format!("{base_b}/webhooks/clerk"),
    );
    let token = |id: &str| mock.token().subject(id).expires_in(600).build();
    for id in ["user_alice", "user_carol"] {
        mock.set_user(user_json(id, 1_000, "Before"));
        let res = get(&base_a, "/api/me/user", &token(id)).await;
        assert_eq!(res.status, 200, "{id} before the outage: {:?}", res.body);
    }
    mock.set_user(user_json("user_bob", 1_000, "Bob"));
    mock.reset_counters();

    proxy.down();

    // Cached users keep being served, without the database and without Clerk.
    for _ in 0..20 {
        for id in ["user_alice", "user_carol"] {
            let res = get(&base_a, "/api/me/user", &token(id)).await;
            assert_eq!(
                res.status, 200,
                "cached {id} during the outage: {:?}",
                res.body
            );
        }
    }
    // A session-only route needs no user row: a user never seen is served too.
    assert_eq!(
        get(&base_a, "/api/me", &token("user_bob")).await.status,
        200
    );
    // A user never seen needs the database: 503 with Retry-After, never a 401 or a 500.
    let res = get(&base_a, "/api/me/user", &token("user_bob")).await;
    assert_eq!(res.status, 503, "{:?}", res.body);
    assert_eq!(
        res.body["reason"], "user-store-unavailable",
        "{:?}",
        res.body
    );
    assert_eq!(res.retry_after.as_deref(), Some("5"));
    // A webhook cannot be applied: 503 with Retry-After, so that Svix delivers it again.
    let renamed = mock.webhook("user.updated", user_json("user_alice", 2_000, "After"));
    let res = post(&hook_a, &renamed).await;
    assert_eq!(res.status, 503, "{:?}", res.body);
    assert_eq!(res.body["reason"], "user-store-unavailable");
    assert_eq!(res.retry_after.as_deref(), Some("30"));
    // The replica knows and says so.
    until(
        Duration::from_secs(10),
        "the feed reports the outage",
        || async {
            let health = a.health().await;
            let feed = &health.change_feeds[0];
            !feed.connected && feed.disconnects >= 1 && feed.last_error.is_some()
        },
    )
    .await;
    // Meanwhile the other replica, which still reaches the database, gets a deletion.
    let deletion = mock.webhook(
        "user.deleted",
        json!({"object": "user", "id": "user_carol", "deleted": true}),
    );
    let res = post(&hook_b, &deletion).await;
    assert_eq!(
        (res.status, res.body["status"].as_str()),
        (200, Some("applied"))
    );
    assert!(proxy.refused_while_down() >= 1, "the replica kept trying");
    assert_eq!(
        mock.requests(Endpoint::User),
        0,
        "no Backend API call during the outage: nothing could be stored"
    );

    proxy.up();

    // The feed reconnects by itself and catches up on the deletion it missed.
    let took = until(
        Duration::from_secs(15),
        "the deletion reaches replica A",
        || async {
            get(&base_a, "/api/me/user", &token("user_carol"))
                .await
                .status
                == 401
        },
    )
    .await;
    assert!(feed_connected(&a).await);
    // The pool recovers by itself: the new user is synced and served.
    until(
        Duration::from_secs(10),
        "the new user is served",
        || async {
            get(&base_a, "/api/me/user", &token("user_bob"))
                .await
                .status
                == 200
        },
    )
    .await;
    assert_eq!(
        mock.requests(Endpoint::User),
        1,
        "one Backend API call for bob"
    );
    // Svix delivers the webhook again: now it is applied, once, and served.
    let res = post(&hook_a, &renamed).await;
    assert_eq!(
        (res.status, res.body["status"].as_str()),
        (200, Some("applied")),
        "{:?}",
        res.body
    );
    let res = post(&hook_b, &renamed).await;
    assert_eq!(res.body["status"], "duplicate");
    let res = get(&base_a, "/api/me/user", &token("user_alice")).await;
    assert_eq!(res.status, 200);

    // The rows are whole: bob synced, alice renamed, carol deactivated and tombstoned.
    let mut conn = clerk_actix::store::establish_postgres(&db.url)
        .await
        .unwrap();
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT u.clerk_user_id, u.first_name, u.is_active, \
         t.clerk_user_id IS NOT NULL AS tombstoned \
         FROM clerk_users u LEFT JOIN clerk_user_tombstones t USING (clerk_user_id) \
         ORDER BY u.clerk_user_id",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let rows: Vec<(String, Option<String>, bool, bool)> = rows
        .into_iter()
        .map(|r| (r.clerk_user_id, r.first_name, r.is_active, r.tombstoned))
        .collect();
    let row = |id: &str, name: &str, active: bool, tombstoned: bool| {
        (id.to_owned(), Some(name.to_owned()), active, tombstoned)
    };
    assert_eq!(
        rows,
        [
            row("user_alice", "After", true, false),
            row("user_bob", "Bob", true, false),
            row("user_carol", "Before", false, true),
        ],
        "carol's deletion took {took:?}"
    );
    drop(conn);
    db.cleanup().await;
}
