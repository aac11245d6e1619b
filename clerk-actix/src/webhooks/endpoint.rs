//! The webhook endpoint as an actix resource: the adapter between an HTTP delivery and
//! [`Clerk::apply_webhook`].

use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::{
    config::Clerk,
    events::ClerkEvent,
    sync::{SyncError, SyncedUser},
};

/// The webhook endpoint as an actix resource: `POST` only, body up to 1 MiB, the
/// [`Clerk`] handle taken from `web::Data<Clerk>`, users of type `U` kept in the store
/// registered for `U`.
///
/// Answers: 200 `{"status": "applied" | "duplicate" | "ignored"}`; 400
/// `{"error": "invalid_webhook", "reason": ...}` for a bad signature or body (nothing written);
/// 503 when the store fails (so Svix retries); 500 naming the fix when unconfigured.
pub fn resource<U: SyncedUser>(path: &str) -> actix_web::Resource {
    web::resource(path)
        .app_data(web::PayloadConfig::new(1 << 20))
        .route(web::post().to(handle::<U>))
}

/// A 500 for a server set up wrongly: the reason code, and the fix only where the handle
/// allows details (debug builds by default); the fix is logged either way.
fn misconfigured(clerk: Option<&Clerk>, reason: &'static str, fix: &'static str) -> HttpResponse {
    match clerk {
        Some(clerk) => clerk.events().log_server_error(reason, fix),
        None => {
            tracing::error!(target: crate::events::TRACING_TARGET, reason, fix, "clerk webhook endpoint misconfigured")
        }
    }
    let mut body = serde_json::json!({"error": "server_misconfigured", "reason": reason});
    if clerk.map_or(cfg!(debug_assertions), Clerk::exposes_error_details) {
        body["fix"] = serde_json::Value::from(fix);
    }
    HttpResponse::InternalServerError().json(body)
}

async fn handle<U: SyncedUser>(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(clerk) = req.app_data::<web::Data<Clerk>>() else {
        return misconfigured(
            None,
            "clerk-missing",
            "register the Clerk handle with App::app_data(web::Data::new(clerk))",
        );
    };
    let Some(webhooks) = &clerk.inner.webhooks else {
        return misconfigured(
            Some(clerk),
            "webhook-secret-missing",
            "set CLERK_WEBHOOK_SIGNING_SECRET or ClerkBuilder::webhook_signing_secret",
        );
    };
    let event = match webhooks
        .verifier
        .verify_at(req.headers(), &body, SystemTime::now())
    {
        Ok(event) => event,
        Err(err) => {
            clerk.emit(ClerkEvent::WebhookRejected {
                reason: err.reason(),
            });
            return HttpResponse::BadRequest().json(serde_json::json!({
                "error": "invalid_webhook", "reason": err.reason(),
            }));
        }
    };
    clerk.emit(ClerkEvent::WebhookReceived {
        svix_id: event.svix_id.clone(),
        event_type: event.event_type.clone(),
    });
    match clerk.apply_webhook::<U>(&event).await {
        Ok(outcome) => HttpResponse::Ok().json(serde_json::json!({"status": outcome.as_str()})),
        Err(SyncError::NoStore) => misconfigured(
            Some(clerk),
            "user-store-missing",
            "register a user store with ClerkBuilder::user_store(...)",
        ),
        Err(_) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "30"))
            .json(serde_json::json!({
                "error": "temporarily_unavailable", "reason": "user-store-unavailable",
            })),
    }
}
