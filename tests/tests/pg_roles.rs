//! PostgreSQL as managed services run it (issue 27): an application role with only
//! `SELECT`/`INSERT`/`UPDATE`/`DELETE` on a database its owner migrated; a role that can only
//! connect, sending notifications in the library's own formats; and a connection that hears no
//! notifications (a transaction-mode pooler's `LISTEN`), simulated by a proxy that drops them.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore, CHANGES_CHANNEL},
    sync::{UserChange, UserChangeKind},
    testing::{Endpoint, MockClerk},
    ClerkEvent,
};
use clerk_actix_tests::{
    db::{admin, Backend, TestDb},
    http::user_json,
    pgproxy::PgProxy,
    replica::{within, Replica},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::json;

/// The test database's name (the last path segment of its URL).
fn db_name(db: &TestDb) -> &str {
    db.url.rsplit('/').next().unwrap()
}

/// A login role of the test's own, dropped (with what was granted to it) at the end.
struct Role {
    name: String,
    db: String,
}

impl Role {
    /// A role that may connect to `db` and nothing more, plus the statements in `grants`
    /// (`{role}` stands for its name), run as the owner in `db`.
    async fn create(db: &TestDb, tag: &str, grants: &[&str]) -> Self {
        let name = format!(
            "clerk_actix_{tag}_{}_{}",
            std::process::id(),
            fastrand::u32(..)
        );
        let mut admin = admin().await;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN; GRANT CONNECT ON DATABASE {} TO {name}",
                db_name(db)
            ))
            .await
            .unwrap();
        let mut owner = AsyncPgConnection::establish(&db.url).await.unwrap();
        for grant in grants {
            owner
                .batch_execute(&grant.replace("{role}", &name))
                .await
                .unwrap();
        }
        Self {
            name,
            db: db_name(db).to_owned(),
        }
    }

    /// The database's URL as this role.
    fn url(&self) -> String {
        format!("postgres://{}@127.0.0.1:5432/{}", self.name, self.db)
    }

    async fn drop_in(self, db: &TestDb) {
        let mut owner = AsyncPgConnection::establish(&db.url).await.unwrap();
        let _ = owner
            .batch_execute(&format!(
                "REASSIGN OWNED BY {0} TO postgres; DROP OWNED BY {0}",
                self.name
            ))
            .await;
        let mut admin = admin().await;
        let _ = admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{0}'; \
                 DROP ROLE IF EXISTS {0}",
                self.name
            ))
            .await;
    }
}

/// What the guide (`replicas` chapter) tells an application role to be granted on a migrated database.
const DML_GRANTS: &[&str] = &[
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
];

#[derive(diesel::QueryableByName)]
struct Allowed {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    allowed: bool,
}

async fn deleted(mock: &MockClerk, id: &str, hook: &str) -> String {
    let delivery = mock.webhook(
        "user.deleted",
        json!({"object": "user", "id": id, "deleted": true}),
    );
    let (status, body) = delivery.send(hook).await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["status"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_dml_only_role_on_a_migrated_database_starts_serves_and_fans_out() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let role = Role::create(&db, "dml", DML_GRANTS).await;
    // The role really may not create anything in the schema (PostgreSQL 15's default).
    let mut as_role = AsyncPgConnection::establish(&role.url()).await.unwrap();
    let create: Allowed = diesel::sql_query(
        "SELECT has_schema_privilege(current_user, 'public', 'CREATE') AS allowed",
    )
    .get_result(&mut as_role)
    .await
    .unwrap();
    assert!(!create.allowed, "the role must not have CREATE on public");
    drop(as_role);

    let mock = MockClerk::start();
    // Two replicas as the role: run_migrations (nothing pending) and the change feed start.
    let a = Replica::start(&mock, &role.url()).await;
    let b = Replica::start(&mock, &role.url()).await;

    // A new user signs in on A: one Backend API call, a row written by the role.
    let id = "user_least_privilege";
    mock.set_user(user_json(id, 1_000, "Ada"));
    let token = mock.token().subject(id).build();
    assert_eq!(a.answer("/api/me/user", &token).await, (200, String::new()));
    assert_eq!(b.answer("/api/me/user", &token).await, (200, String::new()));
    assert_eq!(mock.requests(Endpoint::User), 1);

    // A webhook update through A, applied by the role, reaches B's cache.
    let update = mock.webhook("user.updated", user_json(id, 2_000, "Grace"));
    let (status, body) = update.send(&a.hook()).await.unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("applied")));
    within(Duration::from_secs(2), "the update reaches B", || async {
        let (status, body) = clerk_actix_tests::http::get(&b.base, "/api/me/user", &token).await;
        status == 200 && body["user"]["first_name"] == "Grace"
    })
    .await;

    // A deletion through A: B refuses the token within 2 s, with the deletion's reason.
    assert_eq!(deleted(&mock, id, &a.hook()).await, "applied");
    within(Duration::from_secs(2), "the deletion reaches B", || async {
        b.status("/api/me", &token).await == 401
    })
    .await;
    assert_eq!(b.answer("/api/me", &token).await.0, 401);
    drop((a, b));

    // With a store table missing, the role's start fails with an error naming the table and
    // the migration that creates it.
    let mut owner = AsyncPgConnection::establish(&db.url).await.unwrap();
    owner
        .batch_execute("DROP TABLE clerk_user_changes")
        .await
        .unwrap();
    let store: DieselUserStore<ClerkUserRecord> =
        DieselUserStore::connect(&role.url()).await.unwrap();
    let err = store.run_migrations().await.unwrap_err().to_string();
    assert!(
        err.contains("clerk_user_changes are missing")
            && err.contains("2026-12-07-000000_store_tables")
            && err.contains("permission denied"),
        "{err}"
    );
    // Started without checking, the feed cannot subscribe.
    let clerk = mock.clerk_builder().user_store(store).build().unwrap();
    // The feed cannot start; /readyz names the class, the log the migration.
    assert_eq!(last_feed_error(&clerk).await, Some("missing-table"));
    assert!(!clerk.health().await.ready);
    drop(clerk);
    role.drop_in(&db).await;
    db.cleanup().await;
}

/// The change feed's last error class once it has one.
async fn last_feed_error(clerk: &clerk_actix::Clerk) -> Option<&'static str> {
    for _ in 0..400 {
        let health = clerk.health().await;
        if let Some(class) = health.change_feeds[0].last_error {
            return Some(class);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[actix_web::test]
async fn a_role_that_can_only_connect_cannot_change_what_replicas_do_with_notifications() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let forger = Role::create(&db, "connect", &[]).await;
    let mock = MockClerk::start();
    let a = Replica::start(&mock, &db.url).await;
    let b = Replica::start(&mock, &db.url).await;

    let victim = "user_victim";
    mock.set_user(user_json(victim, 1_000, "Ada"));
    let token = mock.token().subject(victim).build();
    for r in [&a, &b] {
        assert_eq!(r.status("/api/me/user", &token).await, 200);
    }

    // Every payload shape the library has sent, describing a ban and a deletion of the
    // victim, far ahead in the log and at every clock.
    let now = clerk_actix::store::now_ms();
    let mut forged: Vec<String> = Vec::new();
    for seq in [1, 1_000_000] {
        for (kind, active) in [
            (UserChangeKind::Deleted, false),
            (UserChangeKind::Updated, false),
        ] {
            for at in [0, now, now + 86_400_000] {
                forged.push(
                    UserChange {
                        seq,
                        user_id: victim.to_owned(),
                        kind,
                        active,
                        version: at,
                        recorded_at: at,
                    }
                    .to_payload(),
                );
            }
        }
    }
    forged.push(String::new());
    forged.push(format!("probe:{:032x}", 0));
    let mut conn = AsyncPgConnection::establish(&forger.url()).await.unwrap();
    for payload in &forged {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<diesel::sql_types::Text, _>(CHANGES_CHANNEL)
            .bind::<diesel::sql_types::Text, _>(payload)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    // The forger cannot write the log, which is all replicas read.
    let denied = diesel::sql_query(
        "INSERT INTO clerk_user_changes (clerk_user_id, kind, active, version, recorded_at) \
         VALUES ('user_victim', 'deleted', false, 0, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap_err()
    .to_string();
    assert!(denied.contains("permission denied"), "{denied}");

    // A barrier: a real change made after the forgeries reaches both replicas, so each has
    // read the log after every forged wake-up.
    let other = "user_bystander";
    let created = mock.webhook("user.created", user_json(other, 1_000, "Before"));
    assert_eq!(created.send(&a.hook()).await.unwrap().0, 200);
    let other_token = mock.token().subject(other).build();
    for r in [&a, &b] {
        assert_eq!(r.status("/api/me/user", &other_token).await, 200);
    }
    let banned = {
        let mut u = user_json(other, 2_000, "Before");
        u["banned"] = json!(true);
        u
    };
    assert_eq!(
        mock.webhook("user.updated", banned)
            .send(&a.hook())
            .await
            .unwrap()
            .0,
        200
    );
    within(Duration::from_secs(2), "the real ban reaches B", || async {
        b.status("/api/me", &other_token).await == 401
    })
    .await;

    // The victim is served everywhere, on every route.
    for r in [&a, &b] {
        assert_eq!(r.answer("/api/me", &token).await, (200, String::new()));
        assert_eq!(r.answer("/api/me/user", &token).await, (200, String::new()));
    }
    drop((a, b));
    forger.drop_in(&db).await;
    db.cleanup().await;
}

#[actix_web::test]
async fn a_feed_that_hears_no_notifications_polls_the_log_and_says_so() {
    let (db, _store) = TestDb::new(Backend::Postgres).await;
    let deaf = PgProxy::deaf().await;
    let mock = MockClerk::start();
    let polling = Arc::new(Mutex::new(0usize));
    let seen = polling.clone();
    let a = Replica::start(&mock, &db.url).await;
    // B reaches the database through a connection that drops every notification.
    let b = Replica::start_with(
        &mock,
        &deaf.url("127.0.0.1", db_name(&db), "sslmode=disable"),
        |builder| {
            builder.on_event(move |e| {
                if matches!(e, ClerkEvent::ChangeFeedPolling { .. }) {
                    *seen.lock().unwrap() += 1;
                }
            })
        },
    )
    .await;
    within(Duration::from_secs(5), "B notices it is deaf", || async {
        b.clerk.health().await.change_feeds[0].mode == "polling"
    })
    .await;
    assert_eq!(*polling.lock().unwrap(), 1);
    assert_eq!(a.clerk.health().await.change_feeds[0].mode, "listening");
    assert!(deaf.notifications_dropped() >= 1, "B's probe was dropped");

    // A deletion through A is refused on B within 2 s all the same.
    let id = "user_deleted_behind_a_pooler";
    let token = mock.token().subject(id).build();
    let created = mock.webhook("user.created", user_json(id, 1_000, "Ada"));
    assert_eq!(created.send(&a.hook()).await.unwrap().0, 200);
    assert_eq!(b.status("/api/me/user", &token).await, 200);
    assert_eq!(deleted(&mock, id, &a.hook()).await, "applied");
    let took = within(Duration::from_secs(2), "refused on B", || async {
        b.status("/api/me", &token).await == 401
    })
    .await;
    eprintln!("deletion refused on the polling replica after {took:?}");
    drop((a, b));
    db.cleanup().await;
}
