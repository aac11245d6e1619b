//! The webhook endpoint as an actix resource: the adapter between an HTTP delivery and
//! [`Clerk::apply_webhook`].

use std::time::SystemTime;

use actix_web::{http::header::HeaderMap, web, HttpRequest, HttpResponse};

use crate::mirror::webhooks::{WebhookError, WebhookEvent, WebhookVerifier};
use crate::{
    actix::extract::clerk_of,
    base::events::{ClerkEvent, LogBudget},
    base::telemetry,
    config::Clerk,
    mirror::sync::{SyncError, SyncedUser},
};

impl WebhookVerifier {
    /// Verifies a delivery at time `now` from an actix request's headers (see
    /// [`verify_parts`](Self::verify_parts)). Accepts the Standard Webhooks names
    /// (`webhook-id`, ...) when the `svix-*` ones are absent.
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<WebhookEvent, WebhookError> {
        self.verify_parts(
            header(headers, "svix-id", "webhook-id"),
            header(headers, "svix-timestamp", "webhook-timestamp"),
            header(headers, "svix-signature", "webhook-signature"),
            body,
            now,
        )
    }
}

fn header<'h>(headers: &'h HeaderMap, svix: &str, standard: &str) -> Option<&'h str> {
    headers
        .get(svix)
        .or_else(|| headers.get(standard))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The webhook endpoint as an actix resource: `POST` only, body up to 1 MiB, users of type `U`
/// kept in the store registered for `U`. The [`Clerk`] handle is the one
/// [`ClerkMiddleware`](crate::ClerkMiddleware) serves the request with (optional mode: Svix sends
/// no token), else a `web::Data<Clerk>`; [`resource_for`] carries its own.
///
/// Answers: 200 `{"status": "applied" | "duplicate" | "ignored"}`; 400
/// `{"error": "invalid_webhook", "reason": ...}` for a bad signature or body (nothing written);
/// 503 when the store fails (so Svix retries); 500 when unconfigured (the fix in debug builds).
pub fn resource<U: SyncedUser>(path: &str) -> actix_web::Resource {
    web::resource(path)
        .app_data(web::PayloadConfig::new(1 << 20))
        .route(web::post().to(handle::<U>))
}

/// [`resource`] bound to this handle: for an app whose middleware does not wrap the endpoint.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # fn demo(clerk: clerk_actix::Clerk) {
/// use actix_web::{web, App};
/// use clerk_actix::{store::ClerkUserRecord, webhooks, ClerkMiddleware};
/// App::new()
///     .service(webhooks::resource_for::<ClerkUserRecord>(&clerk, "/webhooks/clerk"))
///     .service(web::scope("/api").wrap(ClerkMiddleware::new(clerk.clone()).required()));
/// # }
/// ```
pub fn resource_for<U: SyncedUser>(clerk: &Clerk, path: &str) -> actix_web::Resource {
    resource::<U>(path).app_data(web::Data::new(clerk.clone()))
}

/// A 500 for a server set up wrongly: the reason code, and the fix only where the handle
/// allows details (debug builds by default); the fix is logged either way.
fn misconfigured(clerk: Option<&Clerk>, reason: &'static str, fix: &'static str) -> HttpResponse {
    match clerk {
        Some(clerk) => clerk.events().log_server_error(reason, fix),
        None => {
            // No handle, so no budget of its own: one for every such endpoint.
            static LOGS: LogBudget = LogBudget::new();
            if let Some(suppressed) = LOGS.admit_now() {
                tracing::error!(
                    target: crate::base::events::TRACING_TARGET,
                    reason,
                    fix,
                    suppressed,
                    "clerk webhook endpoint misconfigured"
                );
            }
        }
    }
    let mut body = serde_json::json!({"error": "server_misconfigured", "reason": reason});
    if clerk.map_or(cfg!(debug_assertions), Clerk::exposes_error_details) {
        body["fix"] = serde_json::Value::from(fix);
    }
    HttpResponse::InternalServerError().json(body)
}

async fn handle<U: SyncedUser>(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(clerk) = clerk_of(&req) else {
        return misconfigured(
            None,
            "clerk-missing",
            "wrap the app with ClerkMiddleware::new(clerk), or use webhooks::resource_for(&clerk, path)",
        );
    };
    let clerk = &clerk;
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
            telemetry::webhook("rejected");
            clerk.emit(ClerkEvent::WebhookRejected {
                reason: err.reason(),
            });
            return HttpResponse::BadRequest().json(serde_json::json!({
                "error": "invalid_webhook", "reason": err.reason(),
            }));
        }
    };
    clerk.emit(ClerkEvent::WebhookReceived {
        svix_id: event.svix_id().to_owned(),
        event_type: event.event_type().to_owned(),
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
