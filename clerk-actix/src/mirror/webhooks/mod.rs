//! Clerk webhooks (Svix), the protocol side: [`WebhookVerifier`] checks a delivery's signature,
//! [`WebhookEvent`] is Clerk's event, and `apply` applies it to the user caches and stores. The
//! public path is `clerk_actix::webhooks` (the facade in lib.rs adds the actix endpoint,
//! `actix::webhooks`).

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use crate::base::user::ClerkUserData;
pub use crate::{base::events::WebhookOutcome, mirror::sync::DeletedUserPolicy};

mod apply;

type HmacSha256 = Hmac<Sha256>;

/// Svix's tolerance for the `svix-timestamp` header, both ways.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a delivery was refused. `reason()` is a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The signing secret is empty or not base64.
    #[error("the webhook signing secret is not a valid whsec_ secret")]
    InvalidSecret,
    /// `svix-id`, `svix-timestamp` or `svix-signature` missing or empty.
    #[error("missing or empty svix-id / svix-timestamp / svix-signature header")]
    MissingHeaders,
    /// `svix-timestamp` is not an integer.
    #[error("svix-timestamp is not a Unix time in seconds")]
    InvalidTimestamp,
    /// `svix-timestamp` is older than the tolerance.
    #[error("the message timestamp is too old")]
    TimestampTooOld,
    /// `svix-timestamp` is further in the future than the tolerance.
    #[error("the message timestamp is too far in the future")]
    TimestampTooNew,
    /// No `v1` signature in `svix-signature` matches.
    #[error("no matching signature")]
    InvalidSignature,
    /// The body is not UTF-8 JSON.
    #[error("the body is not JSON")]
    InvalidJson,
    /// The body is JSON but not a Clerk event (`type` and `data` missing or mistyped).
    #[error("the body is not a Clerk event")]
    InvalidPayload,
}

impl WebhookError {
    /// The stable code, e.g. `"invalid-signature"`.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSecret => "invalid-secret",
            Self::MissingHeaders => "missing-headers",
            Self::InvalidTimestamp => "invalid-timestamp",
            Self::TimestampTooOld => "timestamp-too-old",
            Self::TimestampTooNew => "timestamp-too-new",
            Self::InvalidSignature => "invalid-signature",
            Self::InvalidJson => "invalid-json",
            Self::InvalidPayload => "invalid-payload",
        }
    }
}

/// What a verified delivery carries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WebhookEventKind {
    /// `user.created` with the full user.
    UserCreated(ClerkUserData),
    /// `user.updated` with the full user.
    UserUpdated(ClerkUserData),
    /// `user.deleted`: the id (the schema allows it to be missing).
    UserDeleted {
        /// `user_...`.
        id: Option<String>,
    },
    /// Any other event type (`session.created`, `organization.updated`, ...).
    Other,
}

/// A verified Clerk webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    svix_id: String,
    timestamp: i64,
    occurred_at_ms: i64,
    event_type: String,
    data: Value,
    kind: WebhookEventKind,
}

impl WebhookEvent {
    /// The Svix message id (`msg_...`): the same on every retry of one message.
    pub fn svix_id(&self) -> &str {
        &self.svix_id
    }
    /// `svix-timestamp`, Unix seconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
    /// Clerk's time of the event, Unix milliseconds (the envelope's `timestamp`, else
    /// `svix-timestamp`): for a `user.deleted`, the deletion time kept in the tombstone.
    pub fn occurred_at_ms(&self) -> i64 {
        self.occurred_at_ms
    }
    /// The event type, e.g. `user.created`.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// The raw `data` object.
    pub fn data(&self) -> &Value {
        &self.data
    }
    /// The typed event.
    pub fn kind(&self) -> &WebhookEventKind {
        &self.kind
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    event_type: String,
    data: Value,
    /// Clerk's time of the event. The docs say milliseconds, the OpenAPI examples seconds.
    #[serde(default)]
    timestamp: Option<f64>,
}

/// Clerk's event time in Unix milliseconds: the envelope's `timestamp` (seconds are told from
/// milliseconds by magnitude: 10^11 ms is 1973, 10^11 s the year 5138), else `svix-timestamp`.
fn event_time_ms(envelope_timestamp: Option<f64>, svix_timestamp: i64) -> i64 {
    match envelope_timestamp.filter(|t| t.is_finite() && *t > 0.0) {
        Some(t) if t < 1e11 => (t * 1000.0) as i64,
        Some(t) => t as i64,
        None => svix_timestamp.saturating_mul(1000),
    }
}

/// Verifies Svix signatures (HMAC-SHA256 over `id.timestamp.body`, raw bytes).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
/// use clerk_actix::webhooks::WebhookVerifier;
///
/// let v = WebhookVerifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// let body = br#"{"type":"user.deleted","data":{"id":"user_1","deleted":true}}"#;
/// let sig = v.sign("msg_1", 1614265330, body);
/// let mut h = HeaderMap::new();
/// for (k, val) in [("svix-id", "msg_1"), ("svix-timestamp", "1614265330"), ("svix-signature", sig.as_str())] {
///     h.insert(HeaderName::from_static(k), HeaderValue::from_str(val).unwrap());
/// }
/// let event = v.verify_at(&h, body, UNIX_EPOCH + Duration::from_secs(1614265330)).unwrap();
/// assert_eq!(event.event_type(), "user.deleted");
/// ```
#[derive(Clone)]
pub struct WebhookVerifier {
    key: Vec<u8>,
    tolerance: Duration,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("key", &"[redacted]")
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl WebhookVerifier {
    /// From the endpoint's signing secret (`whsec_...`; the prefix is optional).
    pub fn new(secret: &str) -> Result<Self, WebhookError> {
        let secret = secret.trim();
        let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = STANDARD
            .decode(b64)
            .map_err(|_| WebhookError::InvalidSecret)?;
        if key.is_empty() {
            return Err(WebhookError::InvalidSecret);
        }
        Ok(Self {
            key,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// Changes the timestamp tolerance (default 300 s).
    #[must_use]
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `svix-signature` value for a message: `v1,<base64>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self
            .mac(msg_id, &timestamp.to_string(), body)
            .finalize()
            .into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Verifies a delivery from the values of its three headers (`svix-id`, `svix-timestamp`,
    /// `svix-signature`; `None` when absent) at time `now`: all present and non-empty, timestamp
    /// within the tolerance, any `v1` entry of the signature matching (constant-time), then the
    /// body parsed. Framework-neutral; [`verify_at`](Self::verify_at) reads an actix request's
    /// headers and calls it.
    pub fn verify_parts(
        &self,
        msg_id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<WebhookEvent, WebhookError> {
        fn present(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        let (Some(msg_id), Some(ts_text), Some(signatures)) =
            (present(msg_id), present(timestamp), present(signatures))
        else {
            return Err(WebhookError::MissingHeaders);
        };
        let timestamp: i64 = ts_text
            .parse()
            .map_err(|_| WebhookError::InvalidTimestamp)?;
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let tolerance = self.tolerance.as_secs() as i64;
        if timestamp < now_s.saturating_sub(tolerance) {
            return Err(WebhookError::TimestampTooOld);
        }
        if timestamp > now_s.saturating_add(tolerance) {
            return Err(WebhookError::TimestampTooNew);
        }
        let mac = self.mac(msg_id, ts_text, body);
        let matched = signatures
            .split(' ')
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .filter_map(|(_, sig)| STANDARD.decode(sig).ok())
            .any(|sig| mac.clone().verify_slice(&sig).is_ok());
        if !matched {
            return Err(WebhookError::InvalidSignature);
        }
        let json: Value = serde_json::from_slice(body).map_err(|_| WebhookError::InvalidJson)?;
        let envelope: Envelope =
            serde_json::from_value(json).map_err(|_| WebhookError::InvalidPayload)?;
        let kind = match envelope.event_type.as_str() {
            "user.created" | "user.updated" => {
                let user: ClerkUserData = serde_json::from_value(envelope.data.clone())
                    .map_err(|_| WebhookError::InvalidPayload)?;
                if envelope.event_type == "user.created" {
                    WebhookEventKind::UserCreated(user)
                } else {
                    WebhookEventKind::UserUpdated(user)
                }
            }
            "user.deleted" => WebhookEventKind::UserDeleted {
                id: envelope
                    .data
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
            _ => WebhookEventKind::Other,
        };
        Ok(WebhookEvent {
            svix_id: msg_id.to_owned(),
            timestamp,
            occurred_at_ms: event_time_ms(envelope.timestamp, timestamp),
            event_type: envelope.event_type,
            data: envelope.data,
            kind,
        })
    }
}

/// Webhook settings held by [`Clerk`].
#[derive(Debug)]
pub(crate) struct Webhooks {
    pub(crate) verifier: WebhookVerifier,
    pub(crate) deleted_policy: DeletedUserPolicy,
    /// Applied `svix-id`s (a replay answers 200 and changes nothing).
    pub(crate) seen: moka::sync::Cache<String, ()>,
}

impl Webhooks {
    pub(crate) fn new(verifier: WebhookVerifier, deleted_policy: DeletedUserPolicy) -> Self {
        Self {
            verifier,
            deleted_policy,
            seen: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
        }
    }
}
