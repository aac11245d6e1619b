//! The Backend API client: per-request timeouts, the bearer secret key, Clerk's version header,
//! retries of transient failures, spans and metrics, and Clerk's error body parsed into a typed
//! error. The bytes go through `actix::transport` (one awc client on a thread of its own).

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use tracing::Instrument as _;

use crate::{actix::transport, base::telemetry, base::user::ClerkUserData};

/// The `Clerk-API-Version` sent with every Backend API request.
pub const CLERK_API_VERSION: &str = "2025-11-10";

/// The secret key. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub(crate) fn new(key: String) -> Self {
        Self(key)
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
    /// `sk_test_` / `sk_live_` / `sk_` (the instance kind), never the secret part.
    pub fn redacted(&self) -> String {
        let prefix = ["sk_test_", "sk_live_", "sk_"]
            .into_iter()
            .find(|p| self.0.starts_with(p))
            .unwrap_or("");
        format!("{prefix}[redacted]")
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// One entry of Clerk's error body.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ClerkApiErrorEntry {
    /// Short message.
    #[serde(default)]
    pub message: String,
    /// Longer message.
    #[serde(default)]
    pub long_message: String,
    /// Machine code, e.g. `clerk_key_invalid`.
    #[serde(default)]
    pub code: String,
}

/// Clerk's error body: `{"errors": [...], "clerk_trace_id": "..."}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
pub struct ClerkApiErrors {
    /// The errors.
    #[serde(default)]
    pub errors: Vec<ClerkApiErrorEntry>,
    /// Clerk's trace id, for support requests.
    #[serde(default)]
    pub clerk_trace_id: Option<String>,
}

/// A failed Backend API call. Never contains the secret key.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No response: connect error or timeout.
    #[error("Clerk Backend API unreachable: {0}")]
    Unreachable(&'static str),
    /// Clerk answered 429; retry after the given time.
    #[error("Clerk Backend API rate limit (retry after {retry_after:?})")]
    RateLimited {
        /// From `Retry-After`.
        retry_after: Duration,
    },
    /// Clerk answered with an error status.
    #[error("Clerk Backend API answered {status}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The parsed error body (empty if it was not Clerk's shape).
        body: ClerkApiErrors,
    },
    /// A 2xx whose body was not what was expected.
    #[error("Clerk Backend API sent an unexpected body")]
    InvalidBody,
    /// 404: no such resource (e.g. the user was deleted in Clerk).
    #[error("not found in Clerk")]
    NotFound,
    /// No secret key is configured, so the Backend API cannot be called.
    #[error("no Clerk secret key configured (set CLERK_SECRET_KEY)")]
    NoSecretKey,
}

impl ApiError {
    /// True when the secret key was refused (`clerk_key_invalid`, or 401).
    pub fn is_invalid_secret_key(&self) -> bool {
        match self {
            Self::Status { status, body } => {
                *status == StatusCode::UNAUTHORIZED
                    || body.errors.iter().any(|e| e.code == "clerk_key_invalid")
            }
            _ => false,
        }
    }

    /// True for failures worth retrying: unreachable, 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Status { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}

/// A Backend API answer (status, `Retry-After`, body) as the body or the error it stands for.
pub(crate) fn answer(
    status: StatusCode,
    retry_after: Option<&str>,
    body: Bytes,
) -> Result<Bytes, ApiError> {
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = parse_retry_after(retry_after, Duration::from_secs(10));
        return Err(ApiError::RateLimited { retry_after });
    }
    if status == StatusCode::NOT_FOUND {
        return Err(ApiError::NotFound);
    }
    if !status.is_success() {
        let body = serde_json::from_slice(&body).unwrap_or_default();
        return Err(ApiError::Status { status, body });
    }
    Ok(body)
}

/// Parses `Retry-After` (integer seconds; an HTTP date or garbage falls back to `default`).
pub(crate) fn parse_retry_after(value: Option<&str>, default: Duration) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(default)
}

/// `GET {url}` with the secret key; the raw body on 2xx. A `Send` future: the request runs on
/// the client thread ([`transport`]); dropping the future abandons the answer, not the request.
pub(crate) async fn get(
    endpoint: &'static str,
    url: &str,
    secret_key: &SecretKey,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, ApiError> {
    call(endpoint, url, None, secret_key, timeout, max_body).await
}

/// One call, in a `clerk.backend_api` span (endpoint, status class) and its metrics.
async fn call(
    endpoint: &'static str,
    url: &str,
    json: Option<Bytes>,
    secret_key: &SecretKey,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, ApiError> {
    let span = tracing::debug_span!(
        target: crate::base::events::TRACING_TARGET,
        "clerk.backend_api",
        endpoint,
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = send_to_transport(url, json, secret_key, timeout, max_body)
        .instrument(span.clone())
        .await;
    let status = status_class(&result);
    span.record("status", status);
    telemetry::backend_api(endpoint, status, started.elapsed());
    result
}

/// The status class of an answer, for metrics (a bounded label set).
fn status_class(result: &Result<Bytes, ApiError>) -> &'static str {
    match result {
        Ok(_) => "2xx",
        Err(ApiError::NotFound) => "404",
        Err(ApiError::RateLimited { .. }) => "429",
        Err(ApiError::Status { status, .. }) if status.is_server_error() => "5xx",
        Err(ApiError::Status { .. }) => "4xx",
        Err(_) => "error",
    }
}

/// `POST {url}` with a JSON body and the secret key; the raw body on 2xx. Not retried: the
/// caller owns the budget of its calls.
pub(crate) async fn post_json(
    endpoint: &'static str,
    url: &str,
    json: Bytes,
    secret_key: &SecretKey,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, ApiError> {
    call(endpoint, url, Some(json), secret_key, timeout, max_body).await
}

async fn send_to_transport(
    url: &str,
    json: Option<Bytes>,
    secret_key: &SecretKey,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, ApiError> {
    let request = transport::Request {
        url: url.to_owned(),
        json,
        bearer: secret_key.expose().to_owned(),
        api_version: CLERK_API_VERSION,
        timeout,
        max_body,
    };
    let reply = transport::send(request)
        .await
        .map_err(ApiError::Unreachable)?;
    answer(reply.status, reply.retry_after.as_deref(), reply.body)
}

/// `get` with bounded retries of transient failures (network, timeout, 5xx), with jittered
/// exponential delays (≈200 ms, 400 ms, ...). 429 and other 4xx are not retried.
pub(crate) async fn get_with_retries(
    endpoint: &'static str,
    url: &str,
    secret_key: &SecretKey,
    timeout: Duration,
    max_body: usize,
    attempts: u32,
) -> Result<Bytes, ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match get(endpoint, url, secret_key, timeout, max_body).await {
            Err(e) if e.is_transient() && attempt < attempts.max(1) => {
                let delay =
                    Duration::from_millis(100 << attempt.min(6)).mul_f64(1.0 + fastrand::f64());
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// The Backend API of one instance: base URL, secret key, timeout and retry budget, and how
/// its calls went lately (for the health report).
#[derive(Debug, Clone)]
pub(crate) struct BackendApi {
    pub(crate) api_url: String,
    pub(crate) secret_key: SecretKey,
    pub(crate) timeout: Duration,
    pub(crate) attempts: u32,
    pub(crate) status: Arc<Mutex<ApiStatus>>,
}

/// The outcome of the latest Backend API calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiStatus {
    pub(crate) last_success: Option<Instant>,
    /// The last failure (not a 404, which is an answer): what, and when.
    pub(crate) last_error: Option<(&'static str, Instant)>,
    /// After a 429, no call is made before this instant (Clerk's `Retry-After`, at most
    /// [`MAX_RATE_LIMIT_HOLD`]): a rate-limited instance is not asked again by every request.
    pub(crate) hold_until: Option<Instant>,
}

/// The longest a 429's `Retry-After` holds calls back (a hostile or broken value must not stop
/// the Backend API for hours).
pub(crate) const MAX_RATE_LIMIT_HOLD: Duration = Duration::from_secs(60);

impl ApiError {
    /// A short code for the health report (never the body or the key).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::RateLimited { .. } => "rate-limited",
            Self::Status { .. } if self.is_invalid_secret_key() => "secret-key-invalid",
            Self::Status { .. } => "error-status",
            Self::InvalidBody => "invalid-body",
            Self::NotFound => "not-found",
            Self::NoSecretKey => "no-secret-key",
        }
    }
}

/// Clerk ids are short ASCII tokens; anything else never reaches a URL path.
fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl BackendApi {
    /// While a 429 holds calls back: the error to answer instead of calling, with the time left.
    pub(crate) fn held(&self) -> Option<ApiError> {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let left = status.hold_until?.checked_duration_since(Instant::now())?;
        // Whole seconds, rounded up, as a Retry-After header carries them.
        let retry_after = Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0));
        Some(ApiError::RateLimited { retry_after })
    }

    /// Records how a call went: for the health report, and a 429's hold.
    pub(crate) fn record<T>(&self, result: &Result<T, ApiError>) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match result {
            Ok(_) | Err(ApiError::NotFound) => status.last_success = Some(now),
            Err(e) => status.last_error = Some((e.code(), now)),
        }
        drop(status);
        self.hold_on_rate_limit(result);
    }

    /// After a 429, holds every call of this handle back for its `Retry-After`.
    pub(crate) fn hold_on_rate_limit<T>(&self, result: &Result<T, ApiError>) {
        if let Err(ApiError::RateLimited { retry_after }) = result {
            let until = Instant::now() + (*retry_after).min(MAX_RATE_LIMIT_HOLD);
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.hold_until = Some(status.hold_until.map_or(until, |u| u.max(until)));
        }
    }

    /// `GET /users/{id}`.
    pub(crate) async fn get_user(&self, user_id: &str) -> Result<ClerkUserData, ApiError> {
        if !is_valid_id(user_id) {
            return Err(ApiError::NotFound);
        }
        if let Some(held) = self.held() {
            return Err(held);
        }
        let url = format!("{}/users/{user_id}", self.api_url);
        let result = get_with_retries(
            "users",
            &url,
            &self.secret_key,
            self.timeout,
            1024 * 1024,
            self.attempts,
        )
        .await;
        self.record(&result);
        let body = result?;
        let user: ClerkUserData =
            serde_json::from_slice(&body).map_err(|_| ApiError::InvalidBody)?;
        if user.id != user_id {
            return Err(ApiError::InvalidBody);
        }
        Ok(user)
    }
}

impl BackendApi {
    /// `GET /clients/handshake_payload?nonce=…`: the raw body of the handshake payload (the
    /// `Set-Cookie` directives of a handshake's return leg). One attempt: a browser is waiting,
    /// and the nonce is single-use.
    pub(crate) async fn handshake_payload(&self, nonce: &str) -> Result<Bytes, ApiError> {
        if let Some(held) = self.held() {
            return Err(held);
        }
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("nonce", nonce)
            .finish();
        let url = format!("{}/clients/handshake_payload?{query}", self.api_url);
        let result = get(
            "handshake_payload",
            &url,
            &self.secret_key,
            self.timeout,
            64 * 1024,
        )
        .await;
        self.record(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_holds_calls_back_for_its_retry_after_capped() {
        let api = BackendApi {
            api_url: "http://127.0.0.1:9/v1".into(),
            secret_key: SecretKey::new("sk_test_x".into()),
            timeout: Duration::from_secs(1),
            attempts: 1,
            status: Arc::default(),
        };
        assert!(api.held().is_none());
        api.record::<()>(&Err(ApiError::NotFound));
        assert!(api.held().is_none(), "only a 429 holds");
        api.record::<()>(&Err(ApiError::RateLimited {
            retry_after: Duration::from_secs(7),
        }));
        let Some(ApiError::RateLimited { retry_after }) = api.held() else {
            panic!("held after a 429");
        };
        assert!((6..=7).contains(&retry_after.as_secs()), "{retry_after:?}");
        // A shorter later Retry-After does not shorten the hold; an absurd one is capped.
        api.hold_on_rate_limit::<()>(&Err(ApiError::RateLimited {
            retry_after: Duration::from_secs(1),
        }));
        assert!(
            matches!(api.held(), Some(ApiError::RateLimited { retry_after }) if retry_after.as_secs() >= 6)
        );
        api.hold_on_rate_limit::<()>(&Err(ApiError::RateLimited {
            retry_after: Duration::from_secs(86_400),
        }));
        assert!(
            matches!(api.held(), Some(ApiError::RateLimited { retry_after }) if retry_after <= MAX_RATE_LIMIT_HOLD)
        );
    }

    #[test]
    fn secret_key_debug_is_redacted() {
        let k = SecretKey::new("sk_test_supersecretvalue".into());
        let shown = format!("{k:?}");
        assert_eq!(shown, "sk_test_[redacted]");
        assert!(!shown.contains("supersecret"));
        assert_eq!(SecretKey::new("weird".into()).redacted(), "[redacted]");
    }

    #[test]
    fn only_plain_ids_reach_a_url() {
        assert!(is_valid_id("user_2g7np7Hrk0SN6kj5EDMLDaKNL0S"));
        for bad in [
            "",
            "../jwks",
            "user_1/x",
            "user_1?x=1",
            "user%2F",
            "usér",
            &"a".repeat(129),
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn retry_after_parsing() {
        let d = Duration::from_secs(7);
        assert_eq!(parse_retry_after(Some("3"), d), Duration::from_secs(3));
        assert_eq!(parse_retry_after(Some(" 12 "), d), Duration::from_secs(12));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), d),
            d
        );
        assert_eq!(parse_retry_after(None, d), d);
    }

    #[test]
    fn invalid_secret_key_is_recognised() {
        let body: ClerkApiErrors = serde_json::from_str(
            r#"{"errors":[{"message":"m","long_message":"l","code":"clerk_key_invalid"}],"clerk_trace_id":"t"}"#,
        )
        .unwrap();
        let e = ApiError::Status {
            status: StatusCode::FORBIDDEN,
            body,
        };
        assert!(e.is_invalid_secret_key());
        assert!(!e.is_transient());
        let e = ApiError::Status {
            status: StatusCode::BAD_GATEWAY,
            body: ClerkApiErrors::default(),
        };
        assert!(e.is_transient() && !e.is_invalid_secret_key());
    }
}
