//! The README's first command: `cargo run --bin quickstart`.
//!
//! An actix server on 127.0.0.1:8080 (`PORT` overrides) with `GET /` (public), `GET /me`
//! (protected: the synced local user and the verified claims as JSON; session tokens only) and
//! `GET /machine` (API keys and M2M tokens, opaque or JWT, opted in on the handler under the
//! app-wide session middleware; session tokens are refused).
//!
//! Users are synced into an embedded SQLite file (`quickstart.sqlite`, or `SQLITE_PATH`) or,
//! with `DATABASE_URL=postgres://...`, into PostgreSQL; the `clerk_users` migrations run at
//! start-up, so an empty database just works.
//!
//! - With `CLERK_SECRET_KEY` or `CLERK_JWT_KEY` set, it verifies real Clerk session tokens
//!   (configuration from the environment, see the guide's `configuration` chapter).
//! - Without, it starts a dev `MockClerk` in-process on 127.0.0.1 and prints ready-to-paste
//!   `curl` commands carrying a valid token. `GET /dev/token?sub=user_x` mints a fresh one,
//!   `GET /dev/machine-token?type=api_key|m2m_token|m2m_jwt&state=valid|revoked|expired` a
//!   machine token.
//! - `POST /webhooks/clerk` keeps the user table in sync with Clerk's (Svix-signed) webhooks
//!   whenever a signing secret is configured (`CLERK_WEBHOOK_SIGNING_SECRET`; always in dev
//!   mode, with the dev Clerk's secret).
//!
//! Several processes with the same `DATABASE_URL=postgres://...`, `CLERK_SECRET_KEY`,
//! `CLERK_API_URL` and webhook secret behave as replicas of one application: a user signing in
//! on all of them costs one Backend API call, and a webhook delivered to one (a deletion, a ban)
//! reaches the others through PostgreSQL's change log (woken by `LISTEN`/`NOTIFY`). Behind a
//! transaction-mode pooler, `CLERK_DATABASE_DIRECT_URL` (the direct string) is used for the
//! migrations and the change feed.

use actix_web::{get, web, App, HttpResponse, HttpServer, Responder};
use clerk_actix::{
    clerk_protected, health,
    store::{ClerkUserRecord, DieselUserStore},
    testing::{unix_now, MockClerk},
    webhooks, ClerkMachine, ClerkMiddleware, ClerkUser, OptionalClerkSession,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;

/// Machine callers: `{"token_type", "id", "subject", "scopes"}` (and `name` for API keys). The
/// app-wide middleware takes session tokens only; this handler opts in to API keys and M2M
/// tokens (opaque or JWT). A session token here is 401 `token-type-mismatch`.
#[clerk_protected(accepts_token = ["api_key", "m2m_token"])]
async fn machine(caller: ClerkMachine) -> impl Responder {
    web::Json(caller.into_inner())
}

#[derive(Deserialize)]
struct MachineTokenQuery {
    r#type: Option<String>,
    state: Option<String>,
}

/// Dev mode only: a machine token from the in-process mock Clerk, `type` `api_key` (default),
/// `m2m_token` or `m2m_jwt`, `state` `valid` (default), `revoked` or `expired`.
async fn dev_machine_token(
    mock: web::Data<MockClerk>,
    q: web::Query<MachineTokenQuery>,
) -> impl Responder {
    let kind = q.r#type.as_deref().unwrap_or("api_key");
    let state = q.state.as_deref().unwrap_or("valid");
    let lifetime = if state == "expired" {
        -60
    } else {
        DEV_TOKEN_LIFETIME_SECS
    };
    let token = match (kind, state) {
        ("api_key", "valid" | "revoked" | "expired") => {
            Some(mock.create_api_key("user_quickstart", "quickstart", &["read:reports"]))
        }
        ("m2m_token", "valid" | "revoked" | "expired") => {
            Some(mock.create_m2m_token("mch_quickstart", &["mch_reports"], lifetime))
        }
        ("m2m_jwt", "valid" | "expired") => {
            Some(mock.m2m_jwt("mch_quickstart", &["mch_reports"], lifetime))
        }
        _ => None,
    };
    let Some(token) = token else {
        return HttpResponse::BadRequest().json(serde_json::json!({
            "error": "type is api_key, m2m_token or m2m_jwt; state is valid, revoked or expired (a JWT cannot be revoked)"
        }));
    };
    match state {
        "revoked" => mock.revoke_machine_token(&token),
        "expired" if kind != "m2m_jwt" => mock.expire_machine_token(&token),
        _ => {}
    }
    HttpResponse::Ok().body(token)
}

/// Dev tokens live an hour so the printed commands keep working while you try them; real Clerk
/// session tokens live 60 s.
const DEV_TOKEN_LIFETIME_SECS: i64 = 3600;

#[get("/")]
async fn index(session: OptionalClerkSession) -> impl Responder {
    let who = match &*session {
        Some(s) => format!("signed in as {}", s.user_id()),
        None => "anonymous".to_owned(),
    };
    HttpResponse::Ok().json(serde_json::json!({
        "service": "clerk-actix quickstart",
        "you_are": who,
        "try": "GET /me with Authorization: Bearer <session token>",
    }))
}

#[get("/me")]
async fn me(user: ClerkUser<ClerkUserRecord>) -> impl Responder {
    HttpResponse::Ok().json(serde_json::json!({
        "user": &*user,
        "source": user.source(),
        "session": user.session(),
    }))
}

#[derive(Deserialize)]
struct TokenQuery {
    sub: Option<String>,
}

/// Dev mode only: a fresh token from the in-process mock Clerk.
async fn dev_token(mock: web::Data<MockClerk>, q: web::Query<TokenQuery>) -> impl Responder {
    let sub = q
        .sub
        .clone()
        .unwrap_or_else(|| "user_quickstart".to_owned());
    if !sub.starts_with("user_") || sub.len() > 64 {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({"error": "sub must look like user_..."}));
    }
    HttpResponse::Ok().body(dev_mint(&mock, &sub))
}

fn dev_mint(mock: &MockClerk, sub: &str) -> String {
    mock.token()
        .subject(sub)
        .session_id("sess_quickstart")
        .expires_at(unix_now() + DEV_TOKEN_LIFETIME_SECS)
        .build()
}

/// `GET /metrics`: every metric recorded so far, in Prometheus' text format.
async fn metrics(prometheus: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus.render())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,clerk_actix=debug".into()),
        )
        .init();

    // Metrics (clerk-actix's `metrics` feature) in Prometheus' text format at GET /metrics;
    // histograms as buckets, which examples/grafana-dashboard.json reads.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Prefix("clerk_".into()),
            &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
        )
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(std::io::Error::other)?;

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "PORT must be a port number",
            )
        })?,
        Err(_) => 8080,
    };
    // Bound before anything else, so `PORT=0` (a free port chosen by the system, as the tests
    // use) is known when it is printed below.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();

    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let real = set("CLERK_SECRET_KEY") || set("CLERK_JWT_KEY");

    let database_url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| {
            std::env::var("SQLITE_PATH")
                .ok()
                .filter(|p| !p.trim().is_empty())
        })
        .unwrap_or_else(|| "quickstart.sqlite".into());
    let mut store: DieselUserStore = DieselUserStore::connect(&database_url)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // Through a transaction-mode pooler, the migrations and the change feed's LISTEN use the
    // direct connection string when there is one.
    if let Some(direct) = std::env::var("CLERK_DATABASE_DIRECT_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        store = store
            .with_direct_url(&direct)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    store
        .run_migrations()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let shown_db = if database_url.contains("://") && database_url.contains('@') {
        "PostgreSQL (DATABASE_URL)".to_owned()
    } else {
        database_url.clone()
    };
    println!("Users are synced into {shown_db} (table clerk_users, migrations applied)");

    // Refused tokens are logged by the library (target `clerk_actix`, at most 20 lines per 10 s
    // under a flood); `.on_event(...)` would receive every one of them, e.g. for metrics.
    // The webhook endpoint needs a signing secret: the environment's, or the dev Clerk's.
    let serve_webhooks = !real || set("CLERK_WEBHOOK_SIGNING_SECRET");
    let (clerk, mock) = if real {
        let clerk = clerk_actix::ClerkBuilder::from_env()
            .user_store(store)
            .build()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        println!("Using real Clerk at {}", clerk.api_url());
        (clerk, None)
    } else {
        let mock = MockClerk::try_start()?;
        // Secret key, API URL and authorized party (http://localhost:3000) of the dev Clerk;
        // tokens are verified exactly as in production (JWKS fetched over HTTP, azp checked).
        let clerk = mock
            .clerk_builder()
            .user_store(store)
            .build()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        (clerk, Some(web::Data::new(mock)))
    };

    let server = {
        let clerk = clerk.clone();
        let mock = mock.clone();
        HttpServer::new(move || {
            // One middleware for the whole app: session tokens (the default); `/machine` opts
            // in to API keys and M2M tokens on its handler.
            let mut app = App::new()
                .wrap(ClerkMiddleware::new(clerk.clone()))
                .service(index)
                .service(me)
                .route("/machine", web::get().to(machine))
                .route("/readyz", web::get().to(health::readyz))
                .app_data(web::Data::new(prometheus.clone()))
                .route("/metrics", web::get().to(metrics));
            if let Some(mock) = &mock {
                app = app
                    .app_data(mock.clone())
                    .route("/dev/token", web::get().to(dev_token))
                    .route("/dev/machine-token", web::get().to(dev_machine_token));
            }
            if serve_webhooks {
                app = app.service(webhooks::resource::<ClerkUserRecord>("/webhooks/clerk"));
            }
            app.app_data(web::Data::new(clerk.clone()))
        })
        .workers(2)
        .shutdown_timeout(5)
        .listen(listener)?
    };

    let base = format!("http://127.0.0.1:{port}");
    println!("clerk-actix quickstart listening on {base}");
    println!("Readiness (200 once Clerk's keys are loaded, 503 before; JSON health report):");
    println!("  curl -i {base}/readyz");
    println!("Metrics (Prometheus text format):");
    println!("  curl -s {base}/metrics");
    if serve_webhooks {
        println!("Clerk webhooks (Svix-signed user.created / user.updated / user.deleted):");
        println!("  POST {base}/webhooks/clerk");
    }
    if let Some(mock) = &mock {
        let token = dev_mint(mock, "user_quickstart");
        println!();
        println!(
            "No CLERK_SECRET_KEY / CLERK_JWT_KEY set: using a built-in dev Clerk at {}",
            mock.url()
        );
        println!("(set CLERK_SECRET_KEY=sk_... to verify real Clerk tokens instead)");
        println!();
        println!("Public route:");
        println!("  curl -i {base}/");
        println!(
            "Protected route with a dev session token (valid {} min):",
            DEV_TOKEN_LIFETIME_SECS / 60
        );
        println!("  curl -i {base}/me -H 'Authorization: Bearer {token}'");
        println!("Without a token (401 + WWW-Authenticate):");
        println!("  curl -i {base}/me");
        println!("A fresh token for another user:");
        println!("  curl -s '{base}/dev/token?sub=user_alice'");
        let api_key = mock.create_api_key("user_quickstart", "quickstart", &["read:reports"]);
        let m2m =
            mock.create_m2m_token("mch_quickstart", &["mch_reports"], DEV_TOKEN_LIFETIME_SECS);
        let m2m_jwt = mock.m2m_jwt("mch_quickstart", &["mch_reports"], DEV_TOKEN_LIFETIME_SECS);
        println!("Machine route with a dev API key, an M2M token and an M2M JWT:");
        println!("  curl -i {base}/machine -H 'Authorization: Bearer {api_key}'");
        println!("  curl -i {base}/machine -H 'Authorization: Bearer {m2m}'");
        println!("  curl -i {base}/machine -H 'Authorization: Bearer {m2m_jwt}'");
        println!("A session token there (401 token-type-mismatch):");
        println!("  curl -i {base}/machine -H 'Authorization: Bearer {token}'");
        println!("A revoked or expired machine token (401 token-revoked / token-expired):");
        println!("  curl -s '{base}/dev/machine-token?type=api_key&state=revoked'");
        println!();
    }
    server.run().await
}
