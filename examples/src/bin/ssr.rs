//! A server-rendered app with Clerk's handshake: `GET /` says `signed in as <user id>` or
//! `signed out`, and a returning visitor whose `__session` cookie expired (it lives 60 s) is
//! sent through Clerk's Frontend API once and comes back signed in.
//!
//! `cargo run --bin ssr` serves on `127.0.0.1:8082` (`PORT` to change).
//!
//! - With `CLERK_SECRET_KEY` and `CLERK_PUBLISHABLE_KEY` set (and `CLERK_AUTHORIZED_PARTIES`
//!   = this app's origin), it uses that Clerk instance; sign in with Clerk's components or
//!   Account Portal.
//! - Without, it starts a dev `MockClerk` in-process (a development instance, `pk_test_`) and
//!   prints one line, `sign in: <url>`: a browser (or `curl -L` with a cookie jar) following it
//!   signs in at the mock Frontend API and ends signed in on `/`. The dev Clerk's session
//!   tokens live 60 s, as Clerk's do; `CLERK_DEV_SESSION_LIFETIME=5` makes them live 5 s, so a
//!   reload after 10 s shows the handshake refreshing an expired cookie.

use std::{env, time::Duration};

use actix_web::{web, App, HttpResponse, HttpServer};
use clerk_actix::{testing::MockClerk, AuthState, Clerk, ClerkMiddleware};

/// `GET /`: the page, rendered for whoever the middleware found.
async fn home(state: AuthState) -> HttpResponse {
    let who = match &state {
        AuthState::Authenticated(session) => format!("signed in as {}", session.user_id()),
        _ => "signed out".to_owned(),
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>clerk-actix ssr</title>\
             <link rel=\"icon\" href=\"data:,\"></head>\
             <body><p id=\"auth\">{who}</p></body></html>"
        ))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "clerk_actix=info".into()),
        )
        .init();
    let port: u16 = match env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "PORT must be a port number",
            )
        })?,
        Err(_) => 8082,
    };
    // Bound first: with `PORT=0` the system picks the port, and the origin (the authorized
    // party of the dev Clerk) names the one bound.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();
    let origin = format!("http://127.0.0.1:{port}");
    let configured = env::var("CLERK_SECRET_KEY").is_ok_and(|k| !k.trim().is_empty());
    let (clerk, mock) = if configured {
        let clerk = Clerk::from_env().map_err(std::io::Error::other)?;
        (clerk, None)
    } else {
        let mock = MockClerk::try_start()?;
        mock.set_development(true);
        // `CLERK_DEV_SESSION_LIFETIME=5`: the dev Clerk's session tokens live 5 s instead of
        // 60 s, to watch a handshake refresh an expired cookie without waiting a minute.
        if let Ok(secs) = env::var("CLERK_DEV_SESSION_LIFETIME") {
            let secs: u64 = secs.trim().parse().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "CLERK_DEV_SESSION_LIFETIME must be a number of seconds",
                )
            })?;
            mock.set_session_token_lifetime(Duration::from_secs(secs));
        }
        let clerk = mock
            .clerk_builder()
            .authorized_parties([origin.clone(), format!("http://localhost:{port}")])
            .build()
            .map_err(std::io::Error::other)?;
        (clerk, Some(mock))
    };
    let server = HttpServer::new(move || {
        App::new()
            .wrap(ClerkMiddleware::new(clerk.clone()).handshake())
            .route("/", web::get().to(home))
    })
    .listen(listener)?
    .run();
    println!("clerk-actix ssr listening on {origin}");
    match &mock {
        Some(mock) => {
            println!(
                "No CLERK_SECRET_KEY set: using a built-in dev Clerk (development instance) at {}",
                mock.url()
            );
            println!(
                "sign in: {}",
                mock.sign_in_url("user_demo", &format!("{origin}/"))
            );
        }
        None => println!("open {origin}/ and sign in with your Clerk instance"),
    }
    server.await
}
