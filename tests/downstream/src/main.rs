//! Uses `#[clerk_protected]` and `#[derive(ClerkUser)]` through `clerk_actix` alone.

use clerk_actix::{
    actix_web::{web, App, HttpResponse},
    clerk_protected,
    store::DieselUserStore,
    Clerk, ClerkMiddleware, ClerkUser, ClerkUserData,
};

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

fn nickname(u: &ClerkUserData) -> String {
    u.username.clone().unwrap_or_else(|| "anon".into())
}

#[derive(diesel::Queryable, diesel::Selectable, Clone, ClerkUser)]
#[diesel(table_name = members)]
pub struct Member {
    pub id: i64,
    #[clerk(id)]
    pub clerk_id: String,
    #[clerk(email)]
    pub email: Option<String>,
    #[clerk(with = nickname)]
    pub nickname: String,
    /// Local only.
    pub karma: i64,
    #[clerk(is_active)]
    pub active: bool,
    #[clerk(updated_at)]
    pub clerk_updated_at: i64,
}

#[clerk_protected(role = "org:admin")]
async fn admin(member: ClerkUser<Member>) -> HttpResponse {
    HttpResponse::Ok().body(format!("{} has {} karma", member.nickname, member.karma))
}

#[clerk_protected(any(permission = "org:posts:write", plan = "pro"))]
async fn write() -> &'static str {
    "written"
}

fn main() {
    let _ = run;
}

#[allow(dead_code)]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let store: DieselUserStore<Member> = DieselUserStore::connect("members.sqlite").await?;
    let clerk = Clerk::from_env()?;
    let clerk = Clerk::builder()
        .secret_key("sk_test_x")
        .user_store(store)
        .build()
        .unwrap_or(clerk);
    let _app = App::new()
        .wrap(ClerkMiddleware::new(clerk))
        .route("/admin", web::get().to(admin))
        .route("/write", web::post().to(write));
    Ok(())
}
