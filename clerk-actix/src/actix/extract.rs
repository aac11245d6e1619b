//! Extractors: [`ClerkSession`] (401 when anonymous), [`OptionalClerkSession`] (anonymous is
//! `None`, an invalid token never is) and the [`AuthState`] the middleware leaves in the request.

use std::{
    future::{ready, Ready},
    ops::Deref,
    sync::Arc,
};

use actix_web::{dev::Payload, web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::{Either, LocalBoxFuture, Shared};

pub use crate::tokens::session::ClerkSession;
use crate::{
    base::error::{AuthError, AuthErrorReason as R},
    base::events::ClerkEvent,
    config::Clerk,
    machine::MachineAuth,
    mirror::sync::{SyncError, SyncedUser, UserSource, UserSync},
};

/// What [`ClerkMiddleware`](crate::ClerkMiddleware) decided for a request. Also an extractor.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthState {
    /// No token was presented.
    Anonymous,
    /// A valid session token.
    Authenticated(ClerkSession),
    /// A valid token of a session with pending tasks, treated as signed out.
    Pending(ClerkSession),
    /// A valid machine token (API key, M2M, OAuth) on a route whose middleware accepts its
    /// type ([`ClerkMiddleware::accepts_token`](crate::ClerkMiddleware::accepts_token)).
    Machine(MachineAuth),
    /// A machine token (or another JWT category) of a type the middleware does not accept, in
    /// optional mode. Every extractor refuses it with this 401 `token-type-mismatch`, except a
    /// `#[clerk_protected(accepts_token = ...)]` guard whose handler accepts its type: that
    /// guard verifies it (the handler-level opt-in under an app-wide session middleware). A
    /// handler without Clerk extractors ignores it, as it ignores authentication.
    NotAccepted(AuthError),
    /// The `__session` cookie was refused (expired, bad signature, ...): in optional mode the
    /// request goes on signed out, keeping the reason. Browsers send expired session cookies
    /// routinely (an idle tab), so a public page must not answer 401 for one. An invalid
    /// `Authorization` token is never this: it is a 401.
    SignedOut(AuthError),
}

impl AuthState {
    /// The session, when authenticated.
    pub fn session(&self) -> Option<&ClerkSession> {
        match self {
            Self::Authenticated(s) => Some(s),
            _ => None,
        }
    }

    /// The session, or the error a route that requires one answers with: 401 without a
    /// token, 401 `invalid_token` with the cookie's reason when signed out, 401
    /// `session-pending` for a pending session.
    pub fn require_session(&self) -> Result<&ClerkSession, AuthError> {
        match self {
            Self::Authenticated(s) => Ok(s),
            Self::Anonymous => Err(AuthError::missing()),
            Self::Pending(_) => Err(AuthError::new(
                R::SessionPending,
                "the session has pending tasks",
            )),
            Self::SignedOut(err) | Self::NotAccepted(err) => Err(err.clone()),
            Self::Machine(_) => Err(machine_on_session_route()),
        }
    }

    /// The machine caller, or the error a machine-only route answers with: 401 without a
    /// token, 401 `token-type-mismatch` for a session token.
    pub fn require_machine(&self) -> Result<&MachineAuth, AuthError> {
        match self {
            Self::Machine(m) => Ok(m),
            Self::Anonymous => Err(AuthError::missing()),
            Self::SignedOut(err) | Self::NotAccepted(err) => Err(err.clone()),
            Self::Authenticated(_) | Self::Pending(_) => Err(AuthError::new(
                R::TokenTypeMismatch,
                "this route accepts machine tokens, not session tokens",
            )),
        }
    }

    /// A session or a machine caller, or why neither.
    pub fn require_any(&self) -> Result<ClerkAuth, AuthError> {
        match self {
            Self::Machine(m) => Ok(ClerkAuth::Machine(m.clone())),
            other => other.require_session().cloned().map(ClerkAuth::Session),
        }
    }
}

fn machine_on_session_route() -> AuthError {
    AuthError::new(
        R::TokenTypeMismatch,
        "this route accepts session tokens only",
    )
}

/// A session or a machine caller, for routes whose middleware accepts both
/// ([`ClerkMiddleware::accepts_token`](crate::ClerkMiddleware::accepts_token)). An extractor:
/// 401 when anonymous.
///
/// ```no_run
/// use actix_web::{get, HttpResponse};
/// use clerk_actix::extract::ClerkAuth;
///
/// #[get("/reports")]
/// async fn reports(auth: ClerkAuth) -> HttpResponse {
///     let owner = match &auth {
///         ClerkAuth::Session(session) => session.user_id().to_owned(),
///         ClerkAuth::Machine(machine) => machine.subject().to_owned(),
///     };
///     HttpResponse::Ok().body(owner)
/// }
/// ```
#[derive(Debug, Clone)]
pub enum ClerkAuth {
    /// A user's session token.
    Session(ClerkSession),
    /// A machine token: API key, M2M or OAuth.
    Machine(MachineAuth),
}

impl FromRequest for ClerkAuth {
    type Error = actix_web::Error;
    type Future = AuthFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract_with(req, |auth| auth.state.require_any())
    }
}

/// The machine caller of a request (API key, M2M or OAuth token): 401 when anonymous, 401
/// `token-type-mismatch` for a session token. The middleware must accept the machine types
/// ([`ClerkMiddleware::accepts_token`](crate::ClerkMiddleware::accepts_token)). Derefs to
/// [`MachineAuth`].
///
/// ```no_run
/// use actix_web::{get, web, Responder};
/// use clerk_actix::extract::ClerkMachine;
///
/// #[get("/machine")]
/// async fn machine(caller: ClerkMachine) -> impl Responder {
///     web::Json(caller.into_inner()) // {"token_type", "id", "subject", "scopes", ...}
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ClerkMachine(pub MachineAuth);

impl ClerkMachine {
    /// The machine caller.
    pub fn into_inner(self) -> MachineAuth {
        self.0
    }
}

impl Deref for ClerkMachine {
    type Target = MachineAuth;
    fn deref(&self) -> &MachineAuth {
        &self.0
    }
}

impl FromRequest for ClerkMachine {
    type Error = actix_web::Error;
    type Future = AuthFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract_with(req, |auth| {
            auth.state.require_machine().cloned().map(ClerkMachine)
        })
    }
}

/// Stored in request extensions by the middleware.
#[derive(Clone)]
pub(crate) struct RequestAuth {
    pub(crate) state: AuthState,
    pub(crate) clerk: Clerk,
    /// A deferred token being verified by a handler's guard that accepts its type. actix calls
    /// every extractor's `from_request` before polling any, so the handler's other extractors
    /// wait on this rather than read the state before the guard has written it. It holds no
    /// request (no reference cycle through the extensions).
    pub(crate) resolving: Option<Resolving>,
}

impl std::fmt::Debug for RequestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestAuth")
            .field("state", &self.state)
            .field("resolving", &self.resolving.is_some())
            .finish_non_exhaustive()
    }
}

/// The verification of a deferred token, shared by the extractors of one request.
pub(crate) type Resolving = Shared<LocalBoxFuture<'static, Result<AuthState, AuthError>>>;

/// The future of the request-state extractors: ready, unless a deferred token is being verified.
pub type AuthFuture<T> = Either<
    Ready<Result<T, actix_web::Error>>,
    LocalBoxFuture<'static, Result<T, actix_web::Error>>,
>;

/// Waits for a deferred token's verification, if one is under way, and leaves its outcome in
/// the request's state; its error (a refused or unverifiable token) is the request's answer.
pub(crate) async fn resolved(req: &HttpRequest) -> Result<(), actix_web::Error> {
    let resolving = req
        .extensions()
        .get::<RequestAuth>()
        .and_then(|auth| Some((auth.resolving.clone()?, auth.clerk.clone())));
    let Some((resolving, clerk)) = resolving else {
        return Ok(());
    };
    match resolving.await {
        Ok(state) => {
            if let Some(auth) = req.extensions_mut().get_mut::<RequestAuth>() {
                auth.state = state;
            }
            Ok(())
        }
        Err(err) => Err(reject(err, req, Some(&clerk))),
    }
}

/// Runs `f` on the request's authentication: at once, or after a deferred token's verification.
pub(crate) fn extract_with<T: 'static>(
    req: &HttpRequest,
    f: impl FnOnce(&RequestAuth) -> Result<T, AuthError> + 'static,
) -> AuthFuture<T> {
    let resolving = req
        .extensions()
        .get::<RequestAuth>()
        .is_some_and(|auth| auth.resolving.is_some());
    if !resolving {
        return Either::Left(ready(with_auth(req, f)));
    }
    let req = req.clone();
    Either::Right(Box::pin(async move {
        resolved(&req).await?;
        with_auth(&req, f)
    }))
}

fn middleware_missing() -> AuthError {
    AuthError::new(
        R::MiddlewareMissing,
        "wrap the app or scope with clerk_actix::ClerkMiddleware::new(clerk) before using Clerk extractors",
    )
}

/// The [`Clerk`] handle serving a request: the one [`ClerkMiddleware`](crate::ClerkMiddleware)
/// left in the request, else one registered with `app_data(web::Data::new(clerk))`.
pub(crate) fn clerk_of(req: &HttpRequest) -> Option<Clerk> {
    if let Some(auth) = req.extensions().get::<RequestAuth>() {
        return Some(auth.clerk.clone());
    }
    req.app_data::<web::Data<Clerk>>()
        .map(|d| d.get_ref().clone())
}

/// Turns an auth error into an actix error, through the global hook when one is configured.
pub(crate) fn reject(err: AuthError, req: &HttpRequest, clerk: Option<&Clerk>) -> actix_web::Error {
    let clerk = clerk.cloned().or_else(|| clerk_of(req));
    match clerk {
        Some(clerk) => {
            let response = clerk.error_response(&err, req);
            actix_web::error::InternalError::from_response(err, response).into()
        }
        None => err.into(),
    }
}

pub(crate) fn with_auth<T>(
    req: &HttpRequest,
    f: impl FnOnce(&RequestAuth) -> Result<T, AuthError>,
) -> Result<T, actix_web::Error> {
    // The extensions borrow ends before the error hook runs: a hook may use the request freely.
    let outcome = match req.extensions().get::<RequestAuth>() {
        Some(auth) => f(auth).map_err(|e| {
            // The middleware deferred this token to the handler; it is refused now, so reported now.
            let e = match &auth.state {
                AuthState::NotAccepted(_) if e.reason() == R::TokenTypeMismatch => {
                    auth.clerk.report_refused_request(e, req)
                }
                _ => e,
            };
            (e, Some(auth.clerk.clone()))
        }),
        None => Err((middleware_missing(), None)),
    };
    outcome.map_err(|(e, clerk)| reject(e, req, clerk.as_ref()))
}

impl FromRequest for ClerkSession {
    type Error = actix_web::Error;
    type Future = AuthFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract_with(req, |auth| auth.state.require_session().cloned())
    }
}

impl FromRequest for AuthState {
    type Error = actix_web::Error;
    type Future = AuthFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract_with(req, |auth| Ok(auth.state.clone()))
    }
}

/// Optional authentication: `Some(session)` when signed in, `None` when anonymous, pending, or
/// signed out by an invalid `__session` cookie ([`AuthState::SignedOut`] keeps the reason).
///
/// Unlike `Option<ClerkSession>` (whose actix blanket impl turns *every* error into `None`), a
/// missing middleware is still a 500 here; an invalid `Authorization` token is refused by the
/// middleware before the handler runs, so it never becomes "anonymous".
#[derive(Debug, Clone)]
pub struct OptionalClerkSession(pub Option<ClerkSession>);

impl Deref for OptionalClerkSession {
    type Target = Option<ClerkSession>;
    fn deref(&self) -> &Option<ClerkSession> {
        &self.0
    }
}

impl FromRequest for OptionalClerkSession {
    type Error = actix_web::Error;
    type Future = AuthFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract_with(req, |auth| match &auth.state {
            AuthState::Machine(_) => Err(machine_on_session_route()),
            AuthState::NotAccepted(err) => Err(err.clone()),
            state => Ok(OptionalClerkSession(state.session().cloned())),
        })
    }
}

/// The synced local user of an authenticated request: `U` is the included
/// [`ClerkUserRecord`](crate::store::ClerkUserRecord) or your own model, kept in the store
/// registered with [`ClerkBuilder::user_store`](crate::ClerkBuilder::user_store). Derefs to `U`.
///
/// - anonymous → 401; user deleted in Clerk or inactive (banned, locked, deactivated) → 401
///   with `user-not-found` / `user-inactive`;
/// - Clerk or the database down and the user cached nowhere → 503 with `Retry-After`;
/// - a cached user costs no Backend API call and no SQL.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # mod demo {
/// use actix_web::{get, web, Responder};
/// use clerk_actix::{store::ClerkUserRecord, ClerkUser};
///
/// #[get("/me")]
/// async fn me(user: ClerkUser<ClerkUserRecord>) -> impl Responder {
///     web::Json(user.into_inner())
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClerkUser<U> {
    /// Shared with the user cache: extracting a cached user clones an `Arc`, not the row.
    user: Arc<U>,
    session: ClerkSession,
    source: UserSource,
}

impl<U> ClerkUser<U> {
    /// The session the request was authenticated with.
    pub fn session(&self) -> &ClerkSession {
        &self.session
    }

    /// Where the user came from (cache, Backend API, database).
    pub fn source(&self) -> UserSource {
        self.source
    }

    /// The user.
    pub fn into_inner(self) -> U
    where
        U: Clone,
    {
        Arc::unwrap_or_clone(self.user)
    }
}

impl<U> Deref for ClerkUser<U> {
    type Target = U;
    fn deref(&self) -> &U {
        &self.user
    }
}

/// Reports a request's user (`UserAuthenticated`, when a listener wants debug events).
fn report_user<U: SyncedUser>(
    clerk: &Clerk,
    session: &ClerkSession,
    user: &Arc<U>,
    source: UserSource,
) {
    if clerk.events().wants_debug() {
        clerk.emit(ClerkEvent::UserAuthenticated {
            user_id: session.user_id().to_owned(),
            source,
            user: UserSync::<U>::any_user(user),
        });
    }
}

/// The warm path of [`ClerkUser`]: an authenticated session whose active user is cached,
/// with no future; `None` for every other case (reported by the full path).
fn cached_user<U: SyncedUser>(req: &HttpRequest) -> Option<ClerkUser<U>> {
    let extensions = req.extensions();
    let auth = extensions.get::<RequestAuth>()?;
    if auth.resolving.is_some() {
        return None;
    }
    let session = auth.state.require_session().ok()?;
    let user = auth.clerk.user_sync::<U>()?.cached(session.user_id())?;
    if !user.is_active() {
        return None;
    }
    report_user::<U>(&auth.clerk, session, &user, UserSource::Cache);
    Some(ClerkUser {
        user,
        session: session.clone(),
        source: UserSource::Cache,
    })
}

impl<U: SyncedUser> FromRequest for ClerkUser<U> {
    type Error = actix_web::Error;
    type Future = AuthFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(user) = cached_user(req) {
            return Either::Left(ready(Ok(user)));
        }
        let req = req.clone();
        Either::Right(Box::pin(async move {
            resolved(&req).await?;
            let (session, clerk) = with_auth(&req, |auth| {
                Ok((auth.state.require_session()?.clone(), auth.clerk.clone()))
            })?;
            let outcome = match clerk.user_sync::<U>() {
                None => Err(SyncError::NoStore.to_auth_error()),
                Some(sync) => match sync.user(session.user_id()).await {
                    Ok((user, _)) if !user.is_active() => Err(AuthError::new(
                        R::UserInactive,
                        "the user is banned, locked or deactivated",
                    )),
                    Ok((user, source)) => Ok((user, source)),
                    Err(e) => Err(e.to_auth_error()),
                },
            };
            match outcome {
                Ok((user, source)) => {
                    report_user::<U>(&clerk, &session, &user, source);
                    Ok(ClerkUser {
                        user,
                        session,
                        source,
                    })
                }
                Err(err) => {
                    clerk.emit(ClerkEvent::UserRefused {
                        user_id: session.user_id().to_owned(),
                        reason: err.reason(),
                    });
                    Err(reject(err, &req, Some(&clerk)))
                }
            }
        }))
    }
}
