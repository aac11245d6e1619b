//! Machine tokens (spec §5): API keys (`ak_…`), machine-to-machine tokens (`mt_…` or a JWT) and
//! OAuth access tokens (`oat_…` or an RFC 9068 JWT). [`TokenTypes`] says which a route
//! accepts; [`MachineAuth`] is a verified machine caller; the service (`Machines`) verifies
//! opaque tokens through the Backend API and JWT forms with the instance keys.
//!
//! Opaque tokens are shape-checked before any call, their answers (negative ones included) are
//! cached briefly and never past the token's expiration, concurrent checks of one token share
//! one call, and calls for tokens not seen to verify recently are rate-bounded, so random
//! `ak_…` strings cannot spend the instance's Backend API quota.

use std::{fmt, sync::Arc, time::Duration};

use serde::Serialize;
use serde_json::Value;

mod service;

#[cfg(feature = "fuzzing")]
pub(crate) use service::verdict_for_fuzzing;
pub(crate) use service::Machines;

/// The kind of a Clerk token, as Clerk's SDKs name it (`TokenType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// A session token (`session_token`): a user signed in through Clerk's frontend.
    SessionToken,
    /// An API key (`api_key`, `ak_…`), always opaque.
    ApiKey,
    /// A machine-to-machine token (`m2m_token`, `mt_…` or a JWT with a `mch_` subject).
    M2mToken,
    /// An OAuth access token issued by Clerk as an identity provider (`oauth_token`, `oat_…`
    /// or an `at+jwt` JWT).
    OAuthToken,
}

impl TokenType {
    /// Clerk's name: `session_token`, `api_key`, `m2m_token`, `oauth_token`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SessionToken => "session_token",
            Self::ApiKey => "api_key",
            Self::M2mToken => "m2m_token",
            Self::OAuthToken => "oauth_token",
        }
    }

    /// Parses Clerk's name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::SessionToken,
            Self::ApiKey,
            Self::M2mToken,
            Self::OAuthToken,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }

    const fn bit(self) -> u8 {
        match self {
            Self::SessionToken => 1,
            Self::ApiKey => 2,
            Self::M2mToken => 4,
            Self::OAuthToken => 8,
        }
    }

    /// The opaque form's prefix (`m2m_` is M2M's legacy prefix), and the verify endpoint, its
    /// path and the body field the token goes in (OAS bodies).
    fn opaque(token: &str) -> Option<Self> {
        if token.starts_with("ak_") {
            Some(Self::ApiKey)
        } else if token.starts_with("mt_") || token.starts_with("m2m_") {
            Some(Self::M2mToken)
        } else if token.starts_with("oat_") {
            Some(Self::OAuthToken)
        } else {
            None
        }
    }

    fn endpoint(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::ApiKey => ("api_keys_verify", "/api_keys/verify", "secret"),
            Self::M2mToken => ("m2m_tokens_verify", "/m2m_tokens/verify", "token"),
            _ => (
                "oauth_access_tokens_verify",
                "/oauth_applications/access_tokens/verify",
                "access_token",
            ),
        }
    }
}

impl Serialize for TokenType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The token types a route accepts (Clerk's `acceptsToken`): a set built in `const` context.
/// The default everywhere is [`SESSION`](Self::SESSION).
///
/// ```
/// use clerk_actix::machine::{TokenType, TokenTypes};
/// const API: TokenTypes = TokenTypes::API_KEY.with(TokenTypes::M2M);
/// assert!(API.accepts(TokenType::ApiKey) && !API.accepts(TokenType::SessionToken));
/// assert!(TokenTypes::ANY.accepts(TokenType::OAuthToken));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenTypes(u8);

impl TokenTypes {
    /// Session tokens only (the default).
    pub const SESSION: Self = Self(1);
    /// API keys.
    pub const API_KEY: Self = Self(2);
    /// M2M tokens, opaque or JWT.
    pub const M2M: Self = Self(4);
    /// OAuth access tokens, opaque or JWT.
    pub const OAUTH: Self = Self(8);
    /// Every machine token type, no session tokens.
    pub const MACHINE: Self = Self(2 | 4 | 8);
    /// Every token type (`"any"`).
    pub const ANY: Self = Self(1 | 2 | 4 | 8);

    /// One type.
    pub const fn only(token_type: TokenType) -> Self {
        Self(token_type.bit())
    }

    /// Both sets.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether `token_type` is in the set.
    pub const fn accepts(self, token_type: TokenType) -> bool {
        self.0 & token_type.bit() != 0
    }

    /// Whether any machine type is in the set.
    pub const fn accepts_machines(self) -> bool {
        self.0 & Self::MACHINE.0 != 0
    }

    /// The machine types of the set (sessions removed).
    pub const fn machines_only(self) -> Self {
        Self(self.0 & Self::MACHINE.0)
    }

    /// Whether a JWT-form machine type (M2M, OAuth) is in the set.
    pub(crate) const fn accepts_machine_jwts(self) -> bool {
        self.0 & (Self::M2M.0 | Self::OAUTH.0) != 0
    }
}

impl Default for TokenTypes {
    fn default() -> Self {
        Self::SESSION
    }
}

impl std::ops::BitOr for TokenTypes {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        self.with(other)
    }
}

impl fmt::Debug for TokenTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = [
            TokenType::SessionToken,
            TokenType::ApiKey,
            TokenType::M2mToken,
            TokenType::OAuthToken,
        ]
        .into_iter()
        .filter(|t| self.accepts(*t))
        .map(TokenType::as_str)
        .collect();
        write!(f, "TokenTypes({})", names.join(" | "))
    }
}

/// A verified machine caller: an API key, M2M token or OAuth access token. Cheap to clone
/// (an `Arc` inside). `Serialize` gives `{"token_type", "id", "subject", "scopes", "name",
/// "client_id"}`, never the token.
#[derive(Clone, PartialEq)]
pub struct MachineAuth(Arc<MachineInner>);

#[derive(Debug, PartialEq)]
struct MachineInner {
    token_type: TokenType,
    id: String,
    subject: String,
    scopes: Vec<String>,
    name: Option<String>,
    client_id: Option<String>,
    claims: Option<Value>,
    /// Unix milliseconds; `None` when the token does not expire.
    expiration: Option<i64>,
}

impl fmt::Debug for MachineAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineAuth")
            .field("token_type", &self.0.token_type)
            .field("id", &self.0.id)
            .field("subject", &self.0.subject)
            .field("scopes", &self.0.scopes)
            .finish_non_exhaustive()
    }
}

impl MachineAuth {
    /// API key, M2M or OAuth.
    pub fn token_type(&self) -> TokenType {
        self.0.token_type
    }
    /// The token's id (`ak_…`, `mt_…`, `oat_…`; a JWT's `jti`), safe to log.
    pub fn id(&self) -> &str {
        &self.0.id
    }
    /// Who the token acts for: `user_…` or `org_…` (API keys, OAuth), `mch_…` (machines).
    pub fn subject(&self) -> &str {
        &self.0.subject
    }
    /// The granted scopes (M2M: the machines this one may call).
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| s == scope)
    }
    /// Whether every scope in `scopes` was granted.
    pub fn has_scopes(&self, scopes: &[&str]) -> bool {
        scopes.iter().all(|s| self.has_scope(s))
    }
    /// An API key's name.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// An OAuth token's client (application) id.
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }
    /// Custom claims attached to the key or token, when any.
    pub fn claims(&self) -> Option<&Value> {
        self.0.claims.as_ref()
    }
    /// When the token expires, in Unix milliseconds (`None`: it does not).
    pub fn expiration_ms(&self) -> Option<i64> {
        self.0.expiration
    }
}

impl Serialize for MachineAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            token_type: TokenType,
            id: &'a str,
            subject: &'a str,
            scopes: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            client_id: Option<&'a str>,
        }
        Shown {
            token_type: self.0.token_type,
            id: &self.0.id,
            subject: &self.0.subject,
            scopes: &self.0.scopes,
            name: self.0.name.as_deref(),
            client_id: self.0.client_id.as_deref(),
        }
        .serialize(s)
    }
}

/// How machine tokens are verified and cached (see [`ClerkBuilder::machine_tokens`](crate::ClerkBuilder::machine_tokens)).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct MachinePolicy {
    cache_ttl: Duration,
    negative_ttl: Duration,
    capacity: u64,
    verify_rate: u32,
    verify_burst: u32,
    client_rate: u32,
    client_burst: u32,
}

impl Default for MachinePolicy {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(10),
            negative_ttl: Duration::from_secs(60),
            capacity: 10_000,
            verify_rate: 10,
            verify_burst: 20,
            client_rate: 1,
            client_burst: 5,
        }
    }
}

impl MachinePolicy {
    /// How long a verified opaque token is trusted without asking Clerk again (default 10 s,
    /// never past its expiration): a revoked key stops working within this time.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }
    /// How long a refused opaque token (unknown, revoked, expired) is refused without asking
    /// Clerk again (default 60 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }
    /// Entries of the machine-token cache (default 10 000).
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }
    /// Verify calls per second, for all clients together, for tokens that have not verified
    /// lately (default 10, bursts of 20): the ceiling under Clerk's rate limit, which the whole
    /// instance shares. Past it, such a token gets 503 `machine-verify-unavailable` with
    /// `Retry-After: 1` and no call; tokens that verified within the last hour are never held
    /// back. A call that verifies a genuine token costs nothing: only refused tokens (unknown,
    /// revoked, expired) are charged.
    pub fn unknown_token_rate(mut self, per_second: u32, burst: u32) -> Self {
        self.verify_rate = per_second.max(1);
        self.verify_burst = burst.max(1);
        self
    }
    /// The same budget per client address (default 1 per second, bursts of 5): a client
    /// sending made-up tokens spends its own budget and then no more of the global one, so it
    /// cannot keep other clients' genuine first-time tokens from being verified. The address
    /// is the peer's, or with [`trust_forwarded_headers`](crate::ClerkBuilder::trust_forwarded_headers)
    /// the last `X-Forwarded-For` entry (the one your proxy appended).
    pub fn unknown_token_rate_per_client(mut self, per_second: u32, burst: u32) -> Self {
        self.client_rate = per_second.max(1);
        self.client_burst = burst.max(1);
        self
    }
}
