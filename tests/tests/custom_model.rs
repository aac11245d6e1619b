//! `#[derive(ClerkUser)]` on a model of the application's own, with local-only columns, synced
//! into PostgreSQL and SQLite through `DieselUserStore<AppUser>` and `ClerkUser<AppUser>`.

#![allow(clippy::unwrap_used)]

use actix_web::{test, web, App, HttpResponse};
use clerk_actix::{
    store::{DbPool, DieselUserStore},
    testing::{mock_user_json, Endpoint, MockClerk},
    ClerkMiddleware, ClerkUser, ClerkUserData, DeletedUserPolicy, UserStore,
};
use clerk_actix_tests::{
    bearer,
    db::{Backend, TestDb, BACKENDS},
};
use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use serde_json::json;

diesel::table! {
    app_users (id) {
        id -> BigInt,
        clerk_id -> Text,
        email_address -> Nullable<Text>,
        display_name -> Text,
        plan -> Text,
        active -> Bool,
        clerk_updated_at -> BigInt,
        meta -> Nullable<Text>,
    }
}

/// Computed field: "First Last" or the username.
fn display_name(u: &ClerkUserData) -> String {
    match (&u.first_name, &u.last_name) {
        (Some(f), Some(l)) => format!("{f} {l}"),
        _ => u.username.clone().unwrap_or_default(),
    }
}

#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, clerk_actix::ClerkUser, serde::Serialize,
)]
#[diesel(table_name = app_users)]
struct AppUser {
    id: i64,
    #[clerk(id)]
    clerk_id: String,
    #[clerk(email)]
    #[diesel(column_name = email_address)]
    email: Option<String>,
    #[clerk(with = display_name)]
    display_name: String,
    /// Local only: the database default on insert, untouched on update.
    plan: String,
    #[clerk(is_active)]
    active: bool,
    #[clerk(updated_at)]
    clerk_updated_at: i64,
    #[clerk(public_metadata)]
    meta: Option<String>,
}

const PG_TABLE: &str = "CREATE TABLE app_users (
    id BIGSERIAL PRIMARY KEY, clerk_id TEXT NOT NULL UNIQUE, email_address TEXT,
    display_name TEXT NOT NULL, plan TEXT NOT NULL DEFAULT 'free', active BOOLEAN NOT NULL,
    clerk_updated_at BIGINT NOT NULL, meta TEXT)";
const SQLITE_TABLE: &str = "CREATE TABLE app_users (
    id INTEGER PRIMARY KEY AUTOINCREMENT, clerk_id TEXT NOT NULL UNIQUE, email_address TEXT,
    display_name TEXT NOT NULL, plan TEXT NOT NULL DEFAULT 'free', active BOOLEAN NOT NULL,
    clerk_updated_at BIGINT NOT NULL, meta TEXT)";

async fn custom_store(db: &TestDb) -> DieselUserStore<AppUser> {
    let store: DieselUserStore<AppUser> = DieselUserStore::connect(&db.url).await.unwrap();
    sql(
        &store,
        match db.backend {
            Backend::Postgres => PG_TABLE,
            Backend::Sqlite => SQLITE_TABLE,
        },
    )
    .await;
    store
}

async fn sql(store: &DieselUserStore<AppUser>, statement: &str) {
    match store.pool() {
        DbPool::Postgres(p) => p
            .get()
            .await
            .unwrap()
            .batch_execute(statement)
            .await
            .unwrap(),
        DbPool::Sqlite(p) => p
            .get()
            .await
            .unwrap()
            .batch_execute(statement)
            .await
            .unwrap(),
        _ => unreachable!(),
    }
}

async fn plan_of(store: &DieselUserStore<AppUser>, id: &str) -> String {
    let q = app_users::table
        .filter(app_users::clerk_id.eq(id.to_owned()))
        .select(app_users::plan);
    match store.pool() {
        DbPool::Postgres(p) => q
            .first::<String>(&mut p.get().await.unwrap())
            .await
            .unwrap(),
        DbPool::Sqlite(p) => q
            .first::<String>(&mut p.get().await.unwrap())
            .await
            .unwrap(),
        _ => unreachable!(),
    }
}

fn data(id: &str, updated_at: i64, first: &str) -> ClerkUserData {
    let mut v = mock_user_json(id);
    v["updated_at"] = json!(updated_at);
    v["first_name"] = json!(first);
    v["public_metadata"] = json!({"tier": 1});
    serde_json::from_value(v).unwrap()
}

#[actix_web::test]
async fn a_custom_model_syncs_and_keeps_its_local_columns() {
    for backend in BACKENDS {
        let (db, _) = TestDb::new(backend).await;
        let store = custom_store(&db).await;

        let first = store
            .upsert(&data("user_custom", 1_000, "Ada"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            first.email.as_deref(),
            Some("custom@example.com"),
            "{backend:?}"
        );
        assert_eq!(first.display_name, "Ada User custom");
        assert_eq!(first.plan, "free", "database default on insert");
        assert!(first.active);
        assert_eq!(first.meta.as_deref(), Some(r#"{"tier":1}"#));

        // The application changes its local column...
        sql(
            &store,
            "UPDATE app_users SET plan = 'pro' WHERE clerk_id = 'user_custom'",
        )
        .await;
        // ... and a newer update from Clerk leaves it alone.
        let second = store
            .upsert(&data("user_custom", 2_000, "Grace"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.display_name, "Grace User custom");
        assert_eq!(
            second.plan, "pro",
            "{backend:?}: local-only column preserved"
        );
        assert_eq!(plan_of(&store, "user_custom").await, "pro");
        assert_eq!(second.id, first.id);

        // Stale updates are ignored; deactivate and delete work on the custom table.
        let stale = store
            .upsert(&data("user_custom", 1_500, "Stale"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stale.display_name, "Grace User custom");
        // Deleted with the Deactivate policy: the row stays, inactive, with Clerk's own
        // `updated_at` (not the local clock); a later update is refused.
        assert!(store
            .mark_deleted("user_custom", 2_500, DeletedUserPolicy::Deactivate)
            .await
            .unwrap());
        let deactivated = store.find("user_custom").await.unwrap().unwrap();
        assert!(!deactivated.active);
        assert_eq!(deactivated.clerk_updated_at, 2_000);
        assert!(store
            .upsert(&data("user_custom", 3_000, "Back"))
            .await
            .unwrap()
            .is_none());
        assert!(!store.find("user_custom").await.unwrap().unwrap().active);
        db.cleanup().await;
    }
}

async fn me(user: ClerkUser<AppUser>) -> HttpResponse {
    HttpResponse::Ok().json(&*user)
}

#[actix_web::test]
async fn clerk_user_extractor_serves_the_custom_model() {
    for backend in BACKENDS {
        let (db, _) = TestDb::new(backend).await;
        let store = custom_store(&db).await;
        let mock = MockClerk::start();
        let clerk = mock.clerk_builder().user_store(store).build().unwrap();
        let app = test::init_service(
            App::new()
                .wrap(ClerkMiddleware::new(clerk))
                .route("/me", web::get().to(me)),
        )
        .await;
        let token = mock.token().subject("user_ext").build();
        for _ in 0..3 {
            let req = test::TestRequest::get()
                .uri("/me")
                .insert_header(bearer(&token))
                .to_request();
            let body: serde_json::Value = test::call_and_read_body_json(&app, req).await;
            assert_eq!(body["clerk_id"], "user_ext", "{backend:?}");
            assert_eq!(body["plan"], "free");
            assert_eq!(body["email"], "ext@example.com");
        }
        assert_eq!(mock.requests(Endpoint::User), 1);
        db.cleanup().await;
    }
}
