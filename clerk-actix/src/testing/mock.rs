//! `MockClerk`: a real HTTP server on 127.0.0.1 that speaks the parts of Clerk's Backend API
//! and Frontend API this crate uses, with key rotation, injected faults and request counters.

use std::{
    collections::{HashMap, HashSet},
    io,
    net::{SocketAddr, TcpListener},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    thread::JoinHandle,
    time::Duration,
};

use actix_web::{
    dev::ServerHandle,
    http::{header, StatusCode},
    web, App, HttpRequest, HttpResponse, HttpServer,
};
use serde_json::{json, Value};

use super::{
    keys::{TestKey, TEST_KEYS},
    token::{unix_now, TokenBuilder, TEST_AUTHORIZED_PARTY, TEST_ISSUER},
    webhook::{WebhookDelivery, MOCK_WEBHOOK_SECRET},
};
use crate::config::{Clerk, ClerkBuilder};

/// The endpoints `MockClerk` serves (for faults and counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /v1/jwks` (Backend API, bearer secret key).
    Jwks,
    /// `GET /.well-known/jwks.json` (Frontend API, no key).
    FrontendJwks,
    /// `GET /v1/users/{id}` (Backend API, bearer secret key).
    User,
}

impl Endpoint {
    const ALL: [Endpoint; 3] = [Self::Jwks, Self::FrontendJwks, Self::User];
    fn index(self) -> usize {
        match self {
            Self::Jwks => 0,
            Self::FrontendJwks => 1,
            Self::User => 2,
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
struct MockState {
    secret_key: String,
    active: AtomicUsize,
    published: Mutex<Vec<usize>>,
    faults: Mutex<HashMap<Endpoint, Fault>>,
    counters: [AtomicU64; 3],
    users: Mutex<HashMap<String, Value>>,
    missing_users: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MockState {
    fn jwks(&self) -> Value {
        let keys: Vec<Value> = lock(&self.published)
            .iter()
            .map(|&i| {
                let k = TEST_KEYS[i];
                json!({"use": "sig", "kty": "RSA", "kid": k.kid, "alg": "RS256", "n": k.n, "e": k.e})
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Counts the request and applies a fault; `Some(response)` short-circuits.
    async fn enter(&self, endpoint: Endpoint) -> Option<HttpResponse> {
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

    fn authorized(&self, req: &HttpRequest) -> bool {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            == Some(self.secret_key.as_str())
    }
}

fn clerk_errors_body(code: &str, message: &str) -> Value {
    json!({
        "errors": [{"message": message, "long_message": message, "code": code, "meta": {}}],
        "meta": {},
        "clerk_trace_id": "mock_trace"
    })
}

fn clerk_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(clerk_errors_body(code, message))
}

fn invalid_key() -> HttpResponse {
    clerk_error(
        StatusCode::UNAUTHORIZED,
        "clerk_key_invalid",
        "The provided Clerk Secret Key is invalid.",
    )
}

async fn backend_jwks(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    if let Some(res) = state.enter(Endpoint::Jwks).await {
        return res;
    }
    if !state.authorized(&req) {
        return invalid_key();
    }
    HttpResponse::Ok().json(state.jwks())
}

async fn frontend_jwks(state: web::Data<MockState>) -> HttpResponse {
    if let Some(res) = state.enter(Endpoint::FrontendJwks).await {
        return res;
    }
    HttpResponse::Ok().json(state.jwks())
}

async fn user(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<MockState>,
) -> HttpResponse {
    if let Some(res) = state.enter(Endpoint::User).await {
        return res;
    }
    if !state.authorized(&req) {
        return invalid_key();
    }
    let id = id.into_inner();
    if lock(&state.missing_users).contains(&id) || !id.starts_with("user_") {
        return clerk_error(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            "Resource not found",
        );
    }
    let user = lock(&state.users)
        .get(&id)
        .cloned()
        .unwrap_or_else(|| mock_user_json(&id));
    HttpResponse::Ok().json(user)
}

/// A realistic Backend API user object (spec §6.2 shape, times in Unix milliseconds) for `id`:
/// primary email `<rest-of-id>@example.com` (lowercased), names derived from the id.
pub fn mock_user_json(id: &str) -> Value {
    let local = id.trim_start_matches("user_").to_ascii_lowercase();
    let email_id = format!("idn_{local}");
    let ms = unix_now() * 1000;
    json!({
        "object": "user",
        "id": id,
        "external_id": null,
        "primary_email_address_id": email_id,
        "primary_phone_number_id": null,
        "primary_web3_wallet_id": null,
        "username": local,
        "first_name": "Test",
        "last_name": format!("User {local}"),
        "image_url": format!("https://img.clerk.com/mock/{local}.png"),
        "has_image": true,
        "public_metadata": {},
        "private_metadata": {},
        "unsafe_metadata": {},
        "email_addresses": [{
            "id": email_id,
            "object": "email_address",
            "email_address": format!("{local}@example.com"),
            "reserved": false,
            "verification": {"status": "verified", "strategy": "email_code", "attempts": 1, "expire_at": null},
            "linked_to": [],
            "created_at": ms,
            "updated_at": ms
        }],
        "phone_numbers": [],
        "web3_wallets": [],
        "passkeys": [],
        "password_enabled": true,
        "two_factor_enabled": false,
        "totp_enabled": false,
        "backup_code_enabled": false,
        "mfa_enabled_at": null,
        "mfa_disabled_at": null,
        "external_accounts": [],
        "saml_accounts": [],
        "enterprise_accounts": [],
        "organization_memberships": [],
        "last_sign_in_at": ms,
        "banned": false,
        "locked": false,
        "deprovisioned": false,
        "lockout_expires_in_seconds": null,
        "verification_attempts_remaining": 100,
        "created_at": ms,
        "updated_at": ms,
        "delete_self_enabled": true,
        "create_organization_enabled": true,
        "create_organizations_limit": null,
        "last_active_at": (ms / 86_400_000) * 86_400_000,
        "legal_accepted_at": null,
        "bypass_client_trust": false
    })
}

/// A mock Clerk instance on `127.0.0.1:<random port>`, running on its own thread with its own
/// actix system, stopped when dropped.
///
/// ```
/// use clerk_actix::testing::{Endpoint, MockClerk};
/// let mock = MockClerk::start();
/// let clerk = mock.clerk_builder().build().unwrap();
/// let token = mock.token().subject("user_42").build();
/// assert_eq!(mock.requests(Endpoint::Jwks), 0);
/// # let _ = (clerk, token);
/// ```
#[derive(Debug)]
pub struct MockClerk {
    addr: SocketAddr,
    state: web::Data<MockState>,
    handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// The secret key `MockClerk` accepts.
pub const MOCK_SECRET_KEY: &str = "sk_test_mock_clerk_actix_0000000000000000";

impl MockClerk {
    /// Starts the server; panics with a clear message if no loopback port can be bound
    /// (use [`try_start`](Self::try_start) to handle that).
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(mock) => mock,
            Err(e) => panic!("MockClerk could not start on 127.0.0.1: {e}"),
        }
    }

    /// Starts the server.
    pub fn try_start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = web::Data::new(MockState {
            secret_key: MOCK_SECRET_KEY.to_owned(),
            active: AtomicUsize::new(0),
            published: Mutex::new(vec![0]),
            faults: Mutex::new(HashMap::new()),
            counters: Default::default(),
            users: Mutex::new(HashMap::new()),
            missing_users: Mutex::new(HashSet::new()),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let server_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("mock-clerk".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(server_state.clone())
                            .route("/v1/jwks", web::get().to(backend_jwks))
                            .route("/.well-known/jwks.json", web::get().to(frontend_jwks))
                            .route("/v1/users/{id}", web::get().to(user))
                    })
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen(listener)?
                    .run();
                    let _ = tx.send(server.handle());
                    server.await
                })
            })?;
        let handle = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| io::Error::other("MockClerk server did not start"))?;
        Ok(Self {
            addr,
            state,
            handle,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Backend API base URL to configure: `http://127.0.0.1:<port>/v1`.
    pub fn api_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// The secret key the mock accepts.
    pub fn secret_key(&self) -> &str {
        &self.state.secret_key
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &'static str {
        TEST_ISSUER
    }

    /// A builder configured for this mock: secret key, API URL, the test `azp` and the webhook
    /// signing secret.
    pub fn clerk_builder(&self) -> ClerkBuilder {
        Clerk::builder()
            .secret_key(self.secret_key())
            .api_url(self.api_url())
            .authorized_parties([TEST_AUTHORIZED_PARTY])
            .webhook_signing_secret(MOCK_WEBHOOK_SECRET)
    }

    /// A signed webhook delivery, as Clerk (through Svix) would send it: `data` is e.g.
    /// [`mock_user_json`] for `user.created` / `user.updated`, or `{"id": .., "deleted": true}`.
    pub fn webhook(&self, event_type: &str, data: Value) -> WebhookDelivery {
        WebhookDelivery::new(MOCK_WEBHOOK_SECRET, event_type, data)
    }

    /// The key currently used to sign tokens.
    pub fn active_key(&self) -> TestKey {
        TEST_KEYS[self.state.active.load(Ordering::SeqCst)]
    }

    /// A token builder signing with the active key.
    pub fn token(&self) -> TokenBuilder {
        TokenBuilder::with_key(self.active_key())
    }

    /// Rotates: the next test key is published and becomes the signing key; old keys stay
    /// published until [`publish_only_active`](Self::publish_only_active).
    pub fn rotate_keys(&self) -> TestKey {
        let next = (self.state.active.load(Ordering::SeqCst) + 1) % TEST_KEYS.len();
        {
            let mut published = lock(&self.state.published);
            if !published.contains(&next) {
                published.push(next);
            }
        }
        self.state.active.store(next, Ordering::SeqCst);
        TEST_KEYS[next]
    }

    /// Stops publishing every key but the active one.
    pub fn publish_only_active(&self) {
        *lock(&self.state.published) = vec![self.state.active.load(Ordering::SeqCst)];
    }

    /// The JWKS the mock currently serves.
    pub fn jwks_json(&self) -> String {
        self.state.jwks().to_string()
    }

    /// Injects a fault into an endpoint until cleared.
    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault) {
        lock(&self.state.faults).insert(endpoint, fault);
    }

    /// Clears the fault of an endpoint.
    pub fn clear_fault(&self, endpoint: Endpoint) {
        lock(&self.state.faults).remove(&endpoint);
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Requests received by an endpoint (faulted ones included).
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.state.counters[endpoint.index()].load(Ordering::SeqCst)
    }

    /// Resets every request counter to zero.
    pub fn reset_counters(&self) {
        for e in Endpoint::ALL {
            self.state.counters[e.index()].store(0, Ordering::SeqCst);
        }
    }

    /// Serves this user object (must have an `id`) from `/v1/users/{id}`.
    pub fn set_user(&self, user: Value) {
        if let Some(id) = user.get("id").and_then(Value::as_str) {
            let id = id.to_owned();
            lock(&self.state.missing_users).remove(&id);
            lock(&self.state.users).insert(id, user);
        }
    }

    /// Makes `/v1/users/{id}` answer 404.
    pub fn remove_user(&self, id: &str) {
        lock(&self.state.users).remove(id);
        lock(&self.state.missing_users).insert(id.to_owned());
    }
}

impl Drop for MockClerk {
    fn drop(&mut self) {
        // The stop command is sent eagerly; the returned future only waits for completion.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
