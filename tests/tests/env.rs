//! `Clerk::from_env` reads the documented variables (one test: the environment is process-wide).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix_web::{test as web_test, App};
use clerk_actix::{
    store::ClerkUserRecord,
    testing::{TokenBuilder, WebhookDelivery, MOCK_WEBHOOK_SECRET, TEST_KEYS},
    webhooks, AuthErrorReason, Clerk, ClerkBuilder, ConfigError,
};

const VARS: [&str; 13] = [
    "CLERK_SECRET_KEY",
    "CLERK_WEBHOOK_SIGNING_SECRET",
    "CLERK_TOKEN_CACHE_MAX_BYTES",
    "CLERK_JWT_KEY",
    "CLERK_API_URL",
    "CLERK_AUTHORIZED_PARTIES",
    "CLERK_AUTH_PARTIES",
    "CLERK_AUDIENCE",
    "CLERK_ISSUER",
    "CLERK_CLOCK_SKEW_MS",
    "CLERK_TOKEN_CACHE_CAPACITY",
    "CLERK_USER_CACHE_TTL",
    "REDIS_CACHE_TIMEOUT",
];

/// Removes the documented variables, and any other `CLERK_*` the shell set (a developer's
/// own secret key or webhook secret must not leak into the test's answers).
fn clear() {
    for v in VARS {
        std::env::remove_var(v);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CLERK_") {
            std::env::remove_var(name);
        }
    }
}

/// The environment is process-wide: the tests take turns.
static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn from_env_reads_the_documented_variables() {
    let _guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
    clear();
    assert_eq!(Clerk::from_env().unwrap_err(), ConfigError::NoKeySource);

    std::env::set_var("CLERK_SECRET_KEY", "sk_test_fromenv");
    std::env::set_var("CLERK_API_URL", "http://127.0.0.1:9/v1/");
    std::env::set_var(
        "CLERK_AUTH_PARTIES",
        r#"["http://localhost:3000", "https://app.example.com"]"#,
    );
    std::env::set_var("CLERK_CLOCK_SKEW_MS", "0");
    std::env::set_var("REDIS_CACHE_TIMEOUT", "120");
    let clerk = Clerk::from_env().unwrap();
    assert_eq!(clerk.api_url(), "http://127.0.0.1:9/v1");
    assert_eq!(
        clerk.verify_options().get_authorized_parties(),
        ["http://localhost:3000", "https://app.example.com"]
    );
    assert_eq!(clerk.verify_options().get_clock_skew(), Duration::ZERO);
    assert_eq!(clerk.user_cache_ttl(), Duration::from_secs(120));
    assert!(!format!("{clerk:?}").contains("fromenv"));

    // The new name wins over the Django one.
    std::env::set_var("CLERK_AUTHORIZED_PARTIES", "https://only.example.com");
    let clerk = Clerk::from_env().unwrap();
    assert_eq!(
        clerk.verify_options().get_authorized_parties(),
        ["https://only.example.com"]
    );

    std::env::set_var("CLERK_CLOCK_SKEW_MS", "five");
    assert_eq!(
        Clerk::from_env().unwrap_err(),
        ConfigError::InvalidEnv {
            var: "CLERK_CLOCK_SKEW_MS",
            expected: "a whole number of milliseconds"
        }
    );
    std::env::remove_var("CLERK_CLOCK_SKEW_MS");

    // A builder from the environment can still be extended.
    let clerk = ClerkBuilder::from_env().on_event(|_| {}).build().unwrap();
    assert_eq!(
        clerk.verify_options().get_clock_skew(),
        Duration::from_secs(5)
    );

    std::env::set_var("CLERK_JWT_KEY", "not a pem");
    assert!(matches!(
        Clerk::from_env().unwrap_err(),
        ConfigError::InvalidJwtKey(_)
    ));
    clear();
}

/// What a variable changes, seen from outside: verification, caching and webhooks.
async fn verdict(clerk: &Clerk, token: &str) -> Result<(), AuthErrorReason> {
    let req = web_test::TestRequest::get()
        .insert_header(("Authorization", format!("Bearer {token}")))
        .to_http_request();
    match clerk.authenticate_request(&req).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => panic!("the token was not read"),
        Err(e) => Err(e.reason()),
    }
}

async fn webhook_status(clerk: &Clerk, delivery: &WebhookDelivery) -> (u16, String) {
    let app = web_test::init_service(
        App::new().service(webhooks::resource_for::<ClerkUserRecord>(clerk, "/hook")),
    )
    .await;
    let mut req = web_test::TestRequest::post()
        .uri("/hook")
        .insert_header(("content-type", "application/json"));
    for header in delivery.headers() {
        req = req.insert_header(header);
    }
    let res =
        web_test::call_service(&app, req.set_payload(delivery.body.clone()).to_request()).await;
    let status = res.status().as_u16();
    let body: serde_json::Value = web_test::read_body_json(res).await;
    (status, body["reason"].as_str().unwrap_or("").to_owned())
}

/// The variables the first test does not reach, each by its effect (one test: the environment
/// is process-wide and the two must not interleave, so this one runs after it in one thread).
#[actix_web::test]
// The lock only orders this test against the other (each on its own thread); it is never
// contended inside this one's single-threaded runtime.
#[allow(clippy::await_holding_lock)]
async fn from_env_key_audience_issuer_caches_and_webhook_secret() {
    let _guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
    clear();
    std::env::set_var("CLERK_JWT_KEY", TEST_KEYS[0].public_pem);
    std::env::set_var("CLERK_AUDIENCE", "api.example.com, other");
    std::env::set_var("CLERK_ISSUER", "https://clerk.example.com");
    std::env::set_var("CLERK_TOKEN_CACHE_CAPACITY", "0");
    std::env::set_var("CLERK_USER_CACHE_TTL", "30");
    std::env::set_var("REDIS_CACHE_TIMEOUT", "120");
    std::env::set_var("CLERK_SECRET_KEY", "   ");
    let clerk = Clerk::from_env().unwrap();
    let good = || {
        TokenBuilder::new()
            .issuer("https://clerk.example.com")
            .claim("aud", "api.example.com")
    };
    // The PEM key verifies without a network; audience and issuer are enforced.
    assert_eq!(verdict(&clerk, &good().build()).await, Ok(()));
    assert_eq!(
        verdict(&clerk, &good().claim("aud", "elsewhere").build()).await,
        Err(AuthErrorReason::TokenVerificationFailed)
    );
    assert_eq!(
        verdict(&clerk, &good().issuer("https://evil.example.com").build()).await,
        Err(AuthErrorReason::TokenVerificationFailed)
    );
    // Capacity 0: nothing is cached. The new TTL name wins over the Django one. A blank
    // secret key is no key (no Backend API).
    assert_eq!(clerk.cached_tokens(), 0);
    assert_eq!(clerk.user_cache_ttl(), Duration::from_secs(30));
    assert!(clerk.get_user_details("user_1").await.is_err());

    // No webhook secret: the endpoint says so; with it, a delivery signed with it verifies
    // (then fails for want of a user store) and one signed with another secret is refused.
    let delivery = WebhookDelivery::new(
        MOCK_WEBHOOK_SECRET,
        "user.created",
        serde_json::json!({"id": "user_1"}),
    );
    assert_eq!(
        webhook_status(&clerk, &delivery).await,
        (500, "webhook-secret-missing".to_owned())
    );
    std::env::set_var("CLERK_WEBHOOK_SIGNING_SECRET", MOCK_WEBHOOK_SECRET);
    let clerk = Clerk::from_env().unwrap();
    let (status, reason) = webhook_status(&clerk, &delivery).await;
    assert_ne!(reason, "invalid-signature");
    assert_ne!(reason, "webhook-secret-missing");
    assert_ne!(status, 200, "no user store is registered");
    let forged = WebhookDelivery::new(
        "whsec_b3RoZXIgc2VjcmV0IG9mIHRoaXJ0eS10d28gYnl0ZXMh",
        "user.created",
        serde_json::json!({"id": "user_1"}),
    );
    assert_eq!(
        webhook_status(&clerk, &forged).await,
        (400, "invalid-signature".to_owned())
    );
    std::env::set_var("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_***not base64***");
    assert_eq!(
        Clerk::from_env().unwrap_err(),
        ConfigError::InvalidWebhookSecret
    );
    std::env::remove_var("CLERK_WEBHOOK_SIGNING_SECRET");

    // Every number is checked.
    for (var, expected) in [
        ("CLERK_TOKEN_CACHE_CAPACITY", "a whole number"),
        ("CLERK_TOKEN_CACHE_MAX_BYTES", "a whole number of bytes"),
        ("CLERK_USER_CACHE_TTL", "a whole number of seconds"),
    ] {
        std::env::set_var(var, "-1");
        assert_eq!(
            Clerk::from_env().unwrap_err(),
            ConfigError::InvalidEnv { var, expected },
            "{var}"
        );
        std::env::remove_var(var);
    }
    // An empty variable keeps the default.
    std::env::set_var("CLERK_CLOCK_SKEW_MS", "");
    std::env::remove_var("REDIS_CACHE_TIMEOUT");
    let clerk = Clerk::from_env().unwrap();
    assert_eq!(
        clerk.verify_options().get_clock_skew(),
        Duration::from_secs(5)
    );
    assert_eq!(clerk.user_cache_ttl(), Duration::from_secs(3600));
    clear();
}
