//! `GET /readyz`: the health report ([`Clerk::health`](crate::Clerk::health)) over HTTP.

use actix_web::{http::header, HttpRequest, HttpResponse};

use crate::actix::extract::clerk_of;

/// `GET /readyz`: 200 with the [`Health`](crate::health::Health) report as JSON when tokens can be verified, 503 (with
/// `Retry-After`) when not. Uses the handle of the [`ClerkMiddleware`](crate::ClerkMiddleware)
/// that serves the route (or a `web::Data<Clerk>`); without either, a 500 naming the fix.
pub async fn readyz(req: HttpRequest) -> HttpResponse {
    let Some(clerk) = clerk_of(&req) else {
        return HttpResponse::InternalServerError().json(serde_json::json!({
            "error": "server_misconfigured", "reason": "clerk-missing",
        }));
    };
    let health = clerk.health().await;
    let mut res = if health.ready {
        HttpResponse::Ok()
    } else {
        let mut res = HttpResponse::ServiceUnavailable();
        res.insert_header((header::RETRY_AFTER, "5"));
        res
    };
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    res.json(health)
}
