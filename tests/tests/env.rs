//! `Clerk::from_env` reads the documented variables (one test: the environment is process-wide).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clerk_actix::{Clerk, ClerkBuilder, ConfigError};

const VARS: [&str; 11] = [
    "CLERK_SECRET_KEY",
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

fn clear() {
    for v in VARS {
        std::env::remove_var(v);
    }
}

#[test]
fn from_env_reads_the_documented_variables() {
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
