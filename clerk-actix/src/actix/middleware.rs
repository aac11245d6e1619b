//! [`ClerkMiddleware`]: authenticates every request before the handler and leaves an
//! [`AuthState`] in the request extensions.

use std::{
    future::{ready, Future, Ready},
    pin::Pin,
    rc::Rc,
};

use futures_util::future::{Either, FutureExt as _, Map};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform},
    http::{header, Method},
    HttpMessage,
};

use crate::{
    actix::document::DocumentAuth,
    actix::extract::{AuthState, RequestAuth},
    base::error::AuthError,
    config::Clerk,
    machine::TokenTypes,
};

/// Authenticates requests with Clerk session tokens (and, where
/// [`accepts_token`](Self::accepts_token) allows, machine tokens).
///
/// - No token: *optional* mode (the default) lets the request through as
///   [`AuthState::Anonymous`]; [`required`](Self::required) mode answers 401.
/// - An `Authorization` token that fails verification: 401 with
///   `WWW-Authenticate: Bearer error="invalid_token"` in both modes (never treated as anonymous).
/// - A `__session` cookie that fails verification (expired, ...): optional mode lets the request
///   through as [`AuthState::SignedOut`] with the reason (public pages keep working for a
///   browser with a stale cookie); required mode answers 401 `invalid_token`.
/// - A machine token of a type [`accepts_token`](Self::accepts_token) leaves out: required mode
///   answers 401 `token-type-mismatch`; optional mode leaves [`AuthState::NotAccepted`], which
///   every extractor refuses the same way, except a handler that opts in with
///   `#[clerk_protected(accepts_token = "api_key")]` (no verification or Backend API call before).
/// - Clerk unreachable with no usable cached keys: 503 with `Retry-After`.
/// - CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) passes untouched.
///
/// ```no_run
/// use actix_web::{web, App, HttpServer};
/// use clerk_actix::{Clerk, ClerkMiddleware};
///
/// # async fn run() -> std::io::Result<()> {
/// let clerk = Clerk::from_env().expect("Clerk configuration");
/// HttpServer::new(move || {
///     App::new()
///         .wrap(ClerkMiddleware::new(clerk.clone()))
/// })
/// .bind(("127.0.0.1", 8080))?
/// .run()
/// .await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClerkMiddleware {
    clerk: Clerk,
    required: bool,
    accepts: TokenTypes,
    handshake: bool,
}

impl ClerkMiddleware {
    /// Optional mode: anonymous requests pass; extractors decide.
    pub fn new(clerk: Clerk) -> Self {
        Self {
            clerk,
            required: false,
            accepts: TokenTypes::SESSION,
            handshake: false,
        }
    }

    /// The token types this middleware accepts in the `Authorization` header (Clerk's
    /// `acceptsToken`); default [`TokenTypes::SESSION`]. A token of another type is 401
    /// `token-type-mismatch` before any verification or Backend API call. Machine tokens are
    /// never read from cookies; a set without sessions reads no cookie at all.
    ///
    /// ```no_run
    /// use actix_web::{web, App};
    /// use clerk_actix::{Clerk, ClerkMiddleware, TokenTypes};
    /// # fn app(clerk: Clerk) {
    /// let app = App::new().service(
    ///     web::scope("/api/v1")
    ///         .wrap(ClerkMiddleware::new(clerk).accepts_token(TokenTypes::API_KEY | TokenTypes::M2M)),
    /// );
    /// # }
    /// ```
    pub fn accepts_token(mut self, accepts: TokenTypes) -> Self {
        self.accepts = accepts;
        self
    }

    /// Required mode: every request (but CORS preflight) must carry a valid session token.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Handshake mode, for applications that render HTML (the guide's `server_rendered` chapter):
    /// the `__session` cookie is read exactly as Clerk's `authenticateRequest` reads it
    /// (`__client_uat`, suffixed multi-app cookies, development instances), and a document
    /// request whose cookie needs refreshing (expired, missing after a sign-in elsewhere, ...)
    /// is answered with Clerk's handshake before the handler runs: a `307` to the instance's
    /// Frontend API, which sends the browser back with a nonce; the nonce is exchanged with the
    /// Backend API for fresh cookies, set on the response of the page, which renders signed in.
    ///
    /// - Only `GET` document requests (`Sec-Fetch-Dest: document`/`iframe`, or `Accept:
    ///   text/html…` without it) are redirected; `fetch`, JSON, `POST` and `HEAD` requests are
    ///   signed out ([`AuthState::SignedOut`] with the reason) — an API never gets a redirect.
    /// - At most three handshakes in a row (Clerk's `__clerk_redirect_count` guard): then the
    ///   request goes on signed out ([`ClerkEvent::HandshakeLoopStopped`](crate::ClerkEvent)).
    /// - The `Authorization` header keeps priority and is handled as without this mode.
    /// - The Backend API unreachable or rate-limited during the exchange: 503 with
    ///   `Retry-After` (`handshake-unavailable`), never a silent sign-out.
    ///
    /// Extractors and `#[clerk_protected]` work unchanged.
    ///
    /// # Panics
    ///
    /// When the [`Clerk`] handle cannot run it, naming what is missing: a publishable key
    /// ([`ClerkBuilder::publishable_key`](crate::ClerkBuilder::publishable_key) /
    /// `CLERK_PUBLISHABLE_KEY`), a secret key, or the authorized parties that let the
    /// `__session` cookie be read.
    ///
    /// ```no_run
    /// use actix_web::{web, App, HttpServer};
    /// use clerk_actix::{Clerk, ClerkMiddleware};
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// // CLERK_SECRET_KEY, CLERK_PUBLISHABLE_KEY, CLERK_AUTHORIZED_PARTIES
    /// let clerk = Clerk::from_env().expect("Clerk configuration");
    /// HttpServer::new(move || App::new().wrap(ClerkMiddleware::new(clerk.clone()).handshake()))
    ///     .bind(("127.0.0.1", 8082))?
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn handshake(mut self) -> Self {
        if let Err(missing) = self.clerk.handshake_ready() {
            panic!("ClerkMiddleware::handshake(): {missing}");
        }
        self.handshake = true;
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for ClerkMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = ClerkMiddlewareService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ClerkMiddlewareService {
            service: Rc::new(service),
            clerk: self.clerk.clone(),
            required: self.required,
            accepts: self.accepts,
            handshake: self.handshake,
        }))
    }
}

/// The service built by [`ClerkMiddleware`].
#[derive(Debug)]
pub struct ClerkMiddlewareService<S> {
    service: Rc<S>,
    clerk: Clerk,
    required: bool,
    accepts: TokenTypes,
    handshake: bool,
}

fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<S, B> Service<ServiceRequest> for ClerkMiddlewareService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    /// The warm path (a cached session token, or a cached accepted opaque machine token)
    /// calls the service at once and maps its future, with no allocation; every other request
    /// is decided in a boxed future.
    type Future = Either<
        Map<S::Future, fn(Result<ServiceResponse<B>, actix_web::Error>) -> Output<B>>,
        Pin<Box<dyn Future<Output = Output<B>>>>,
    >;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // The warm path: a cached token needs no future of its own. Handshake mode
        // reads cookies by Clerk's rules first, and a preflight is never authenticated.
        if !self.handshake && !is_preflight(&req) {
            if let Some(state) = self.clerk.cached_auth_state(req.request(), self.accepts) {
                req.extensions_mut().insert(RequestAuth {
                    state,
                    clerk: self.clerk.clone(),
                    resolving: None,
                });
                let left: fn(Result<ServiceResponse<B>, actix_web::Error>) -> Output<B> =
                    |res| res.map(ServiceResponse::map_into_left_body);
                return Either::Left(self.service.call(req).map(left));
            }
        }
        let service = Rc::clone(&self.service);
        let clerk = self.clerk.clone();
        let required = self.required;
        let accepts = self.accepts;
        let handshake = self.handshake;
        Either::Right(Box::pin(async move {
            if is_preflight(&req) {
                req.extensions_mut().insert(RequestAuth {
                    state: AuthState::Anonymous,
                    clerk,
                    resolving: None,
                });
                return service
                    .call(req)
                    .await
                    .map(ServiceResponse::map_into_left_body);
            }
            // Optional mode defers a machine token of a type not accepted here to the handler,
            // whose guard may accept it (`#[clerk_protected(accepts_token = ...)]`).
            let decided = if handshake {
                clerk.document_auth(req.request(), accepts, !required).await
            } else {
                clerk
                    .auth_state(req.request(), accepts, !required)
                    .await
                    .map(|state| DocumentAuth::Proceed {
                        state,
                        set_cookies: Vec::new(),
                        no_store: false,
                    })
            };
            let (state, set_cookies, no_store) = match decided {
                Ok(DocumentAuth::Proceed {
                    state,
                    set_cookies,
                    no_store,
                }) => (state, set_cookies, no_store),
                Ok(DocumentAuth::Respond(response)) => {
                    let (req, _payload) = req.into_parts();
                    return Ok(ServiceResponse::new(req, response).map_into_right_body());
                }
                Err(err) => return Ok(refuse(req, &clerk, err)),
            };
            // A resolved handshake's cookies go on whatever the request is answered with.
            let finish = |mut res: ServiceResponse<EitherBody<B>>| {
                let headers = res.headers_mut();
                for cookie in set_cookies {
                    headers.append(header::SET_COOKIE, cookie);
                }
                if no_store {
                    headers.insert(
                        header::CACHE_CONTROL,
                        header::HeaderValue::from_static("no-store"),
                    );
                }
                res
            };
            if required {
                // Anonymous, pending and signed-out requests answer as a protected route would.
                if let Err(err) = state.require_any() {
                    return Ok(finish(refuse(req, &clerk, err)));
                }
            }
            req.extensions_mut().insert(RequestAuth {
                state,
                clerk,
                resolving: None,
            });
            service
                .call(req)
                .await
                .map(|res| finish(res.map_into_left_body()))
        }))
    }
}

/// What the middleware's service answers.
type Output<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

fn refuse<B>(req: ServiceRequest, clerk: &Clerk, err: AuthError) -> ServiceResponse<EitherBody<B>> {
    let (req, _payload) = req.into_parts();
    let response = clerk.error_response(&err, &req);
    ServiceResponse::new(req, response).map_into_right_body()
}
