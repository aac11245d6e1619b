//! Shared helpers for the end-to-end tests: a small app wired like a user's, and an event
//! recorder.

use std::sync::{Arc, Mutex};

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
    test, web, App, HttpResponse,
};
use clerk_actix::{
    AuthState, Clerk, ClerkEvent, ClerkMiddleware, ClerkSession, OptionalClerkSession,
};

/// `GET /me`: the session (401 when anonymous).
pub async fn me(session: ClerkSession) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "user_id": session.user_id(),
        "source": session.source().as_str(),
        "carrier": session.carrier(),
    }))
}

/// `GET /public`: who is asking, if anyone.
pub async fn public(session: OptionalClerkSession) -> HttpResponse {
    let who = session
        .as_ref()
        .map_or("anonymous".to_owned(), |s| s.user_id().to_owned());
    HttpResponse::Ok().body(who)
}

/// `GET /state`: the middleware's decision.
pub async fn state(state: AuthState) -> HttpResponse {
    let s = match state {
        AuthState::Anonymous => "anonymous",
        AuthState::Authenticated(_) => "authenticated",
        AuthState::Pending(_) => "pending",
        _ => "other",
    };
    HttpResponse::Ok().body(s)
}

/// The test app: `/me`, `/public`, `/state` behind the middleware (optional or required mode).
pub async fn app(
    clerk: Clerk,
    required: bool,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    let mw = if required {
        ClerkMiddleware::new(clerk.clone()).required()
    } else {
        ClerkMiddleware::new(clerk.clone())
    };
    test::init_service(
        App::new()
            .app_data(web::Data::new(clerk))
            .wrap(mw)
            .route("/me", web::get().to(me))
            .route("/public", web::get().to(public))
            .route(
                "/public",
                web::method(actix_web::http::Method::OPTIONS).to(HttpResponse::NoContent),
            )
            .route("/state", web::get().to(state)),
    )
    .await
}

/// Records every event.
#[derive(Clone, Default, Debug)]
pub struct Recorder(Arc<Mutex<Vec<ClerkEvent>>>);

impl Recorder {
    /// The listener closure to register with `on_event`.
    pub fn listener(&self) -> impl Fn(&ClerkEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |e| {
            events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.clone())
        }
    }

    /// Events so far.
    pub fn take(&self) -> Vec<ClerkEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}
