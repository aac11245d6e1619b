//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`): the
//! application installs any exporter (Prometheus, StatsD, ...) and these counters, histograms and
//! gauges appear in it. Without the feature every function here is empty and compiles away.
//!
//! Label values are bounded sets — reason codes, sources, endpoint names, status classes — never
//! user ids or tokens.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `clerk_auth_success_total` | counter | `source`: `cache` / `verified` |
//! | `clerk_auth_failure_total` | counter | `reason`: Clerk's reason codes |
//! | `clerk_token_cache_misses_total` | counter | |
//! | `clerk_token_verify_seconds` | histogram | (verification on a cache miss, keys included) |
//! | `clerk_token_cache_entries` | gauge | |
//! | `clerk_user_sync_total` | counter | `source`: `cache` / `api` / `database` |
//! | `clerk_user_cache_entries` | gauge | |
//! | `clerk_backend_api_requests_total` | counter | `endpoint`: `jwks` / `users` / `api_keys_verify` / `m2m_tokens_verify` / `oauth_access_tokens_verify`; `status`: `2xx`, `404`, `429`, `4xx`, `5xx`, `error` |
//! | `clerk_backend_api_seconds` | histogram | `endpoint` |
//! | `clerk_jwks_refresh_total` | counter | `result`: `ok` / `error` |
//! | `clerk_jwks_age_seconds` | gauge | (set at every key lookup and health probe) |
//! | `clerk_jwks_last_refresh_timestamp_seconds` | gauge | (Unix time of the last successful fetch) |
//! | `clerk_webhooks_total` | counter | `outcome`: `applied` / `duplicate` / `ignored` / `rejected` |

use std::time::Duration;

use crate::{
    base::error::{AuthError, AuthErrorReason},
    base::events::{token_hash, AuthSource, ClerkEvent, Events, UserSource},
};

/// Reports a refused token (the `AuthFailed` event, with a hash of the token, never the token;
/// the failure counter) and hands the error back.
pub(crate) fn refused(events: &Events, err: AuthError, token: &str) -> AuthError {
    auth_failed(err.reason());
    events.emit(ClerkEvent::AuthFailed {
        reason: err.reason(),
        token_hash: token_hash(token),
    });
    err
}

/// A successful authentication.
///
/// The label values are literals: the `metrics` macros then build a static key, with no
/// allocation on every request (a runtime value costs a label `Vec` per call).
pub(crate) fn auth_succeeded(source: AuthSource) {
    #[cfg(feature = "metrics")]
    match source {
        AuthSource::Cache => {
            metrics::counter!("clerk_auth_success_total", "source" => "cache").increment(1)
        }
        AuthSource::Verified => {
            metrics::counter!("clerk_auth_success_total", "source" => "verified").increment(1)
        }
    }
    let _ = source;
}

/// A refused token.
pub(crate) fn auth_failed(reason: AuthErrorReason) {
    #[cfg(feature = "metrics")]
    metrics::counter!("clerk_auth_failure_total", "reason" => reason.as_str()).increment(1);
    let _ = reason;
}

/// A token not in the verified-token cache, verified in `elapsed` (keys included); `entries`
/// counts the tokens cached now (only called with the feature on).
pub(crate) fn token_verified(elapsed: Duration, entries: impl FnOnce() -> u64) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("clerk_token_cache_misses_total").increment(1);
        metrics::histogram!("clerk_token_verify_seconds").record(elapsed.as_secs_f64());
        metrics::gauge!("clerk_token_cache_entries").set(entries() as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (elapsed, entries);
}

/// Where a request's user came from, with the user cache's size.
pub(crate) fn user_synced(source: UserSource, entries: u64) {
    #[cfg(feature = "metrics")]
    {
        // Literal labels: no allocation per request (see `auth_succeeded`).
        match source {
            UserSource::Cache => {
                metrics::counter!("clerk_user_sync_total", "source" => "cache").increment(1)
            }
            UserSource::Api => {
                metrics::counter!("clerk_user_sync_total", "source" => "api").increment(1)
            }
            UserSource::Database => {
                metrics::counter!("clerk_user_sync_total", "source" => "database").increment(1)
            }
        }
        if source != UserSource::Cache {
            metrics::gauge!("clerk_user_cache_entries").set(entries as f64);
        }
    }
    let _ = (source, entries);
}

/// One Backend API request (one attempt): its endpoint, status class and duration.
pub(crate) fn backend_api(endpoint: &'static str, status: &'static str, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(
            "clerk_backend_api_requests_total",
            "endpoint" => endpoint,
            "status" => status
        )
        .increment(1);
        metrics::histogram!("clerk_backend_api_seconds", "endpoint" => endpoint)
            .record(elapsed.as_secs_f64());
    }
    let _ = (endpoint, status, elapsed);
}

/// A JWKS fetch, and when the last good one happened (Unix seconds) if this one succeeded.
pub(crate) fn jwks_refreshed(ok: bool, unix_now: f64) {
    #[cfg(feature = "metrics")]
    {
        let result = if ok { "ok" } else { "error" };
        metrics::counter!("clerk_jwks_refresh_total", "result" => result).increment(1);
        if ok {
            metrics::gauge!("clerk_jwks_last_refresh_timestamp_seconds").set(unix_now);
            metrics::gauge!("clerk_jwks_age_seconds").set(0.0);
        }
    }
    let _ = (ok, unix_now);
}

/// The age of the loaded key set.
pub(crate) fn jwks_age(age: Duration) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("clerk_jwks_age_seconds").set(age.as_secs_f64());
    let _ = age;
}

/// A webhook delivery's outcome.
pub(crate) fn webhook(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("clerk_webhooks_total", "outcome" => outcome).increment(1);
    let _ = outcome;
}
