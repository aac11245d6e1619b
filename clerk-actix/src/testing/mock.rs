//! `MockClerk`: a real HTTP server on 127.0.0.1 that speaks the parts of Clerk's Backend API
//! and Frontend API this crate uses, with key rotation, injected faults and request counters.

use std::{
    collections::{HashMap, HashSet},
    io,
    net::{SocketAddr, TcpListener},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use actix_web::{
    dev::ServerHandle, http::StatusCode, web, App, HttpRequest, HttpResponse, HttpServer,
};
use serde_json::{json, Value};

use super::{
    frontend,
    keys::{TestKey, TEST_KEYS},
    state::{clerk_error, invalid_key, lock, random_id, Endpoint, Fault, FrontendFault, MockState},
    token::{unix_now, TokenBuilder, TEST_AUTHORIZED_PARTY, TEST_ISSUER},
    webhook::{WebhookDelivery, MOCK_WEBHOOK_SECRET},
};
use crate::config::{Clerk, ClerkBuilder};

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

/// `POST /v1/{api_keys,m2m_tokens,oauth_applications/access_tokens}/verify`: the token in the
/// OAS body field; 404 for an unknown token (or one of another type), else the object with
/// its current `revoked` / `expired`.
async fn verify(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<MockState>,
    endpoint: Endpoint,
) -> HttpResponse {
    if let Some(res) = state.enter(endpoint).await {
        return res;
    }
    // M2M tokens may also be verified with a machine's secret key (Clerk's `machineSecretKey`):
    // then only tokens granted access to that machine verify (Clerk's documentation: "the
    // token must be granted access to the Machine associated with the Machine Secret Key");
    // others are answered as unknown (404: the status is the mock's assumption).
    let machine = match endpoint {
        Endpoint::M2mTokensVerify => state.machine_of(&req),
        _ => None,
    };
    if machine.is_none() && !state.authorized(&req) {
        return invalid_key();
    }
    let (field, object) = match endpoint {
        Endpoint::ApiKeysVerify => ("secret", "api_key"),
        Endpoint::M2mTokensVerify => ("token", "machine_to_machine_token"),
        _ => ("access_token", "clerk_idp_oauth_access_token"),
    };
    let Some(token) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get(field).and_then(Value::as_str).map(str::to_owned))
    else {
        return clerk_error(
            StatusCode::BAD_REQUEST,
            "form_param_missing",
            "Missing token",
        );
    };
    let found = lock(&state.machine_tokens)
        .get(&token)
        .filter(|o| o["object"] == object)
        .filter(|o| {
            machine.as_ref().is_none_or(|m| {
                o["scopes"]
                    .as_array()
                    .is_some_and(|scopes| scopes.iter().any(|s| s == m.as_str()))
            })
        })
        .cloned();
    match found {
        None => clerk_error(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            "Token not found",
        ),
        Some(mut o) => {
            let expiration = o["expiration"].as_i64();
            if expiration.is_some_and(|e| e <= unix_now() * 1000) {
                o["expired"] = true.into();
            }
            HttpResponse::Ok().json(o)
        }
    }
}

/// A random opaque secret: `prefix` and 32 alphanumerics.
fn random_secret(prefix: &str) -> String {
    let tail: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(32)
        .collect();
    format!("{prefix}{tail}")
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
            machine_tokens: Mutex::new(HashMap::new()),
            machine_keys: Mutex::new(HashMap::new()),
            missing_users: Mutex::new(HashSet::new()),
            frontend: Mutex::default(),
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
                            .route(
                                "/v1/clients/handshake_payload",
                                web::get().to(frontend::handshake_payload),
                            )
                            .route("/v1/client/handshake", web::get().to(frontend::handshake))
                            .route("/v1/client/sign_in", web::get().to(frontend::sign_in))
                            .route(
                                "/v1/api_keys/verify",
                                web::post().to(|r, b, s| verify(r, b, s, Endpoint::ApiKeysVerify)),
                            )
                            .route(
                                "/v1/m2m_tokens/verify",
                                web::post()
                                    .to(|r, b, s| verify(r, b, s, Endpoint::M2mTokensVerify)),
                            )
                            .route(
                                "/v1/oauth_applications/access_tokens/verify",
                                web::post()
                                    .to(|r, b, s| verify(r, b, s, Endpoint::OAuthTokensVerify)),
                            )
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

    /// Stores a new opaque machine token: the fields every verify answer shares (`id`, scopes,
    /// not revoked or expired, times; `expiration` in `expires_in_secs`, none when `None`) plus
    /// the type's own `fields`. Returns its secret.
    fn add_machine_token(
        &self,
        prefix: &str,
        scopes: &[&str],
        expires_in_secs: Option<i64>,
        fields: Value,
    ) -> String {
        let secret = random_secret(prefix);
        let now = unix_now() * 1000;
        let mut object = json!({
            "id": random_id(prefix), "scopes": scopes, "claims": null, "revoked": false,
            "revocation_reason": null, "expired": false,
            "expiration": expires_in_secs.map(|secs| now + secs * 1000),
            "created_at": now, "updated_at": now,
        });
        if let (Some(object), Value::Object(fields)) = (object.as_object_mut(), fields) {
            object.extend(fields);
        }
        lock(&self.state.machine_tokens).insert(secret.clone(), object);
        secret
    }

    /// Creates an API key for `subject` (`user_…` or `org_…`) with `scopes`, valid until
    /// revoked; returns its secret (`ak_…`), to send as `Authorization: Bearer <secret>`.
    pub fn create_api_key(&self, subject: &str, name: &str, scopes: &[&str]) -> String {
        self.add_machine_token(
            "ak_",
            scopes,
            None,
            json!({
                "object": "api_key", "type": "api_key", "subject": subject, "name": name,
                "description": null, "created_by": null, "last_used_at": null,
            }),
        )
    }

    /// Creates an opaque M2M token for machine `machine_id` (`mch_…`) that may call the
    /// machines in `scopes`, expiring in `expires_in_secs`; returns its secret (`mt_…`).
    pub fn create_m2m_token(
        &self,
        machine_id: &str,
        scopes: &[&str],
        expires_in_secs: i64,
    ) -> String {
        self.add_machine_token(
            "mt_",
            scopes,
            Some(expires_in_secs),
            json!({
                "object": "machine_to_machine_token", "subject": machine_id,
                "last_used_at": null,
            }),
        )
    }

    /// Creates an opaque OAuth access token of client `client_id` for `user_id` with
    /// `scopes`, expiring in `expires_in_secs`; returns it (`oat_…`).
    pub fn create_oauth_token(
        &self,
        client_id: &str,
        user_id: &str,
        scopes: &[&str],
        expires_in_secs: i64,
    ) -> String {
        self.add_machine_token(
            "oat_",
            scopes,
            Some(expires_in_secs),
            json!({
                "object": "clerk_idp_oauth_access_token", "client_id": client_id,
                "subject": user_id,
            }),
        )
    }

    /// Creates a secret key for machine `machine_id` (`mch_…`), as the dashboard does; returns
    /// it (`ak_…`). Verifying an M2M token with it (`ClerkBuilder::machine_secret_key`) accepts
    /// only tokens whose scopes include `machine_id`.
    pub fn create_machine_secret_key(&self, machine_id: &str) -> String {
        let secret = random_secret("ak_");
        lock(&self.state.machine_keys).insert(secret.clone(), machine_id.to_owned());
        secret
    }

    /// Revokes an opaque machine token: the verify endpoint answers `revoked: true`.
    pub fn revoke_machine_token(&self, secret: &str) {
        if let Some(o) = lock(&self.state.machine_tokens).get_mut(secret) {
            o["revoked"] = true.into();
            o["revocation_reason"] = "revoked in a test".into();
        }
    }

    /// Expires an opaque machine token now: the verify endpoint answers `expired: true`.
    pub fn expire_machine_token(&self, secret: &str) {
        if let Some(o) = lock(&self.state.machine_tokens).get_mut(secret) {
            o["expired"] = true.into();
            o["expiration"] = (unix_now() * 1000 - 1000).into();
        }
    }

    /// A JWT-form M2M token (spec §5.3) signed with the active key: `sub` = `machine_id`,
    /// `jti` = `mt_…`, space-separated `scopes`, header `cat` = M2M, `exp` in
    /// `expires_in_secs` (negative for an expired one).
    pub fn m2m_jwt(&self, machine_id: &str, scopes: &[&str], expires_in_secs: i64) -> String {
        self.token()
            .subject(machine_id)
            .without_claim("sid")
            .without_claim("azp")
            .header("cat", crate::tokens::verify::CATEGORY_M2M)
            .claim("aud", json!(scopes))
            .claim("jti", random_id("mt_"))
            .claim("scopes", scopes.join(" "))
            .expires_in(expires_in_secs)
            .build()
    }

    /// A JWT-form OAuth access token (RFC 9068, `typ: at+jwt`) signed with the active key, of
    /// client `client_id` for `user_id`, with a space-separated `scope`.
    pub fn oauth_jwt(
        &self,
        client_id: &str,
        user_id: &str,
        scopes: &[&str],
        expires_in_secs: i64,
    ) -> String {
        self.token()
            .subject(user_id)
            .without_claim("sid")
            .without_claim("azp")
            .header("typ", "at+jwt")
            .claim("client_id", client_id)
            .claim("jti", random_id("oat_"))
            .claim("scope", scopes.join(" "))
            .expires_in(expires_in_secs)
            .build()
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

    /// A builder configured for this mock: secret key, API URL, the test `azp`, the webhook
    /// signing secret, and for the handshake the publishable key and the mock's Frontend API
    /// as the proxy URL (call [`set_development`](Self::set_development) first for a
    /// development instance).
    pub fn clerk_builder(&self) -> ClerkBuilder {
        Clerk::builder()
            .secret_key(self.secret_key())
            .api_url(self.api_url())
            .authorized_parties([TEST_AUTHORIZED_PARTY])
            .webhook_signing_secret(MOCK_WEBHOOK_SECRET)
            .publishable_key(self.publishable_key())
            .proxy_url(self.url())
    }

    /// The instance's publishable key: `pk_live_…` (production, the default) or, after
    /// [`set_development(true)`](Self::set_development), `pk_test_…`. Its Frontend API host
    /// is the tokens' issuer host; browsers reach the mock's Frontend API at
    /// [`url`](Self::url), which is what [`clerk_builder`](Self::clerk_builder) configures
    /// as the proxy URL.
    pub fn publishable_key(&self) -> &'static str {
        lock(&self.state.frontend).publishable_key()
    }

    /// Makes the mock a development instance (`pk_test_`): its Frontend API identifies
    /// browsers by their dev browser (`__clerk_db_jwt`) and sends the handshake's nonce back
    /// in the URL. Production (the default) uses the `__client` cookie and a nonce cookie.
    pub fn set_development(&self, development: bool) {
        lock(&self.state.frontend).set_development(development);
    }

    /// Whether the mock is a development instance.
    pub fn is_development(&self) -> bool {
        lock(&self.state.frontend).development()
    }

    /// The mock's sign-in page for a browser: visiting it signs the browser in as `user_id` at
    /// the mock Frontend API (its `__client` cookie) and redirects to `redirect_url`, where the
    /// application's handshake picks the session up. Without a user id
    /// (`sign_in_url("", …)`), the page asks for one.
    pub fn sign_in_url(&self, user_id: &str, redirect_url: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if !user_id.is_empty() {
            query.append_pair("user", user_id);
        }
        query.append_pair("redirect_url", redirect_url);
        format!("{}/v1/client/sign_in?{}", self.url(), query.finish())
    }

    /// Signs every browser of `user_id` out at the mock Frontend API (as signing out in another
    /// tab would): the next handshake clears their session cookies.
    pub fn sign_out(&self, user_id: &str) {
        lock(&self.state.frontend).sign_out(user_id);
    }

    /// Makes the mock Frontend API's handshake endpoint misbehave until cleared (`None`).
    pub fn set_frontend_fault(&self, fault: Option<FrontendFault>) {
        lock(&self.state.frontend).set_fault(fault);
    }

    /// How long the session tokens the mock Frontend API's handshake mints live (60 s by
    /// default, as Clerk's do). A short lifetime lets a test (or a demo) watch the handshake
    /// refresh an expired `__session` cookie without waiting a minute; the application still
    /// accepts a token up to its clock skew (5 s) past its expiry.
    pub fn set_session_token_lifetime(&self, lifetime: Duration) {
        lock(&self.state.frontend).set_session_lifetime(lifetime);
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
