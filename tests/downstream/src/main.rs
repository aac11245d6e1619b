//! Uses `#[clerk_protected]` and `#[derive(ClerkUser)]` through `clerk_actix` alone.

use clerk_actix::{
    actix_web::{web, App, HttpResponse},
    clerk_protected,
    store::DieselUserStore,
    Clerk, ClerkAuth, ClerkMachine, ClerkMiddleware, ClerkUser, ClerkUserData,
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

// The README's per-handler machine-token example.
#[clerk_protected(accepts_token = ["api_key", "m2m_token"], scope = "read:reports")]
async fn reports(caller: ClerkMachine) -> HttpResponse {
    HttpResponse::Ok().json(caller.into_inner())
}

#[clerk_protected(accepts_token = ["session_token", "oauth_token"], any(role = "org:admin", scope = "admin"))]
async fn people_or_apps(auth: ClerkAuth) -> HttpResponse {
    match auth {
        ClerkAuth::Session(s) => HttpResponse::Ok().body(s.user_id().to_owned()),
        ClerkAuth::Machine(m) => HttpResponse::Ok().body(m.subject().to_owned()),
    }
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
        .route("/write", web::post().to(write))
        .route("/reports", web::get().to(reports))
        .route("/people-or-apps", web::get().to(people_or_apps));
    Ok(())
}
