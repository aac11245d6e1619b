//! The handshake in a real browser (handshake.md §14.6–§14.7): headless Chromium, driven over
//! WebDriver, signs in through the server-rendered example and through a production-keyed app,
//! comes back with an expired `__session` cookie and sees the signed-in page after exactly one
//! handshake; a Frontend API that keeps minting expired tokens stops at the loop guard; the
//! page's `fetch` of an API route is a 401, never a redirect.
//!
//! These need Debian's `chromium` and `chromium-driver`: they are `#[ignore]`d in the README's
//! `cargo test` (a machine without a browser still runs the whole suite), and `.ci/run`
//! installs both packages and runs them with
//! `cargo test -p clerk-actix-examples --test chromium -- --include-ignored`.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use actix_web::{web, App, HttpResponse, HttpServer};
use clerk_actix::{
    testing::{unix_now, Endpoint, FrontendFault, MockClerk},
    AuthState, ClerkEvent, ClerkMiddleware, ClerkSession,
};
use clerk_actix_tests::{
    chromium::Chromium,
    process::{free_port, Server},
    Recorder,
};

/// The example's output, line by line, as it arrives.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    /// How many handshake redirects the example has logged so far.
    fn handshake_redirects(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("clerk handshake redirect"))
            .cloned()
            .collect()
    }
}

#[actix_web::test]
#[ignore = "needs chromium and chromium-driver; .ci/run runs it"]
async fn chromium_signs_in_through_the_ssr_example_and_comes_back_after_the_cookie_expired() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssr"))
        .env("PORT", port.to_string())
        .env_remove("CLERK_SECRET_KEY")
        .env_remove("CLERK_PUBLISHABLE_KEY")
        // The dev Clerk's tokens live 1 s instead of 60 s: expired (past the 5 s skew) 6 s later.
        .env("CLERK_DEV_SESSION_LIFETIME", "1")
        .env("RUST_LOG", "clerk_actix=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let output = Output::default();
    let (tx, rx) = mpsc::channel();
    let lines = output.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("sign in: ") {
                let _ = tx.send(url.to_owned());
            }
            lines.0.lock().unwrap().push(line);
        }
    });
    let sign_in = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the example printed `sign in: <url>`");
    let home = format!("http://127.0.0.1:{port}/");

    let chrome = Chromium::start().await;
    // The printed line: the mock Frontend API signs the browser in, the app's handshake sets up
    // the dev browser and picks the session up, and the development clean-up leaves a clean URL.
    assert_eq!(chrome.goto(&sign_in).await, home);
    assert_eq!(chrome.text("auth").await, "signed in as user_demo");
    let first = chrome
        .cookie("__session")
        .await
        .expect("a __session cookie");
    assert!(
        chrome.cookie("__clerk_db_jwt").await.is_some(),
        "the dev browser is kept in a cookie"
    );
    let names: Vec<String> = chrome.cookies().await.into_iter().map(|c| c.0).collect();
    assert!(
        names.iter().all(|n| !n.contains("handshake")),
        "no handshake cookie is left behind: {names:?}"
    );
    let before = output.handshake_redirects();
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(before[0].contains("dev-browser-missing"), "{before:?}");

    // Come back once the cookie has expired: one handshake, and the page is signed in again
    // with a fresh token.
    actix_web::rt::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(chrome.goto(&home).await, home);
    assert_eq!(chrome.text("auth").await, "signed in as user_demo");
    let fresh = chrome
        .cookie("__session")
        .await
        .expect("a __session cookie");
    assert_ne!(fresh, first, "the handshake set a new session token");
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let after = output.handshake_redirects();
    assert_eq!(after.len(), 2, "exactly one more handshake: {after:?}");
    assert!(after[1].contains("session-token-expired"), "{after:?}");
    chrome.close().await;
}

/// `GET /`: who the page is rendered for.
async fn page(state: AuthState) -> HttpResponse {
    let body = match &state {
        AuthState::Authenticated(s) => format!("<p id=\"auth\">signed in as {}</p>", s.user_id()),
        AuthState::SignedOut(err) => format!("<p id=\"auth\">signed out: {}</p>", err.reason()),
        _ => "<p id=\"auth\">signed out</p>".to_owned(),
    };
    HttpResponse::Ok().content_type("text/html").body(body)
}

/// `GET /api/me`: an API route under the same middleware.
async fn api_me(session: ClerkSession) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"user_id": session.user_id()}))
}

/// A session token for `user_1` that expired a minute ago, and a `__client_uat` older than it
/// (so the reason is the expiry, as for a visitor back after a few minutes).
fn expired_session(mock: &MockClerk, app: &str) -> (String, String) {
    let now = unix_now();
    let token = mock
        .token()
        .subject("user_1")
        .session_id("sess_1")
        .authorized_party(app)
        .issuer(mock.issuer())
        .v2()
        .issued_at(now - 120)
        .expires_at(now - 60)
        .build();
    (token, (now - 600).to_string())
}

fn handshake_events(events: &Recorder) -> Vec<String> {
    events
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

#[actix_web::test]
#[ignore = "needs chromium and chromium-driver; .ci/run runs it"]
async fn chromium_production_keys_expired_cookie_fetch_and_the_loop_guard() {
    let mock = MockClerk::start();
    assert!(!mock.is_development(), "production keys (pk_live_)");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = format!("http://{}", listener.local_addr().unwrap());
    let home = format!("{app}/");
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
            .route("/api/me", web::get().to(api_me))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    let chrome = Chromium::start().await;

    // Sign in at the Frontend API (its `__client` cookie), then the app's one handshake.
    assert_eq!(chrome.goto(&mock.sign_in_url("user_1", &home)).await, home);
    assert_eq!(chrome.text("auth").await, "signed in as user_1");
    assert_eq!(mock.requests(Endpoint::ClientHandshake), 1);
    assert_eq!(mock.requests(Endpoint::HandshakePayload), 1);
    assert_eq!(
        handshake_events(&events),
        [
            "redirect:client-uat-but-no-session-token",
            "resolved:signed-in"
        ]
    );

    // E1: back with an expired cookie → exactly one handshake → signed in, fresh token, no
    // handshake cookie left; a reload costs nothing.
    // The loop counter (`__clerk_redirect_count`, Max-Age=2) counts every handshake of the last
    // 2 s, as Clerk's does: a visitor coming back is not 2 s behind the sign-in.
    let counter_expired = || actix_web::rt::time::sleep(Duration::from_millis(2_100));
    counter_expired().await;
    assert_eq!(chrome.cookie("__clerk_redirect_count").await, None);
    let (expired, uat) = expired_session(&mock, &app);
    chrome.set_cookie("__session", &expired).await;
    chrome.set_cookie("__client_uat", &uat).await;
    mock.reset_counters();
    assert_eq!(chrome.goto(&home).await, home);
    assert_eq!(chrome.text("auth").await, "signed in as user_1");
    assert_eq!(mock.requests(Endpoint::ClientHandshake), 1);
    assert_eq!(mock.requests(Endpoint::HandshakePayload), 1);
    let events_seen = handshake_events(&events);
    assert_eq!(events_seen.len(), 2, "{events_seen:?}");
    assert!(
        events_seen[0].starts_with("redirect:session-token-expired"),
        "{events_seen:?}"
    );
    assert_eq!(events_seen[1], "resolved:signed-in");
    let fresh = chrome.cookie("__session").await.expect("a fresh __session");
    assert_ne!(fresh, expired);
    let names: Vec<String> = chrome.cookies().await.into_iter().map(|c| c.0).collect();
    assert!(
        names.iter().all(|n| !n.contains("handshake")),
        "no handshake cookie is left behind: {names:?}"
    );
    assert_eq!(chrome.goto(&home).await, home);
    assert_eq!(chrome.text("auth").await, "signed in as user_1");
    assert_eq!(
        mock.requests(Endpoint::ClientHandshake),
        1,
        "a reload: no handshake"
    );

    // E5: the page's own fetch of an API route with an expired cookie is a 401, not a redirect.
    chrome.set_cookie("__session", &expired).await;
    assert_eq!(chrome.fetch("/api/me").await, (401, false));
    assert_eq!(mock.requests(Endpoint::ClientHandshake), 1);

    // E4: a Frontend API minting expired tokens: the navigation ends on the app, signed out,
    // after exactly 3 handshakes (no ERR_TOO_MANY_REDIRECTS).
    mock.set_frontend_fault(Some(FrontendFault::ExpiredToken));
    counter_expired().await;
    mock.reset_counters();
    let _ = handshake_events(&events);
    assert_eq!(chrome.goto(&home).await, home);
    let text = chrome.text("auth").await;
    assert!(text.starts_with("signed out"), "{text}");
    let seen = handshake_events(&events);
    let cookies = chrome.cookies().await;
    assert_eq!(
        mock.requests(Endpoint::ClientHandshake),
        3,
        "{seen:?} {cookies:?}"
    );
    let stops = seen.iter().filter(|e| e.starts_with("stopped:")).count();
    assert_eq!(stops, 1, "{seen:?}");
    assert!(
        cookies.iter().all(|(n, _)| n != "__clerk_handshake_nonce"),
        "the spent nonce is cleared: {cookies:?}"
    );

    // Clerk behaves again: the next visit is one handshake, signed in.
    mock.set_frontend_fault(None);
    counter_expired().await;
    mock.reset_counters();
    assert_eq!(chrome.goto(&home).await, home);
    assert_eq!(chrome.text("auth").await, "signed in as user_1");
    assert_eq!(mock.requests(Endpoint::ClientHandshake), 1);
    chrome.close().await;
}
