//! The README's server-rendered example, end to end: `cargo run --bin ssr` starts with its dev
//! Clerk, prints `sign in: <url>`, and a browser following that line ends signed in on `/`;
//! when its `__session` cookie is gone (or expired) the next visit makes one handshake and is
//! signed in again.

#![allow(clippy::unwrap_used)]

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use clerk_actix_tests::{browser::Browser, process::spawn_listening};

#[actix_web::test]
async fn the_printed_sign_in_line_ends_signed_in_and_the_cookie_refreshes() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssr"));
    command
        .env_remove("CLERK_SECRET_KEY")
        .env_remove("CLERK_PUBLISHABLE_KEY")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null());
    let (_server, output, port) = spawn_listening(command);
    let sign_in = output.wait_for("sign in: ", Duration::from_secs(60));
    let home = format!("http://127.0.0.1:{port}/");
    let mut browser = Browser::new();
    let page = browser.navigate(&sign_in).await;
    assert_eq!(page.status, 200, "{page:#?}");
    assert_eq!(page.url, home);
    assert!(
        page.body.contains("signed in as user_demo"),
        "{}",
        page.body
    );

    // A reload costs no round trip; a lost session cookie costs exactly one handshake.
    let reload = browser.navigate(&home).await;
    assert_eq!(reload.hops.len(), 1);
    assert!(reload.body.contains("signed in as user_demo"));
    browser.remove_cookie(&home, "__session");
    let back = browser.navigate(&home).await;
    assert_eq!(
        back.redirects_from(&home[..home.len() - 1]).len(),
        2,
        "handshake + dev clean-up: {back:#?}"
    );
    assert!(
        back.body.contains("signed in as user_demo"),
        "{}",
        back.body
    );

    // A browser that never signed in stays signed out, after the dev browser is set up.
    let mut stranger = Browser::new();
    let page = stranger.navigate(&home).await;
    assert!(page.body.contains("signed out"), "{page:#?}");
    assert!(stranger.cookie(&home, "__clerk_db_jwt").is_some());
}
