//! Server-rendered pages: the handshake mode of [`ClerkMiddleware`](crate::ClerkMiddleware).
//! From a request to an [`AuthState`] plus the cookies to set, or to the response that answers
//! it instead of the handler (Clerk's handshake redirect, a development instance's clean-up
//! redirect). The protocol itself is `handshake` (no actix types there).

use std::time::{Duration, UNIX_EPOCH};

use actix_web::{
    http::header::{self, HeaderValue},
    HttpRequest, HttpResponse,
};

use crate::{
    actix::auth::find_token,
    actix::extract::{AuthState, ClerkSession},
    base::api::ApiError,
    base::error::{AuthError, AuthErrorKind, AuthErrorReason as R},
    base::events::{ClerkEvent, HandshakeOutcome, TokenCarrier},
    config::Clerk,
    handshake::{
        self, reason, CookiePath, DocumentRequest, Instance, NonceAnswer, Outcome, Resolution, Step,
    },
    machine::{TokenType, TokenTypes},
};

/// What the handshake mode decided for a request.
#[derive(Debug)]
pub(crate) enum DocumentAuth {
    /// Call the handler with this state, then add these `Set-Cookie` directives (a resolved
    /// handshake's cookies, verbatim) to whatever it answers; with `no_store`, also
    /// `Cache-Control: no-store` (the response carries a fresh session cookie).
    Proceed {
        state: AuthState,
        set_cookies: Vec<HeaderValue>,
        no_store: bool,
    },
    /// Answer this instead of calling the handler.
    Respond(HttpResponse),
}

impl DocumentAuth {
    fn proceed(state: AuthState) -> Self {
        Self::Proceed {
            state,
            set_cookies: Vec::new(),
            no_store: false,
        }
    }

    /// The same answer, also setting `directives` (`Set-Cookie` values).
    fn with_cookies(mut self, directives: &[String]) -> Self {
        let values = directives
            .iter()
            .filter_map(|d| HeaderValue::from_str(d).ok());
        match &mut self {
            Self::Proceed { set_cookies, .. } => set_cookies.extend(values),
            Self::Respond(response) => {
                for value in values {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
        }
        self
    }
}

/// Where a retry may help after the Backend API failed during a handshake.
const HANDSHAKE_RETRY: Duration = Duration::from_secs(5);

impl Clerk {
    /// Whether the handshake mode can run: a publishable key, a secret key (the return leg asks
    /// the Backend API), and the `__session` cookie read (authorized parties configured).
    /// `Err` names what is missing.
    pub(crate) fn handshake_ready(&self) -> Result<(), &'static str> {
        if self.inner.handshake.is_none() {
            return Err(
                "no publishable key: set CLERK_PUBLISHABLE_KEY or ClerkBuilder::publishable_key",
            );
        }
        if self.inner.users.api.is_none() {
            return Err("no secret key: the handshake's return leg asks the Backend API for the new cookies (set CLERK_SECRET_KEY)");
        }
        if !self.inner.http.accept_cookie {
            return Err("the __session cookie is not read: set CLERK_AUTHORIZED_PARTIES (or ClerkBuilder::authorized_parties) to the app's origin");
        }
        Ok(())
    }

    /// The handshake mode's decision for a request (handshake.md §3, §7, §8). The
    /// `Authorization` header keeps priority and is handled as without the mode; only the
    /// cookie path follows Clerk's `authenticateRequest`.
    pub(crate) async fn document_auth(
        &self,
        req: &HttpRequest,
        accepts: TokenTypes,
        defer: bool,
    ) -> Result<DocumentAuth, AuthError> {
        let Some(instance) = &self.inner.handshake else {
            return Ok(DocumentAuth::proceed(
                self.auth_state(req, accepts, defer).await?,
            ));
        };
        if !accepts.accepts(TokenType::SessionToken) || find_token(req, false)?.is_some() {
            return Ok(DocumentAuth::proceed(
                self.auth_state(req, accepts, defer).await?,
            ));
        }
        let cookie_header = req
            .headers()
            .get_all(header::COOKIE)
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ");
        let origin = self.request_origin(req);
        let header_str = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        };
        let doc = DocumentRequest {
            method: req.method().as_str(),
            sec_fetch_dest: header_str(header::HeaderName::from_static("sec-fetch-dest")),
            accept: header_str(header::ACCEPT),
            origin: &origin,
            path: req.path(),
            query: req.query_string(),
            cookie_header: &cookie_header,
            header_token: None,
        };
        let now_secs = self
            .inner
            .sessions
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let path = CookiePath::new(instance, &doc, now_secs);
        let mut step = path.start();
        // Set-Cookie directives the answer carries whatever it is.
        let mut spent_nonce = Vec::new();
        if let Step::ReturnLeg { nonce, .. } = &step {
            // The nonce wins over the legacy `__clerk_handshake` token, which this crate does
            // not read (it asks for `format=nonce`): without a nonce, the cookies decide.
            // Only a document GET exchanges a nonce; on anything else the cookies decide.
            if let Some(nonce) = nonce.as_ref().filter(|_| path.eligible()) {
                if let Some(done) = self
                    .return_leg(instance, &path, nonce, self.client_addr(req))
                    .await?
                {
                    return Ok(done);
                }
                // The new token failed verification: the request's own cookies decide, as in
                // Clerk's SDK, but the nonce is spent (single use). When it came in its cookie
                // (production), the cookie is cleared, so the next navigation makes a fresh
                // handshake instead of presenting it again (a divergence, as for a refused
                // nonce). A nonce in the URL stays there, as in Clerk's SDK.
                if req.cookie(handshake::HANDSHAKE_NONCE).is_some() {
                    spent_nonce = handshake::clear_nonce_directives(instance.key().frontend_api());
                }
            }
            step = path.cookie_checks();
        }
        let mut session = None;
        let mut refused = None;
        let outcome = match step {
            Step::Done(outcome) => outcome,
            Step::Verify { token, .. } => {
                match self
                    .inner
                    .sessions
                    .authenticate(&token, TokenCarrier::Cookie)
                    .await
                {
                    Ok(s) => {
                        session = Some(s);
                        path.verified(&token, Ok(()))
                    }
                    Err(err) if refusable(&err) => {
                        let outcome = path.verified(&token, Err(err.reason()));
                        refused = Some(err);
                        outcome
                    }
                    Err(err) => return Err(err),
                }
            }
            // `cookie_checks` never answers with a return leg.
            Step::ReturnLeg { .. } => Outcome::SignedOut {
                reason: reason::TOKEN_INVALID.to_owned(),
            },
        };
        let loop_stopped = matches!(outcome, Outcome::Handshake { .. }) && path.stops_loop();
        let auth = match path.resolve(outcome) {
            Resolution::SignedIn { .. } => match session {
                Some(session) => DocumentAuth::proceed(self.session_state(session)),
                None => DocumentAuth::proceed(AuthState::Anonymous),
            },
            Resolution::SignedOut { reason } => {
                if loop_stopped {
                    self.emit(ClerkEvent::HandshakeLoopStopped {
                        reason: reason.clone(),
                    });
                }
                DocumentAuth::proceed(signed_out_state(&reason, refused))
            }
            Resolution::Redirect {
                location,
                set_cookie,
                reason,
            } => match HeaderValue::from_str(&location) {
                Ok(location) => {
                    self.emit(ClerkEvent::HandshakeRedirected { reason });
                    let mut response = HttpResponse::TemporaryRedirect();
                    response
                        .insert_header((header::LOCATION, location))
                        .insert_header((header::CACHE_CONTROL, "no-store"));
                    if let Ok(cookie) = HeaderValue::from_str(&set_cookie) {
                        response.append_header((header::SET_COOKIE, cookie));
                    }
                    DocumentAuth::Respond(response.finish())
                }
                // Not reachable with a valid configuration (every part is encoded).
                Err(_) => DocumentAuth::proceed(signed_out_state(&reason, refused)),
            },
        };
        Ok(auth.with_cookies(&spent_nonce))
    }

    /// C0, the return leg with a nonce (handshake.md §7): the Backend API's directives, the
    /// session token they set verified. `Ok(None)`: the new token failed verification, so the
    /// request's own cookies decide (Clerk's SDK does the same).
    async fn return_leg(
        &self,
        instance: &Instance,
        path: &CookiePath<'_>,
        nonce: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<Option<DocumentAuth>, AuthError> {
        let Some(api) = &self.inner.users.api else {
            return Err(AuthError::new(
                R::InvalidSecretKey,
                "the handshake needs the secret key to ask the Backend API for the new cookies",
            ));
        };
        let unavailable = || {
            AuthError::unavailable(
                R::HandshakeUnavailable,
                "the Backend API could not be asked for the handshake's cookies",
                HANDSHAKE_RETRY,
            )
        };
        let directives = match instance.nonces().exchange(api, nonce, client).await {
            Ok(NonceAnswer::Payload(body)) => handshake::parse_directives(&body),
            Ok(NonceAnswer::Refused) => None,
            Ok(NonceAnswer::OverBudget) => {
                self.emit(ClerkEvent::HandshakeResolved {
                    outcome: HandshakeOutcome::NotExchanged,
                });
                return Ok(Some(DocumentAuth::Proceed {
                    state: AuthState::SignedOut(AuthError::new(
                        R::SessionTokenMissing,
                        "the handshake's nonce was not exchanged: too many refused nonces lately",
                    )),
                    set_cookies: Vec::new(),
                    no_store: true,
                }));
            }
            Err(err) if err.is_invalid_secret_key() => {
                return Err(AuthError::new(
                    R::InvalidSecretKey,
                    "the Backend API refused the secret key",
                ))
            }
            Err(ApiError::RateLimited { retry_after }) => {
                return Err(AuthError::unavailable(
                    R::HandshakeUnavailable,
                    "the Backend API rate-limited the handshake's exchange",
                    retry_after,
                ))
            }
            Err(err) if err.is_transient() => return Err(unavailable()),
            // Unreachable is transient (above); no secret key cannot happen with a handle `handshake()` accepted.
            Err(ApiError::NoSecretKey) => return Err(unavailable()),
            // Other 4xx are `Refused` above.
            Err(_) => return Err(unavailable()),
        };
        let (outcome, state, directives) = match directives {
            None => (
                HandshakeOutcome::NonceRefused,
                AuthState::SignedOut(AuthError::new(
                    R::SessionTokenMissing,
                    "the handshake's nonce was refused by the Backend API (expired, used or forged)",
                )),
                handshake::clear_nonce_directives(instance.key().frontend_api()),
            ),
            Some(directives) => {
                let token = handshake::session_token(&directives);
                if token.is_empty() {
                    (
                        HandshakeOutcome::SignedOut,
                        AuthState::SignedOut(AuthError::new(
                            R::SessionTokenMissing,
                            "the handshake cleared the session: signed out at Clerk",
                        )),
                        directives,
                    )
                } else {
                    match self
                        .inner
                        .sessions
                        .authenticate(token, TokenCarrier::Cookie)
                        .await
                    {
                        Ok(session) => (
                            HandshakeOutcome::SignedIn,
                            self.session_state(session),
                            directives,
                        ),
                        Err(err) if refusable(&err) => {
                            self.emit(ClerkEvent::HandshakeResolved {
                                outcome: HandshakeOutcome::FellThrough,
                            });
                            return Ok(None);
                        }
                        Err(err) => return Err(err),
                    }
                }
            }
        };
        self.emit(ClerkEvent::HandshakeResolved { outcome });
        let set_cookies: Vec<HeaderValue> = directives
            .iter()
            .filter_map(|d| HeaderValue::from_str(d).ok())
            .collect();
        if instance.is_development() {
            // Development: the payload came in the URL; send the browser to the clean URL with
            // the cookies set (§7.3, step 3).
            if let Ok(location) = HeaderValue::from_str(&path.clean_url()) {
                let mut response = HttpResponse::TemporaryRedirect();
                response
                    .insert_header((header::LOCATION, location))
                    .insert_header((header::CACHE_CONTROL, "no-store"));
                for cookie in set_cookies {
                    response.append_header((header::SET_COOKIE, cookie));
                }
                return Ok(Some(DocumentAuth::Respond(response.finish())));
            }
        }
        Ok(Some(DocumentAuth::Proceed {
            state,
            set_cookies,
            no_store: true,
        }))
    }

    /// A verified session as the middleware states it (pending sessions apart).
    fn session_state(&self, session: ClerkSession) -> AuthState {
        if session.is_pending() && self.inner.http.treat_pending_as_signed_out {
            AuthState::Pending(session)
        } else {
            AuthState::Authenticated(session)
        }
    }

    /// The origin the browser sees (`scheme://host[:port]`): the `Host` header and the
    /// listener's scheme, or, with
    /// [`trust_forwarded_headers`](crate::ClerkBuilder::trust_forwarded_headers), the first
    /// `X-Forwarded-Host` / `X-Forwarded-Proto` values (handshake.md §2.2).
    fn request_origin(&self, req: &HttpRequest) -> String {
        let headers = req.headers();
        let first = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let trusted = self.inner.http.trust_forwarded_headers;
        let forwarded_host = trusted.then(|| first("x-forwarded-host")).flatten();
        let forwarded_proto = trusted.then(|| first("x-forwarded-proto")).flatten();
        let host = forwarded_host
            .or_else(|| {
                headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
            .unwrap_or_else(|| req.app_config().host().to_owned());
        let scheme = forwarded_proto.unwrap_or_else(|| {
            if req.app_config().secure() {
                "https".to_owned()
            } else {
                "http".to_owned()
            }
        });
        format!("{scheme}://{host}")
    }
}

/// A verification failure the cookie path turns into an outcome (signed out, or a handshake);
/// an outage or a misconfiguration stays an error (503 / 500), never a silent sign-out.
fn refusable(err: &AuthError) -> bool {
    !matches!(
        err.kind(),
        AuthErrorKind::Unavailable | AuthErrorKind::Misconfigured
    )
}

/// The state of a request the cookie path signed out: anonymous when it carried no Clerk
/// cookie at all, else signed out with the verification's error or the handshake's reason.
fn signed_out_state(reason: &str, refused: Option<AuthError>) -> AuthState {
    if reason == reason::TOKEN_AND_UAT_MISSING {
        return AuthState::Anonymous;
    }
    AuthState::SignedOut(refused.unwrap_or_else(|| match reason {
        reason::TOKEN_INVALID => {
            AuthError::new(R::TokenInvalid, "the __session cookie is not a JWT")
        }
        reason::TOKEN_TYPE_MISMATCH => AuthError::new(
            R::TokenTypeMismatch,
            "the __session cookie holds a machine token or a JWT of another category",
        ),
        _ => AuthError::new(R::SessionTokenMissing, signed_out_detail(reason)),
    }))
}

/// Why a request that wanted a handshake is signed out instead (it was not a document GET, or
/// the redirect-loop guard stopped it).
fn signed_out_detail(reason: &str) -> &'static str {
    match reason {
        reason::UAT_BUT_NO_TOKEN => {
            "client-uat-but-no-session-token: signed in at Clerk, but no __session cookie (a handshake would refresh it: only document GETs get one)"
        }
        reason::TOKEN_BUT_NO_UAT => {
            "session-token-but-no-client-uat: a __session cookie without __client_uat (only document GETs get a handshake)"
        }
        reason::IAT_BEFORE_UAT => {
            "session-token-iat-before-client-uat: the __session cookie predates the last sign-in (only document GETs get a handshake)"
        }
        reason::DEV_BROWSER_MISSING | reason::DEV_BROWSER_SYNC => {
            "dev-browser-missing: a development instance needs its __clerk_db_jwt cookie (only document GETs get a handshake)"
        }
        _ => "the session cookie needs Clerk's handshake, which only document GETs get (or the redirect-loop guard stopped it)",
    }
}
