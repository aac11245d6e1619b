//! Your own user model and guarded routes: `cargo run --bin custom_model`.
//!
//! - `#[derive(ClerkUser)]` on `Member`, a diesel model with a local-only column (`karma`)
//!   that Clerk never touches, synced into `custom_model.sqlite` (or `SQLITE_PATH`);
//! - `#[clerk_protected]` routes: `/feed` (any signed-in user), `/admin` (`org:admin`),
//!   `/posts` (`org:posts:write` or the `pro` plan);
//! - a built-in dev Clerk that prints tokens for a member and an admin.

use actix_web::{get, App, HttpResponse, HttpServer, Responder};
use clerk_actix::{
    clerk_protected,
    store::{DbPool, DieselUserStore},
    testing::{unix_now, MockClerk},
    ClerkMiddleware, ClerkUser, ClerkUserData,
};
use diesel_async::SimpleAsyncConnection;

diesel::table! {
    members (id) {
        id -> BigInt,
        clerk_id -> Text,
        email -> Nullable<Text>,
        nickname -> Text,
        karma -> BigInt,
        active -> Bool,
        clerk_updated_at -> BigInt,
    }
}

/// The table; in an application this is a migration of its own.
const CREATE_MEMBERS: &str = "CREATE TABLE IF NOT EXISTS members (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    clerk_id TEXT NOT NULL UNIQUE,
    email TEXT,
    nickname TEXT NOT NULL,
    karma BIGINT NOT NULL DEFAULT 0,
    active BOOLEAN NOT NULL,
    clerk_updated_at BIGINT NOT NULL)";

/// Computed from Clerk's data on every sync.
fn nickname(u: &ClerkUserData) -> String {
    u.username.clone().unwrap_or_else(|| "anonymous".into())
}

#[derive(
    Debug, Clone, diesel::Queryable, diesel::Selectable, serde::Serialize, clerk_actix::ClerkUser,
)]
#[diesel(table_name = members)]
struct Member {
    id: i64,
    #[clerk(id)]
    clerk_id: String,
    #[clerk(email)]
    email: Option<String>,
    #[clerk(with = nickname)]
    nickname: String,
    /// Local only: 0 on insert (the column default), never overwritten by a sync.
    karma: i64,
    #[clerk(is_active)]
    active: bool,
    #[clerk(updated_at)]
    clerk_updated_at: i64,
}

#[get("/feed")]
#[clerk_protected]
async fn feed(member: ClerkUser<Member>) -> impl Responder {
    HttpResponse::Ok().json(&*member)
}

#[get("/admin")]
#[clerk_protected(role = "org:admin")]
async fn admin() -> &'static str {
    "welcome, admin\n"
}

#[get("/posts")]
#[clerk_protected(any(permission = "org:posts:write", plan = "pro"))]
async fn posts() -> HttpResponse {
    HttpResponse::Ok().body("you may write posts\n")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8081);
    let path = std::env::var("SQLITE_PATH")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "custom_model.sqlite".into());

    let store: DieselUserStore<Member> =
        DieselUserStore::connect(&path).await.map_err(|e| err(&e))?;
    if let DbPool::Sqlite(pool) = store.pool() {
        let mut conn = pool.get().await.map_err(|e| err(&e))?;
        conn.batch_execute(CREATE_MEMBERS)
            .await
            .map_err(|e| err(&e))?;
    }

    let mock = MockClerk::try_start()?;
    let clerk = mock
        .clerk_builder()
        .user_store(store)
        .build()
        .map_err(|e| err(&e))?;
    let later = unix_now() + 3600;
    let member = mock
        .token()
        .subject("user_member")
        .expires_at(later)
        .build();
    let admin_token = mock
        .token()
        .subject("user_admin")
        .org_v1("org_1", "org:admin", "acme", &["org:posts:write"])
        .expires_at(later)
        .build();

    let base = format!("http://127.0.0.1:{port}");
    println!(
        "custom_model example on {base} (users in {path}, dev Clerk at {})",
        mock.url()
    );
    println!("  curl -i {base}/feed  -H 'Authorization: Bearer {member}'");
    println!("  curl -i {base}/admin -H 'Authorization: Bearer {member}'   # 403");
    println!("  curl -i {base}/admin -H 'Authorization: Bearer {admin_token}'");
    println!("  curl -i {base}/posts -H 'Authorization: Bearer {admin_token}'");

    HttpServer::new(move || {
        App::new()
            .wrap(ClerkMiddleware::new(clerk.clone()))
            .service(feed)
            .service(admin)
            .service(posts)
    })
    .workers(1)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
