//! Extractors: [`ClerkSession`] (401 when anonymous), [`OptionalClerkSession`] (anonymous is
//! `None`, an invalid token never is) and the [`AuthState`] the middleware leaves in the request.

use std::{
    future::{ready, Ready},
    ops::Deref,
    sync::Arc,
};

use actix_web::{dev::Payload, web, FromRequest, HttpMessage, HttpRequest};
use serde::Serialize;

use crate::{
    claims::ClerkClaims,
    config::Clerk,
    error::{AuthError, AuthErrorReason as R},
    events::{AuthSource, TokenCarrier},
};

/// An authenticated Clerk session: the verified claims plus where the token came from.
/// Derefs to [`ClerkClaims`]. Cheap to clone.
///
/// As an extractor it answers 401 (`WWW-Authenticate: Bearer`) when the request is anonymous;
/// [`ClerkMiddleware`](crate::ClerkMiddleware) must wrap the route.
///
/// ```no_run
/// use actix_web::{get, HttpResponse, Responder};
/// use clerk_actix::ClerkSession;
///
/// #[get("/me")]
/// async fn me(session: ClerkSession) -> impl Responder {
///     HttpResponse::Ok().json(serde_json::json!({ "user_id": session.user_id() }))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ClerkSession {
    claims: Arc<ClerkClaims>,
    source: AuthSource,
    carrier: TokenCarrier,
}

impl ClerkSession {
    pub(crate) fn new(claims: Arc<ClerkClaims>, source: AuthSource, carrier: TokenCarrier) -> Self {
        Self {
            claims,
            source,
            carrier,
        }
    }

    /// The verified claims.
    pub fn claims(&self) -> &Arc<ClerkClaims> {
        &self.claims
    }

    /// Whether the token came from the verified-token cache.
    pub fn source(&self) -> AuthSource {
        self.source
    }

    /// Header or cookie.
    pub fn carrier(&self) -> TokenCarrier {
        self.carrier
    }
}

impl Deref for ClerkSession {
    type Target = ClerkClaims;
    fn deref(&self) -> &ClerkClaims {
        &self.claims
    }
}

impl Serialize for ClerkSession {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.claims.serialize(s)
    }
}

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
}

impl AuthState {
    /// The session, when authenticated.
    pub fn session(&self) -> Option<&ClerkSession> {
        match self {
            Self::Authenticated(s) => Some(s),
            _ => None,
        }
    }
}

/// Stored in request extensions by the middleware.
#[derive(Debug, Clone)]
pub(crate) struct RequestAuth {
    pub(crate) state: AuthState,
    pub(crate) clerk: Clerk,
}

fn middleware_missing() -> AuthError {
    AuthError::new(
        R::MiddlewareMissing,
        "wrap the app or scope with clerk_actix::ClerkMiddleware::new(clerk) before using Clerk extractors",
    )
}

/// Turns an auth error into an actix error, through the global hook when one is configured.
pub(crate) fn reject(err: AuthError, req: &HttpRequest, clerk: Option<&Clerk>) -> actix_web::Error {
    let clerk = clerk.cloned().or_else(|| {
        req.app_data::<web::Data<Clerk>>()
            .map(|d| d.get_ref().clone())
    });
    match clerk {
        Some(clerk) => {
            let response = clerk.error_response(&err, req);
            actix_web::error::InternalError::from_response(err, response).into()
        }
        None => err.into(),
    }
}

fn with_auth<T>(
    req: &HttpRequest,
    f: impl FnOnce(&RequestAuth) -> Result<T, AuthError>,
) -> Result<T, actix_web::Error> {
    // The extensions borrow ends before the error hook runs: a hook may use the request freely.
    let outcome = match req.extensions().get::<RequestAuth>() {
        Some(auth) => f(auth).map_err(|e| (e, Some(auth.clerk.clone()))),
        None => Err((middleware_missing(), None)),
    };
    outcome.map_err(|(e, clerk)| reject(e, req, clerk.as_ref()))
}

impl FromRequest for ClerkSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(with_auth(req, |auth| match &auth.state {
            AuthState::Authenticated(s) => Ok(s.clone()),
            AuthState::Anonymous => Err(AuthError::missing()),
            AuthState::Pending(_) => Err(AuthError::new(
                R::SessionPending,
                "the session has pending tasks",
            )),
        }))
    }
}

impl FromRequest for AuthState {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(with_auth(req, |auth| Ok(auth.state.clone())))
    }
}

/// Optional authentication: `Some(session)` when signed in, `None` when anonymous (or pending).
///
/// Unlike `Option<ClerkSession>` (whose actix blanket impl turns *every* error into `None`), a
/// missing middleware is still a 500 here; invalid tokens are refused by the middleware before
/// the handler runs, so they never become "anonymous".
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
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(with_auth(req, |auth| {
            Ok(OptionalClerkSession(auth.state.session().cloned()))
        }))
    }
}
