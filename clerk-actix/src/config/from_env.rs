//! The environment reader: [`ClerkBuilder::from_env`] and the variables it reads.

use super::*;

fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().trim_matches('"').trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

impl ClerkBuilder {
    /// A builder filled from the environment (unset or empty variables keep the defaults):
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `CLERK_SECRET_KEY` | Backend API secret key (`sk_...`): JWKS and user sync |
    /// | `CLERK_JWT_KEY` | PEM public key: networkless verification |
    /// | `CLERK_API_URL` | default `https://api.clerk.com/v1` |
    /// | `CLERK_AUTHORIZED_PARTIES` (or the Django SDK's `CLERK_AUTH_PARTIES`) | comma list of allowed `azp` origins |
    /// | `CLERK_AUDIENCE` | comma list of accepted `aud` values |
    /// | `CLERK_ISSUER` | exact `iss` to require |
    /// | `CLERK_CLOCK_SKEW_MS` | tolerance for `exp`/`nbf`/`iat`, default 5000 |
    /// | `CLERK_TOKEN_CACHE_CAPACITY` | verified tokens kept, default 10000 (0 disables) |
    /// | `CLERK_TOKEN_CACHE_MAX_BYTES` | bytes the verified-token cache may hold, default 33554432 (32 MiB) |
    /// | `CLERK_USER_CACHE_TTL` (or `REDIS_CACHE_TIMEOUT`) | seconds a synced user stays cached, default 3600 |
    /// | `CLERK_PUBLISHABLE_KEY` | `pk_test_…` / `pk_live_…`: the handshake mode for server-rendered pages |
    /// | `CLERK_PROXY_URL` | the Frontend API's proxy URL, if it is proxied |
    /// | `CLERK_MACHINE_SECRET_KEY` | this service's machine secret key: opaque M2M tokens verify only if granted access to this machine |
    pub fn from_env() -> Self {
        let mut b = Self::default();
        if let Some(v) = env_var("CLERK_SECRET_KEY") {
            b = b.secret_key(v);
        }
        if let Some(v) = env_var("CLERK_JWT_KEY") {
            b = b.jwt_key(v);
        }
        if let Some(v) = env_var("CLERK_MACHINE_SECRET_KEY") {
            b = b.machine_secret_key(v);
        }
        if let Some(v) = env_var("CLERK_WEBHOOK_SIGNING_SECRET") {
            b = b.webhook_signing_secret(v);
        }
        if let Some(v) = env_var("CLERK_API_URL") {
            b = b.api_url(v);
        }
        if let Some(v) = env_var("CLERK_PUBLISHABLE_KEY") {
            b = b.publishable_key(v);
        }
        if let Some(v) = env_var("CLERK_PROXY_URL") {
            b = b.proxy_url(v);
        }
        if let Some(v) =
            env_var("CLERK_AUTHORIZED_PARTIES").or_else(|| env_var("CLERK_AUTH_PARTIES"))
        {
            // The Django setting is a Python list; accept `["a", "b"]` too.
            b = b.authorized_parties(split_list(v.trim_start_matches('[').trim_end_matches(']')));
        }
        if let Some(v) = env_var("CLERK_AUDIENCE") {
            b = b.audience(split_list(&v));
        }
        if let Some(v) = env_var("CLERK_ISSUER") {
            b = b.issuer(v);
        }
        if let Some(v) = env_var("CLERK_CLOCK_SKEW_MS") {
            match v.parse::<u64>() {
                Ok(ms) => b = b.clock_skew(Duration::from_millis(ms)),
                Err(_) => b.defer(ConfigError::InvalidEnv {
                    var: "CLERK_CLOCK_SKEW_MS",
                    expected: "a whole number of milliseconds",
                }),
            }
        }
        if let Some(v) = env_var("CLERK_TOKEN_CACHE_CAPACITY") {
            match v.parse::<u64>() {
                Ok(n) => b = b.token_cache_capacity(n),
                Err(_) => b.defer(ConfigError::InvalidEnv {
                    var: "CLERK_TOKEN_CACHE_CAPACITY",
                    expected: "a whole number",
                }),
            }
        }
        if let Some(v) = env_var("CLERK_TOKEN_CACHE_MAX_BYTES") {
            match v.parse::<u64>() {
                Ok(n) => b = b.token_cache_max_bytes(n),
                Err(_) => b.defer(ConfigError::InvalidEnv {
                    var: "CLERK_TOKEN_CACHE_MAX_BYTES",
                    expected: "a whole number of bytes",
                }),
            }
        }
        if let Some((var, v)) = env_var("CLERK_USER_CACHE_TTL")
            .map(|v| ("CLERK_USER_CACHE_TTL", v))
            .or_else(|| env_var("REDIS_CACHE_TIMEOUT").map(|v| ("REDIS_CACHE_TIMEOUT", v)))
        {
            match v.parse::<u64>() {
                Ok(s) => b = b.user_cache_ttl(Duration::from_secs(s)),
                Err(_) => b.defer(ConfigError::InvalidEnv {
                    var,
                    expected: "a whole number of seconds",
                }),
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parsing_accepts_django_style_lists() {
        assert_eq!(
            split_list(r#""http://localhost:3000", "https://app.example.com""#),
            ["http://localhost:3000", "https://app.example.com"]
        );
        assert_eq!(split_list("a,,b"), ["a", "b"]);
    }
}
