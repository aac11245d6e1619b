//! A server-rendered app in the middleware's handshake mode over real HTTP on 127.0.0.1, with
//! its `MockClerk` (Frontend API and Backend API): the handshake's flow tests
//! (`tests/tests/handshake.rs`, with the browser simulator) and browser tests
//! (`examples/tests/chromium.rs`, with Chromium) drive the same app.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is the test's failure

use std::net::TcpListener;

use actix_web::{web, App, HttpResponse, HttpServer};
use clerk_actix::{testing::MockClerk, AuthState, ClerkEvent, ClerkMiddleware};

use crate::{browser::Browser, Recorder};

/// `GET /` and `POST /`: who the page is rendered for.
pub async fn page(state: AuthState) -> HttpResponse {
    let body = match &state {
        AuthState::Authenticated(s) => format!("<p id=\"auth\">signed in as {}</p>", s.user_id()),
        AuthState::SignedOut(err) => format!("<p id=\"auth\">signed out: {}</p>", err.reason()),
        _ => "<p id=\"auth\">signed out</p>".to_owned(),
    };
    // No favicon request of the browser's own: every request a test sees is one it made.
    HttpResponse::Ok()
        .content_type("text/html")
        .body(format!("<link rel=\"icon\" href=\"data:,\">{body}"))
}

/// `GET /api/me`: an API route under the same middleware.
pub async fn api_me(session: clerk_actix::ClerkSession) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"user_id": session.user_id()}))
}

/// The app, its `MockClerk` and the events its `Clerk` emitted.
#[derive(Debug)]
pub struct Setup {
    /// The mock Clerk (Frontend API and Backend API).
    pub mock: MockClerk,
    /// The app's origin, `http://127.0.0.1:<port>`.
    pub app: String,
    /// Every event of the app's `Clerk`.
    pub events: Recorder,
}

/// Starts the mock (a development instance if `development`) and the app: `GET /` and `POST /`
/// render [`page`], `GET /api/me` is [`api_me`], under `ClerkMiddleware::handshake()` with the
/// app's origin as the authorized party.
pub fn start(development: bool) -> Setup {
    let mock = MockClerk::start();
    mock.set_development(development);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = format!("http://{}", listener.local_addr().unwrap());
    let events = Recorder::default();
    let clerk = mock
        .clerk_builder()
        .authorized_parties([app.clone()])
        .on_event(events.listener())
        .build()
        .unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(ClerkMiddleware::new(clerk.clone()).handshake())
            .route("/", web::get().to(page))
            .route("/", web::post().to(page))
            .route("/api/me", web::get().to(api_me))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    Setup { mock, app, events }
}

impl Setup {
    /// `<app>/`.
    pub fn home(&self) -> String {
        format!("{}/", self.app)
    }

    /// Signs the browser in at the mock Frontend API and lands on the app's home page.
    pub async fn sign_in(&self, browser: &mut Browser) -> crate::browser::Page {
        browser
            .navigate(&self.mock.sign_in_url("user_1", &self.home()))
            .await
    }

    /// The handshake events since the last call: `redirect:<reason>`,
    /// `resolved:<outcome>`, `stopped:<reason>`.
    pub fn handshakes(&self) -> Vec<String> {
        self.events
            .take()
            .into_iter()
            .filter_map(|e| match e {
                ClerkEvent::HandshakeRedirected { reason } => Some(format!("redirect:{reason}")),
                ClerkEvent::HandshakeResolved { outcome } => {
                    Some(format!("resolved:{}", outcome.as_str()))
                }
                ClerkEvent::HandshakeLoopStopped { reason } => Some(format!("stopped:{reason}")),
                _ => None,
            })
            .collect()
    }
}

/// A client of its own, sending from `ip` (another loopback address than the browser's, so
/// per-client budgets see another client).
pub fn client_from(ip: &str) -> awc::Client {
    awc::Client::builder()
        .local_address(ip.parse().expect("a loopback address"))
        .timeout(std::time::Duration::from_secs(10))
        .finish()
}

/// `len` random alphanumeric characters: a made-up nonce or token.
pub fn made_up(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}

/// The `i`-th request of a flood of made-up nonces at `home`: half in the query, half in the
/// nonce cookie; half document `GET`s, half `fetch`es.
pub fn made_up_nonce_request(client: &awc::Client, home: &str, i: usize) -> awc::ClientRequest {
    let nonce = made_up(32);
    let req = if i.is_multiple_of(2) {
        client.get(format!("{home}?__clerk_handshake_nonce={nonce}"))
    } else {
        client
            .get(home)
            .insert_header(("cookie", format!("__clerk_handshake_nonce={nonce}")))
    };
    if i % 4 < 2 {
        req.insert_header(("sec-fetch-dest", "document"))
            .insert_header(("accept", "text/html"))
    } else {
        req.insert_header(("sec-fetch-dest", "empty"))
            .insert_header(("accept", "*/*"))
    }
}
