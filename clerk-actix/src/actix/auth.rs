//! From an actix request to an [`AuthState`]: find the token (header, else cookie), hand it to
//! the session service (`session::Sessions`), and apply the request-level rules (a refused
//! cookie signs out, pending sessions).

use std::net::IpAddr;

use actix_web::{http::header, HttpRequest};

use crate::{
    actix::extract::{AuthState, ClerkSession},
    base::error::{AuthError, AuthErrorKind, AuthErrorReason as R},
    base::events::TokenCarrier,
    config::Clerk,
    machine::{MachineAuth, Machines, TokenType, TokenTypes},
};

/// The session cookie Clerk's frontend SDKs set on the app's domain.
pub const SESSION_COOKIE: &str = "__session";

/// Finds the session token: `Authorization: Bearer <token>` (scheme case-insensitive; a value
/// without a scheme is taken whole, as Clerk's SDK does), else the `__session` cookie.
/// A header with non-visible-ASCII bytes is refused rather than ignored.
pub(crate) fn find_token<'r>(
    req: &'r HttpRequest,
    accept_cookie: bool,
) -> Result<Option<(TokenSlice<'r>, TokenCarrier)>, AuthError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        // Bytes first: this runs on every request, and the token is most of the header.
        let bytes = value.as_bytes().trim_ascii();
        let token =
            if bytes.len() > 7 && bytes[..6].eq_ignore_ascii_case(b"bearer") && bytes[6] == b' ' {
                Some(bytes[7..].trim_ascii_start())
            } else if bytes.eq_ignore_ascii_case(b"bearer") || bytes.contains(&b' ') {
                // "Bearer" alone carries no token; another scheme is not a Clerk token.
                None
            } else {
                Some(bytes)
            };
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            let token = std::str::from_utf8(token).map_err(|_| {
                AuthError::new(
                    R::TokenInvalid,
                    "the Authorization header is not valid UTF-8",
                )
            })?;
            return Ok(Some((TokenSlice::Borrowed(token), TokenCarrier::Header)));
        }
    }
    if accept_cookie {
        if let Some(cookie) = req.cookie(SESSION_COOKIE) {
            let value = cookie.value().trim_ascii();
            if !value.is_empty() {
                return Ok(Some((
                    TokenSlice::Owned(value.to_owned()),
                    TokenCarrier::Cookie,
                )));
            }
        }
    }
    Ok(None)
}

/// A token borrowed from a header or copied out of a cookie.
#[derive(Debug)]
pub(crate) enum TokenSlice<'r> {
    Borrowed(&'r str),
    Owned(String),
}

impl TokenSlice<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(s) => s,
            Self::Owned(s) => s,
        }
    }
}

impl Clerk {
    /// Authenticates a request as the middleware does: `Ok(None)` when it carries no token,
    /// `Ok(Some(session))` for a valid session token, `Err` for an invalid one (never
    /// downgraded to anonymous) or when Clerk cannot be reached.
    ///
    /// With pending sessions treated as signed out (the default), a pending session is an
    /// `Err` with reason `session-pending`.
    pub async fn authenticate_request(
        &self,
        req: &HttpRequest,
    ) -> Result<Option<ClerkSession>, AuthError> {
        match self.auth_state(req, TokenTypes::SESSION, false).await? {
            AuthState::Anonymous => Ok(None),
            state => state.require_session().cloned().map(Some),
        }
    }

    /// The middleware's decision for a request: anonymous, authenticated (a session or, where
    /// `accepts` allows, a machine token), pending (when pending sessions are treated as signed
    /// out), or signed out by an invalid cookie. `Err` for an invalid `Authorization` token, a
    /// token of a type `accepts` leaves out (`token-type-mismatch`, before any verification),
    /// and outages.
    ///
    /// With `defer`, a machine token of a type `accepts` leaves out is not refused here but
    /// becomes [`AuthState::NotAccepted`], unreported, for the handler's guard to accept
    /// (`#[clerk_protected(accepts_token = ...)]`) or an extractor to refuse (and report).
    pub(crate) async fn auth_state(
        &self,
        req: &HttpRequest,
        accepts: TokenTypes,
        defer: bool,
    ) -> Result<AuthState, AuthError> {
        let sessions = accepts.accepts(TokenType::SessionToken);
        // Machine tokens come only from the header: a route that takes no sessions reads no cookie.
        let accept_cookie = sessions && self.inner.http.accept_cookie;
        let Some((token, carrier)) = find_token(req, accept_cookie)? else {
            return Ok(AuthState::Anonymous);
        };
        // The client's address matters only to a machine token's verify budget.
        let client = if carrier == TokenCarrier::Header && accepts != TokenTypes::SESSION {
            self.client_addr(req)
        } else {
            None
        };
        self.token_state(token.as_str(), carrier, accepts, defer, client)
            .await
    }

    /// The warm path, decided without a future: `Some(Authenticated)` for a request whose
    /// session token (header or cookie) is cached, unrevoked and not a pending session treated
    /// as signed out; `Some(Machine)` for an opaque machine token of an accepted type whose
    /// accepted answer is cached — reported as [`auth_state`](Self::auth_state) reports them.
    /// `None` for everything else (no token, a miss, a refused or mismatched token, ...), which
    /// `auth_state` decides and reports.
    pub(crate) fn cached_auth_state(
        &self,
        req: &HttpRequest,
        accepts: TokenTypes,
    ) -> Option<AuthState> {
        let (token, carrier) = find_token(req, self.inner.http.accept_cookie).ok()??;
        if accepts != TokenTypes::SESSION && carrier == TokenCarrier::Header {
            if let Some(token_type) = Machines::opaque_type(token.as_str()) {
                // A type this route leaves out is refused (and reported) by `auth_state`.
                if !accepts.accepts(token_type) {
                    return None;
                }
                return self
                    .inner
                    .machines
                    .cached_opaque(token.as_str())
                    .map(AuthState::Machine);
            }
        }
        if !accepts.accepts(TokenType::SessionToken) {
            return None;
        }
        let sessions = &self.inner.sessions;
        let session = sessions.peek_cached(token.as_str(), carrier)?;
        if session.is_pending() && self.inner.http.treat_pending_as_signed_out {
            return None;
        }
        sessions.report_cached(&session);
        Some(AuthState::Authenticated(session))
    }

    /// The client's address, for per-client budgets: the peer's, or with
    /// [`trust_forwarded_headers`](crate::ClerkBuilder::trust_forwarded_headers) the last
    /// `X-Forwarded-For` entry (the one the app's own proxy appended; earlier ones are the
    /// client's to choose).
    pub(crate) fn client_addr(&self, req: &HttpRequest) -> Option<IpAddr> {
        if self.inner.http.trust_forwarded_headers {
            let forwarded = req
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|v| v.trim().parse::<IpAddr>().ok())
                .last();
            if forwarded.is_some() {
                return forwarded;
            }
        }
        req.peer_addr().map(|addr| addr.ip())
    }

    /// [`auth_state`](Self::auth_state) for a token already found.
    pub(crate) async fn token_state(
        &self,
        token: &str,
        carrier: TokenCarrier,
        accepts: TokenTypes,
        defer: bool,
        client: Option<IpAddr>,
    ) -> Result<AuthState, AuthError> {
        let header = carrier == TokenCarrier::Header;
        if header && accepts != TokenTypes::SESSION {
            match self.machine_state(token, accepts, defer, client).await {
                Ok(Some(machine)) => return Ok(machine),
                Ok(None) => {}
                Err(err) if defer && err.reason() == R::TokenTypeMismatch => {
                    return Ok(AuthState::NotAccepted(err));
                }
                Err(err) => return Err(err),
            }
        }
        let session = match self.inner.sessions.authenticate(token, carrier).await {
            Ok(session) => session,
            // A machine token (or a JWT of another category) on a session route.
            Err(err) if err.reason() == R::TokenTypeMismatch && header => {
                if defer {
                    return Ok(AuthState::NotAccepted(err));
                }
                return Err(self.report_refused(err, token));
            }
            // A refused cookie (an idle tab's expired token, ...) signs the request out; an
            // outage stays an error (503), never a silent sign-out.
            Err(err)
                if carrier == TokenCarrier::Cookie && err.kind() == AuthErrorKind::InvalidToken =>
            {
                let err = if err.reason() == R::TokenTypeMismatch {
                    self.report_refused(err, token)
                } else {
                    err
                };
                return Ok(AuthState::SignedOut(err));
            }
            Err(err) => return Err(err),
        };
        if session.is_pending() && self.inner.http.treat_pending_as_signed_out {
            return Ok(AuthState::Pending(session));
        }
        Ok(AuthState::Authenticated(session))
    }

    /// A header token on a route that accepts more than sessions: a machine token of an
    /// accepted type verified (opaque through the Backend API, JWT with the instance keys), a
    /// token of a type not accepted refused with `token-type-mismatch` before any call, or
    /// `None` for a session token the route accepts (verified by the session path).
    ///
    /// With `defer`, a type mismatch is returned unreported (the caller defers it).
    async fn machine_state(
        &self,
        token: &str,
        accepts: TokenTypes,
        defer: bool,
        client: Option<IpAddr>,
    ) -> Result<Option<AuthState>, AuthError> {
        let machines = &self.inner.machines;
        let mismatch = |t: TokenType| {
            let err = AuthError::new(R::TokenTypeMismatch, mismatch_detail(t));
            if defer {
                err
            } else {
                machines.failed(err, token)
            }
        };
        if let Some(token_type) = Machines::opaque_type(token) {
            if !accepts.accepts(token_type) {
                return Err(mismatch(token_type));
            }
            return machines
                .verify_opaque(token, token_type, client)
                .await
                .map(|m| Some(AuthState::Machine(m)));
        }
        let sessions = accepts.accepts(TokenType::SessionToken);
        if sessions && !accepts.accepts_machine_jwts() {
            return Ok(None);
        }
        // A cached session token is known to be one: no decoding.
        if sessions && self.inner.sessions.is_cached(token) {
            return Ok(None);
        }
        let decoded = match self.inner.sessions.verifier.decode(token) {
            Ok(decoded) => decoded,
            Err(err) => return Err(machines.failed(err, token)),
        };
        match Machines::jwt_type(&decoded) {
            TokenType::SessionToken if sessions => Ok(None),
            token_type if token_type != TokenType::SessionToken && accepts.accepts(token_type) => {
                machines
                    .verify_jwt(token, decoded, token_type)
                    .await
                    .map(|m| Some(AuthState::Machine(m)))
            }
            token_type => Err(mismatch(token_type)),
        }
    }

    /// Verifies one session token with the configured keys, caches and events, at the current
    /// time. Machine and JWT-template tokens are refused (`token-type-mismatch`). A `Send`
    /// future: usable from any task, e.g. for a token from a query string or a WebSocket.
    pub async fn authenticate_token(
        &self,
        token: &str,
        carrier: TokenCarrier,
    ) -> Result<ClerkSession, AuthError> {
        match self.inner.sessions.authenticate(token, carrier).await {
            Err(err) if err.reason() == R::TokenTypeMismatch => {
                Err(self.report_refused(err, token))
            }
            outcome => outcome,
        }
    }

    /// Reports a refused token (`AuthFailed`, the failure counter) and hands the error back.
    pub(crate) fn report_refused(&self, err: AuthError, token: &str) -> AuthError {
        self.inner.machines.failed(err, token)
    }

    /// [`report_refused`](Self::report_refused) for the request's `Authorization` token.
    pub(crate) fn report_refused_request(&self, err: AuthError, req: &HttpRequest) -> AuthError {
        match find_token(req, false) {
            Ok(Some((token, _))) => self.report_refused(err, token.as_str()),
            _ => err,
        }
    }

    /// Verifies a machine token (API key, M2M or OAuth, opaque or JWT) of a type in `accepts`,
    /// as the middleware does for a header token: a session token or a type outside `accepts`
    /// is `token-type-mismatch`, without any Backend API call. A `Send` future.
    pub async fn authenticate_machine_token(
        &self,
        token: &str,
        accepts: TokenTypes,
    ) -> Result<MachineAuth, AuthError> {
        let accepts = accepts.machines_only();
        match self.machine_state(token, accepts, false, None).await? {
            Some(AuthState::Machine(machine)) => Ok(machine),
            _ => Err(self.report_refused(
                AuthError::new(
                    R::TokenTypeMismatch,
                    mismatch_detail(TokenType::SessionToken),
                ),
                token,
            )),
        }
    }
}

fn mismatch_detail(token_type: TokenType) -> &'static str {
    match token_type {
        TokenType::SessionToken => "this route does not accept session tokens",
        TokenType::ApiKey => "this route does not accept API keys",
        TokenType::M2mToken => "this route does not accept M2M tokens",
        TokenType::OAuthToken => "this route does not accept OAuth access tokens",
    }
}
