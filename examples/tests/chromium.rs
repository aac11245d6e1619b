//! The handshake in a real browser (handshake.md §14.6–§14.7): headless Chromium, driven over
//! WebDriver, signs in through the server-rendered example and through a production-keyed app,
//! comes back with an expired `__session` cookie and sees the signed-in page after exactly one
//! handshake; a Frontend API that keeps minting expired tokens stops at the loop guard; the
//! page's `fetch` of an API route is a 401, never a redirect.
//!
//! These need Debian's `chromium` and `chromium-driver`: they are `#[ignore]`d in the README's
//! `cargo test` (a machine without a browser still runs the whole suite), and `.ci/run`
//! installs both packages and runs them with
//! `cargo test --workspace --all-features --test chromium -- --include-ignored --test-threads=1`.

#![allow(clippy::unwrap_used)]

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use clerk_actix::testing::{unix_now, Endpoint, FrontendFault, MockClerk};
use clerk_actix_tests::{chromium::Chromium, pages, process::spawn_listening};

#[actix_web::test]
#[ignore = "needs chromium and chromium-driver; .ci/run runs it"]
async fn chromium_signs_in_through_the_ssr_example_and_comes_back_after_the_cookie_expired() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssr"));
    command
        .env_remove("CLERK_SECRET_KEY")
        .env_remove("CLERK_PUBLISHABLE_KEY")
        // The dev Clerk's tokens live 1 s instead of 60 s: expired (past the 5 s skew) 6 s later.
        .env("CLERK_DEV_SESSION_LIFETIME", "1")
        .env("RUST_LOG", "clerk_actix=debug")
        .env("NO_COLOR", "1")
        .stderr(Stdio::null());
    let (_server, output, port) = spawn_listening(command);
    let sign_in = output.wait_for("sign in: ", Duration::from_secs(60));
    let handshake_redirects =
        |n: usize| output.wait_count("clerk handshake redirect", n, Duration::from_secs(10));
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
    let before = handshake_redirects(1);
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
    let after = handshake_redirects(2);
    assert_eq!(after.len(), 2, "exactly one more handshake: {after:?}");
    assert!(after[1].contains("session-token-expired"), "{after:?}");
    chrome.close().await;
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

#[actix_web::test]
#[ignore = "needs chromium and chromium-driver; .ci/run runs it"]
async fn chromium_production_keys_expired_cookie_fetch_and_the_loop_guard() {
    let s = pages::start(false);
    let (mock, app, home) = (&s.mock, &s.app, s.home());
    assert!(!mock.is_development(), "production keys (pk_live_)");
    let chrome = Chromium::start().await;

    // Sign in at the Frontend API (its `__client` cookie), then the app's one handshake.
    assert_eq!(chrome.goto(&mock.sign_in_url("user_1", &home)).await, home);
    assert_eq!(chrome.text("auth").await, "signed in as user_1");
    assert_eq!(mock.requests(Endpoint::ClientHandshake), 1);
    assert_eq!(mock.requests(Endpoint::HandshakePayload), 1);
    assert_eq!(
        s.handshakes(),
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
    let (expired, uat) = expired_session(mock, app);
    chrome.set_cookie("__session", &expired).await;
    chrome.set_cookie("__client_uat", &uat).await;
    mock.reset_counters();
    assert_eq!(chrome.goto(&home).await, home);
    assert_eq!(chrome.text("auth").await, "signed in as user_1");
    assert_eq!(mock.requests(Endpoint::ClientHandshake), 1);
    assert_eq!(mock.requests(Endpoint::HandshakePayload), 1);
    let events_seen = s.handshakes();
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
    let _ = s.handshakes();
    assert_eq!(chrome.goto(&home).await, home);
    let text = chrome.text("auth").await;
    assert!(text.starts_with("signed out"), "{text}");
    let seen = s.handshakes();
    let cookies = chrome.cookies().await;
    assert_eq!(
        mock.requests(Endpoint::ClientHandshake),
        3,
        "{seen:?} {cookies:?}"
    );
    let stops = seen.iter().filter(|e| e.starts_with("stopped:")).count();
    assert_eq!(stops, 1, "{seen:?}");
    // One payload exchange per handshake, and no spent nonce presented again (no request of
    // the page's own — it has no favicon to fetch — nor a later one).
    assert_eq!(mock.requests(Endpoint::HandshakePayload), 3, "{seen:?}");
    assert!(
        !seen.iter().any(|e| e == "resolved:nonce-refused"),
        "{seen:?}"
    );
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
    assert_eq!(mock.requests(Endpoint::HandshakePayload), 1);
    let seen = s.handshakes();
    assert!(
        !seen.iter().any(|e| e == "resolved:nonce-refused"),
        "{seen:?}"
    );
    chrome.close().await;
}
