//! Several replicas on one PostgreSQL database (issue 10): each replica is a `Clerk` handle
//! with its own pools and its own `LISTEN` connection, served over HTTP, as separate processes
//! would be. They share one MockClerk.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore, FEED_APPLICATION_NAME},
    testing::{Endpoint, MockClerk, WebhookDelivery},
    ClerkEvent,
};
use clerk_actix_tests::{
    db::{Backend, TestDb},
    http::{get, user_json},
    replica::{within, Replica},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// The reason a banned or deleted user's token is refused with: a 401 for another reason (an
/// expired token, a bad signature) must not pass for a revocation.
const INACTIVE: &str = "user-inactive";

fn deleted(mock: &MockClerk, id: &str) -> WebhookDelivery {
    mock.webhook(
        "user.deleted",
        json!({"object": "user", "id": id, "deleted": true}),
    )
}

async fn send(delivery: &WebhookDelivery, hook: &str) -> String {
    let (status, body) = delivery.send(hook).await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["status"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn three_replicas_share_sign_in_deletion_replays_and_restarts() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let mock = MockClerk::start();
    let replicas = [
        Replica::start(&mock, &db.url).await,
        Replica::start(&mock, &db.url).await,
        Replica::start(&mock, &db.url).await,
    ];
    let [a, b, c] = &replicas;
    let id = "user_everywhere";
    mock.set_user(user_json(id, 1_000, "Ada"));
    let token = mock.token().subject(id).build();

    // A new user signing in on each replica in turn: one Backend API call, then the row.
    let mut sources = Vec::new();
    for r in &replicas {
        let (status, body) = get(&r.base, "/api/me/user", &token).await;
        assert_eq!(status, 200, "{body}");
        sources.push(body["source"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        mock.requests(Endpoint::User),
        1,
        "one Backend API call in all"
    );
    assert_eq!(sources, ["api", "database", "database"]);

    // Deleted through replica A: B and C refuse the user's token on every route within 1 s,
    // also on routes that only check the session (no user load, no SQL).
    let deletion = deleted(&mock, id);
    assert_eq!(send(&deletion, &a.hook()).await, "applied");
    for r in [b, c] {
        within(
            Duration::from_secs(1),
            "refused on another replica",
            || async { r.answer("/api/me", &token).await == (401, INACTIVE.to_owned()) },
        )
        .await;
        assert_eq!(
            r.answer("/api/me/user", &token).await,
            (401, INACTIVE.to_owned())
        );
    }

    // The same delivery replayed on the other replicas: a duplicate, whoever gets it.
    assert_eq!(send(&deletion, &b.hook()).await, "duplicate");
    assert_eq!(send(&deletion, &c.hook()).await, "duplicate");
    // A late update (a delivery of its own) on a third replica does not revive the user.
    let late = mock.webhook("user.updated", user_json(id, 9_999_999_999_999, "Zombie"));
    assert_eq!(send(&late, &c.hook()).await, "ignored");
    for r in &replicas {
        assert_eq!(
            r.answer("/api/me", &token).await,
            (401, INACTIVE.to_owned())
        );
    }

    // A restarted replica (nothing in memory) still refuses the token, on the session-only
    // route too: it loaded the revocation before serving.
    let restarted = Replica::start(&mock, &db.url).await;
    assert_eq!(
        restarted.answer("/api/me", &token).await,
        (401, INACTIVE.to_owned())
    );
    assert_eq!(
        restarted.answer("/api/me/user", &token).await,
        (401, INACTIVE.to_owned())
    );
    drop(replicas);
    drop(restarted);
    db.cleanup().await;
}

#[actix_web::test]
async fn a_ban_on_one_replica_refuses_tokens_on_the_others_and_an_unban_lifts_it() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let mock = MockClerk::start();
    let a = Replica::start(&mock, &db.url).await;
    let b = Replica::start(&mock, &db.url).await;
    let id = "user_banned_then_not";
    let token = mock.token().subject(id).build();
    let created = mock.webhook("user.created", user_json(id, 1_000, "Ada"));
    assert_eq!(send(&created, &a.hook()).await, "applied");
    assert_eq!(b.status("/api/me/user", &token).await, 200);

    let mut banned = user_json(id, 2_000, "Ada");
    banned["banned"] = json!(true);
    assert_eq!(
        send(&mock.webhook("user.updated", banned), &a.hook()).await,
        "applied"
    );
    within(Duration::from_secs(1), "ban reaches B", || async {
        b.answer("/api/me", &token).await == (401, INACTIVE.to_owned())
    })
    .await;
    assert_eq!(
        b.answer("/api/me/user", &token).await,
        (401, INACTIVE.to_owned())
    );

    // Unbanned through B: A admits the token again.
    assert_eq!(
        send(
            &mock.webhook("user.updated", user_json(id, 3_000, "Ada")),
            &b.hook()
        )
        .await,
        "applied"
    );
    within(Duration::from_secs(1), "unban reaches A", || async {
        a.status("/api/me", &token).await == 200
    })
    .await;
    assert_eq!(a.status("/api/me/user", &token).await, 200);
    drop((a, b));
    db.cleanup().await;
}

#[actix_web::test]
async fn a_ban_replayed_after_the_unban_changes_nothing_on_any_replica() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let mock = MockClerk::start();
    let a = Replica::start(&mock, &db.url).await;
    let b = Replica::start(&mock, &db.url).await;
    let id = "user_ban_replayed";
    let token = mock.token().subject(id).build();
    let created = mock.webhook("user.created", user_json(id, 1_000, "Ada"));
    assert_eq!(send(&created, &a.hook()).await, "applied");
    let mut banned = user_json(id, 2_000, "Ada");
    banned["banned"] = json!(true);
    let ban = mock.webhook("user.updated", banned);
    assert_eq!(send(&ban, &a.hook()).await, "applied");
    within(Duration::from_secs(2), "ban reaches B", || async {
        b.answer("/api/me", &token).await == (401, INACTIVE.to_owned())
    })
    .await;
    let unban = mock.webhook("user.updated", user_json(id, 3_000, "Ada"));
    assert_eq!(send(&unban, &a.hook()).await, "applied");
    within(Duration::from_secs(2), "unban reaches B", || async {
        b.status("/api/me", &token).await == 200
    })
    .await;

    // Svix retries the ban, and someone replays it from the dashboard to the other replica.
    assert_eq!(send(&ban, &a.hook()).await, "duplicate");
    assert_eq!(send(&ban, &b.hook()).await, "duplicate");
    for r in [&a, &b] {
        assert_eq!(r.answer("/api/me", &token).await, (200, String::new()));
        assert_eq!(r.answer("/api/me/user", &token).await, (200, String::new()));
    }
    drop((a, b));
    db.cleanup().await;
}

#[actix_web::test]
async fn changes_commit_in_seq_order_behind_the_change_logs_lock() {
    // Replicas read the log "after the last seq applied": that misses nothing only if a change
    // with a lower seq can never commit after one with a higher seq. Writers take the log's
    // lock (advisory lock 1131179883, 2 — the store's) before their row gets its seq and hold
    // it to their commit. Held here by a transaction of the test's, a webhook's write waits.
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let mock = MockClerk::start();
    let a = Replica::start(&mock, &db.url).await;
    let mut holder = AsyncPgConnection::establish(&db.url).await.unwrap();
    diesel::sql_query("BEGIN")
        .execute(&mut holder)
        .await
        .unwrap();
    diesel::sql_query("SELECT pg_advisory_xact_lock(1131179883, 2)")
        .execute(&mut holder)
        .await
        .unwrap();
    let created = mock.webhook("user.created", user_json("user_in_order", 1_000, "Ada"));
    let hook = a.hook();
    let write = actix_web::rt::spawn(async move { created.send(&hook).await.unwrap() });
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !write.is_finished(),
        "the write did not wait for the log's lock"
    );
    diesel::sql_query("COMMIT")
        .execute(&mut holder)
        .await
        .unwrap();
    let (status, body) = write.await.unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("applied")));
    drop(a);
    db.cleanup().await;
}

/// Terminates every change-feed connection to `db` (as an operator's `pg_terminate_backend`
/// or a network cut would); how many.
async fn kill_feeds(url: &str) -> usize {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Killed {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        #[allow(dead_code)]
        pg_terminate_backend: bool,
    }
    let killed: Vec<Killed> = diesel::sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind::<diesel::sql_types::Text, _>(FEED_APPLICATION_NAME)
    .load(&mut conn)
    .await
    .unwrap();
    killed.len()
}

#[actix_web::test]
async fn a_killed_listen_connection_catches_up_on_every_change_it_missed() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let mock = MockClerk::start();
    let a = Replica::start(&mock, &db.url).await;
    // B's feed connections and disconnections, counted from its events (a disconnection lasts
    // 50-100 ms: polling health() could miss it).
    let ups = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let downs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let b = {
        let (ups, downs) = (ups.clone(), downs.clone());
        Replica::start_with(&mock, &db.url, move |builder| {
            builder.on_event(move |e| match e {
                ClerkEvent::ChangeFeedConnected { .. } => {
                    ups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                ClerkEvent::ChangeFeedDisconnected { .. } => {
                    downs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                _ => {}
            })
        })
        .await
    };
    let count = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
    let ids: Vec<String> = (0..20).map(|i| format!("user_missed_{i}")).collect();
    let tokens: Vec<String> = ids
        .iter()
        .map(|id| mock.token().subject(id).build())
        .collect();
    for (id, token) in ids.iter().zip(&tokens) {
        let created = mock.webhook("user.created", user_json(id, 1_000, "Before"));
        assert_eq!(send(&created, &a.hook()).await, "applied");
        // Cached on B.
        assert_eq!(b.status("/api/me/user", token).await, 200);
    }

    // Every change is made once B has noticed its LISTEN connection was killed, so it lands
    // while B is away (B waits 50-100 ms before reconnecting): B only learns of it by
    // catching up from the change log.
    let mut while_away = 0;
    for (i, id) in ids.iter().enumerate() {
        b.wait_connected(Duration::from_secs(10)).await;
        let before = count(&downs);
        assert!(kill_feeds(&db.url).await >= 1);
        within(Duration::from_secs(5), "B notices", || async {
            count(&downs) > before
        })
        .await;
        let delivery = if i % 4 == 0 {
            deleted(&mock, id)
        } else {
            mock.webhook("user.updated", user_json(id, 2_000, "After"))
        };
        assert_eq!(send(&delivery, &a.hook()).await, "applied");
        // Away if it has not connected again since it noticed (one Connected per connection).
        if count(&ups) <= count(&downs) {
            while_away += 1;
        }
    }
    assert!(while_away > 0, "no change landed while B was away");

    b.wait_connected(Duration::from_secs(10)).await;
    let health = b.clerk.health().await;
    assert!(health.change_feeds[0].disconnects >= 1, "{health:?}");
    for (i, (id, token)) in ids.iter().zip(&tokens).enumerate() {
        if i % 4 == 0 {
            within(Duration::from_secs(5), id, || async {
                b.answer("/api/me", token).await == (401, INACTIVE.to_owned())
            })
            .await;
        } else {
            within(Duration::from_secs(5), id, || async {
                let (status, body) = get(&b.base, "/api/me/user", token).await;
                status == 200 && body["user"]["first_name"] == "After"
            })
            .await;
        }
    }
    drop((a, b));
    db.cleanup().await;
}

#[actix_web::test]
async fn replicas_starting_together_migrate_once_and_all_serve() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    // Drop what the migrations made, so the replicas below race on an empty database.
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    diesel::sql_query(
        "DROP TABLE clerk_users, clerk_user_tombstones, clerk_webhook_deliveries, \
         clerk_user_changes, __diesel_schema_migrations",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mock = MockClerk::start();
    let starts = (0..4).map(|_| async {
        let store: DieselUserStore<ClerkUserRecord> =
            DieselUserStore::connect(&db.url).await.unwrap();
        store.run_migrations().await
    });
    for result in futures_util::future::join_all(starts).await {
        result.unwrap();
    }
    // Once: every embedded migration is recorded exactly once.
    clerk_actix_tests::db::assert_migrated_once(&db.url).await;
    // All: each of four replicas serves a new user.
    let replicas =
        futures_util::future::join_all((0..4).map(|_| Replica::start(&mock, &db.url))).await;
    for (i, r) in replicas.iter().enumerate() {
        let token = mock
            .token()
            .subject(&format!("user_after_race_{i}"))
            .build();
        assert_eq!(r.answer("/api/me/user", &token).await, (200, String::new()));
    }
    drop(replicas);
    db.cleanup().await;
}
