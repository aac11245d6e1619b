//! The state `MockClerk`'s endpoints share (keys, faults, counters, users, machine tokens, the
//! Frontend API's clients), and the pieces of an answer every endpoint uses.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use actix_web::{
    http::{header, StatusCode},
    HttpRequest, HttpResponse,
};
use serde_json::{json, Value};

use super::{
    keys::TEST_KEYS,
    token::{unix_now, TokenBuilder},
};

/// The endpoints `MockClerk` serves (for faults and counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /v1/jwks` (Backend API, bearer secret key).
    Jwks,
    /// `GET /.well-known/jwks.json` (Frontend API, no key).
    FrontendJwks,
    /// `GET /v1/users/{id}` (Backend API, bearer secret key).
    User,
    /// `POST /v1/api_keys/verify` (Backend API, bearer secret key).
    ApiKeysVerify,
    /// `POST /v1/m2m_tokens/verify` (Backend API, bearer secret key).
    M2mTokensVerify,
    /// `POST /v1/oauth_applications/access_tokens/verify` (Backend API, bearer secret key).
    OAuthTokensVerify,
    /// `GET /v1/client/handshake` (Frontend API, the browser's cookies): the handshake of
    /// server-rendered pages.
    ClientHandshake,
    /// `GET /v1/clients/handshake_payload` (Backend API, bearer secret key): a handshake's
    /// nonce exchanged for its `Set-Cookie` directives.
    HandshakePayload,
}

impl Endpoint {
    pub(super) const ALL: [Endpoint; 8] = [
        Self::Jwks,
        Self::FrontendJwks,
        Self::User,
        Self::ApiKeysVerify,
        Self::M2mTokensVerify,
        Self::OAuthTokensVerify,
        Self::ClientHandshake,
        Self::HandshakePayload,
    ];
    pub(super) fn index(self) -> usize {
        match self {
            Self::Jwks => 0,
            Self::FrontendJwks => 1,
            Self::User => 2,
            Self::ApiKeysVerify => 3,
            Self::M2mTokensVerify => 4,
            Self::OAuthTokensVerify => 5,
            Self::ClientHandshake => 6,
            Self::HandshakePayload => 7,
        }
    }
}

/// A fault injected into an endpoint until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and Clerk's error body.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer 200 with this body (e.g. a JWKS with no usable key, or not JSON at all).
    Body(String),
    /// Answer 429 with `Retry-After: <secs>`.
    RateLimited {
        /// The `Retry-After` seconds.
        retry_after_secs: u64,
    },
}

#[derive(Debug)]
pub(super) struct MockState {
    pub(super) secret_key: String,
    pub(super) active: AtomicUsize,
    pub(super) published: Mutex<Vec<usize>>,
    pub(super) faults: Mutex<HashMap<Endpoint, Fault>>,
    pub(super) counters: [AtomicU64; 8],
    pub(super) users: Mutex<HashMap<String, Value>>,
    /// Opaque machine tokens by secret: the object the verify endpoint answers with.
    pub(super) machine_tokens: Mutex<HashMap<String, Value>>,
    /// Machine secret keys: secret → the machine (`mch_…`) it belongs to.
    pub(super) machine_keys: Mutex<HashMap<String, String>>,
    pub(super) missing_users: Mutex<HashSet<String>>,
    /// The Frontend API of the handshake (`frontend`).
    pub(super) frontend: Mutex<FrontendState>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MockState {
    pub(super) fn jwks(&self) -> Value {
        let keys: Vec<Value> = lock(&self.published)
            .iter()
            .map(|&i| {
                let k = TEST_KEYS[i];
                json!({"use": "sig", "kty": "RSA", "kid": k.kid, "alg": "RS256", "n": k.n, "e": k.e})
            })
            .collect();
        json!({ "keys": keys })
    }

    /// A token builder signing with the active key.
    pub(super) fn token_builder(&self) -> TokenBuilder {
        TokenBuilder::with_key(TEST_KEYS[self.active.load(Ordering::SeqCst)])
    }

    /// Counts the request and applies a fault; `Some(response)` short-circuits.
    pub(super) async fn enter(&self, endpoint: Endpoint) -> Option<HttpResponse> {
        self.counters[endpoint.index()].fetch_add(1, Ordering::SeqCst);
        let fault = lock(&self.faults).get(&endpoint).cloned();
        match fault {
            None => None,
            Some(Fault::Delay(d)) => {
                actix_web::rt::time::sleep(d).await;
                None
            }
            Some(Fault::Status(code)) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Some(clerk_error(status, "injected_fault", "Injected fault"))
            }
            Some(Fault::Body(body)) => Some(
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body),
            ),
            Some(Fault::RateLimited { retry_after_secs }) => Some(
                HttpResponse::TooManyRequests()
                    .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
                    .json(clerk_errors_body("too_many_requests", "Too many requests")),
            ),
        }
    }

    pub(super) fn authorized(&self, req: &HttpRequest) -> bool {
        Self::bearer(req) == Some(self.secret_key.as_str())
    }

    /// The request's bearer credential.
    pub(super) fn bearer(req: &HttpRequest) -> Option<&str> {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    }

    /// The machine whose secret key authorizes the request, if it is one.
    pub(super) fn machine_of(&self, req: &HttpRequest) -> Option<String> {
        let bearer = Self::bearer(req)?;
        lock(&self.machine_keys).get(bearer).cloned()
    }
}

fn clerk_errors_body(code: &str, message: &str) -> Value {
    json!({
        "errors": [{"message": message, "long_message": message, "code": code, "meta": {}}],
        "meta": {},
        "clerk_trace_id": "mock_trace"
    })
}

pub(super) fn clerk_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(clerk_errors_body(code, message))
}

pub(super) fn invalid_key() -> HttpResponse {
    clerk_error(
        StatusCode::UNAUTHORIZED,
        "clerk_key_invalid",
        "The provided Clerk Secret Key is invalid.",
    )
}

pub(super) fn random_id(prefix: &str) -> String {
    let tail: String = std::iter::repeat_with(|| fastrand::digit(16))
        .take(32)
        .collect();
    format!("{prefix}{tail}")
}

/// The publishable keys of `MockClerk`'s instance: their Frontend API host is the host of the
/// tokens' issuer ([`TEST_ISSUER`]), as for a real instance.
pub(super) const MOCK_PUBLISHABLE_KEY_LIVE: &str = "pk_live_Y2xlcmsubW9jay5jbGVyay1hY3RpeC50ZXN0JA";
pub(super) const MOCK_PUBLISHABLE_KEY_TEST: &str = "pk_test_Y2xlcmsubW9jay5jbGVyay1hY3RpeC50ZXN0JA";

/// A fault of the mock Frontend API's handshake endpoint, until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrontendFault {
    /// The new session token has already expired (a Frontend API with a broken clock): the
    /// application's loop guard must stop the handshakes.
    ExpiredToken,
    /// Redirect back without a nonce (and without new cookies).
    NoPayload,
    /// Answer 500 instead of redirecting back.
    Status500,
}

/// One browser known to the mock Frontend API.
#[derive(Debug, Clone)]
pub(super) struct Client {
    pub(super) user_id: Option<String>,
    pub(super) session_id: String,
    /// `__client_uat`: when the client last signed in or out (0: never signed in).
    pub(super) uat: i64,
}

/// The mock Frontend API's state.
#[derive(Debug, Default)]
pub(crate) struct FrontendState {
    pub(super) development: bool,
    pub(super) clients: HashMap<String, Client>,
    /// Development instances identify browsers by their dev browser (`__clerk_db_jwt`).
    pub(super) dev_browsers: HashMap<String, String>,
    /// Nonce → the directives the Backend API hands over for it (single use).
    pub(super) nonces: HashMap<String, Vec<String>>,
    pub(super) fault: Option<FrontendFault>,
    /// How long the session tokens the handshake mints live (`None`: 60 s, as Clerk's do).
    pub(super) session_lifetime: Option<Duration>,
}

impl FrontendState {
    pub(crate) fn set_development(&mut self, development: bool) {
        self.development = development;
    }

    pub(crate) fn development(&self) -> bool {
        self.development
    }

    pub(crate) fn set_fault(&mut self, fault: Option<FrontendFault>) {
        self.fault = fault;
    }

    pub(crate) fn set_session_lifetime(&mut self, lifetime: Duration) {
        self.session_lifetime = Some(lifetime);
    }

    pub(crate) fn publishable_key(&self) -> &'static str {
        if self.development {
            MOCK_PUBLISHABLE_KEY_TEST
        } else {
            MOCK_PUBLISHABLE_KEY_LIVE
        }
    }

    /// Signs every client of `user_id` out (as a sign-out in another tab would).
    pub(crate) fn sign_out(&mut self, user_id: &str) {
        let now = unix_now();
        for client in self.clients.values_mut() {
            if client.user_id.as_deref() == Some(user_id) {
                client.user_id = None;
                client.uat = now;
            }
        }
    }
}
