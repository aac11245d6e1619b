use actix_web::{get, web, App, HttpResponse, Responder};
use clerk_actix::{clerk_protected, ClerkSession};

#[get("/a")]
#[clerk_protected]
async fn below_route() -> impl Responder {
    "a"
}

#[clerk_protected(role = "org:admin", permission = "org:invoices:read")]
#[get("/b")]
async fn above_route(session: ClerkSession) -> HttpResponse {
    HttpResponse::Ok().body(session.user_id().to_owned())
}

#[clerk_protected(any(role = "org:admin", all(feature = "o:billing", plan = "user:pro")))]
pub async fn routed(body: web::Json<u32>) -> Result<String, actix_web::Error> {
    Ok(body.to_string())
}

#[clerk_protected(crate = clerk_actix, feature = "dashboard")]
pub(crate) async fn with_crate_path() -> &'static str {
    "ok"
}

// Two identical attributes still get distinct guards.
#[clerk_protected(role = "org:admin")]
#[clerk_protected(role = "org:admin")]
async fn twice() -> &'static str {
    "twice"
}

// Roles and permissions without `org:` (as Clerk's has()), and reverification.
#[clerk_protected(
    role = "admin",
    permission = "invoices:read",
    reverification = "strict"
)]
async fn bare_and_fresh() -> &'static str {
    "fresh"
}

#[clerk_protected(reverification = "second_factor:30")]
async fn custom_reverification() -> &'static str {
    "custom"
}

// Machine tokens, per handler: the guard derefs to the caller.
#[clerk_protected(accepts_token = ["api_key", "m2m_token"], scope = "read:reports")]
async fn machine_reports(caller: clerk_actix::ClerkMachine) -> HttpResponse {
    HttpResponse::Ok().body(caller.subject().to_owned())
}

#[clerk_protected(accepts_token = ["session_token", "oauth_token"], any(role = "org:admin", scope = "admin"))]
async fn people_or_apps(auth: clerk_actix::ClerkAuth) -> HttpResponse {
    match auth {
        clerk_actix::ClerkAuth::Session(s) => HttpResponse::Ok().body(s.user_id().to_owned()),
        clerk_actix::ClerkAuth::Machine(m) => HttpResponse::Ok().body(m.subject().to_owned()),
    }
}

fn main() {
    let _app = App::new()
        .route("/f", web::get().to(bare_and_fresh))
        .route("/g", web::get().to(custom_reverification))
        .service(below_route)
        .service(above_route)
        .route("/c", web::post().to(routed))
        .route("/d", web::get().to(with_crate_path))
        .route("/e", web::get().to(twice))
        .route("/h", web::get().to(machine_reports))
        .route("/i", web::get().to(people_or_apps));
}
