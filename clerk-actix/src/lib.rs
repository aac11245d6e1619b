//! # clerk-actix
//!
//! [Clerk](https://clerk.com) authentication for [actix-web]: verify Clerk session tokens
//! (`Authorization: Bearer` or the `__session` cookie) with Clerk's own rules, against the
//! instance JWKS or a PEM key, with caches that keep RSA and HTTP off the hot path.
//!
//! ```no_run
//! use actix_web::{get, web, App, HttpServer, Responder};
//! use clerk_actix::{Clerk, ClerkMiddleware, ClerkSession};
//!
//! #[get("/me")]
//! async fn me(session: ClerkSession) -> impl Responder {
//!     web::Json(session) // the verified claims
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let clerk = Clerk::from_env().expect("set CLERK_SECRET_KEY or CLERK_JWT_KEY");
//!     HttpServer::new(move || {
//!         App::new()
//!             .wrap(ClerkMiddleware::new(clerk.clone())) // the one registration
//!             .service(me)
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! }
//! ```
//!
//! ## Architecture
//!
//! The folders of `src/` are the layers, and layers import only downward (CI checks both:
//! `python3 .ci/modcycles.py clerk-actix/src` finds no import cycle, and
//! `.ci/core-names-no-actix` finds no actix type outside `actix/`). The public paths
//! (`clerk_actix::session`, `clerk_actix::store`, ...) are re-exports in `lib.rs` and do not show
//! the folders.
//!
//! | folder | layer | what |
//! |---|---|---|
//! | `base/` | data | events (plain data, listeners, the log budget), errors and their reason codes, verified claims and `has()`, Clerk's user object, Unix time in Clerk's units; per-client budgets under a global ceiling, read slots in front of a cache, metrics; the Backend API client ([`api`]: spans, retries, Clerk's error body) |
//! | `tokens/` | protocol | session tokens and keys: PEM/JWKS keys ([`keys`]) and the remote key set's refresh ([`jwks`]), Clerk's verification rules ([`verify`], with the `azp` check), the verified-token cache, revoked users, authenticating one session token ([`session`]) |
//! | `machine/` | protocol | machine tokens ([`machine`]): the types, and the service (shape check, verify calls bounded for unknown tokens, a short cache; JWT forms with the session keys) |
//! | `mirror/` | protocol | the local mirror of Clerk's users: the user cache and per-model syncs ([`sync`]), the `UserStore` seam and its diesel stores ([`store`]: one file per backend, the model, the schema, the operations, the PostgreSQL change feed and connection), the `LISTEN` task applying other replicas' changes, the webhooks' verification and application ([`webhooks`]) |
//! | `handshake/` | protocol | the handshake's core for server-rendered pages: publishable key, cookie suffixes and selection, the cookie path's decision table, the redirect URL and loop guard, the return leg's payload and its bounded nonce exchange |
//! | `config/` | composition | the handle ([`Clerk`]) composing the services above, its builder ([`ClerkBuilder`]) apart from the environment reader, and the health report |
//! | `actix/` | actix adapters | the only code that names actix-web or awc: a request's token to an `AuthState` (header, else cookie); the handshake's document mode (the 307 to the Frontend API, the nonce exchange, cookies set on the page); [`ClerkMiddleware`], the [extractors](extract), `#[clerk_protected]`'s runtime ([`guard`]), errors as HTTP responses ([`response`], RFC 6750), the webhook and `/readyz` endpoints; and the Backend API's awc transport, a leaf the core's client calls as it would an HTTP crate |
//! | `testing/` | kit (feature `testing`) | `MockClerk`, token builder, webhook signer |
//!
//! One request: [`ClerkMiddleware`] takes the token (`auth::find_token`: `Authorization`,
//! else the `__session` cookie when authorized parties are set) → [`session`]: `cache` (canonical
//! key; a hit costs a hash lookup) → on a miss [`verify`] decodes, [`jwks`] (or the PEM key) supplies the
//! key, [`verify`] checks signature and claims → `revocation` refuses banned or deleted users →
//! the [`AuthState`] goes into the request → [`extract`] / [`guard`] hand it to the handler;
//! [`ClerkUser<U>`](struct@ClerkUser) asks [`sync`] for the local user (user cache, else Backend
//! API through [`api`] and an upsert through the [`UserStore`]). [`events`] reports each step.
//!
//! [actix-web]: https://actix.rs

#![forbid(unsafe_code)]
#![recursion_limit = "256"]
#![warn(missing_docs)]

// The folders are the layers (see the table above); the public paths below are the API.
mod actix;
mod base;
pub mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
/// The guide, one chapter per module (configuration, usage, guards, user sync, custom models,
/// webhooks, machine tokens, server-rendered pages, replicas, observability, security,
/// testing, reliability). Its examples are doctests: they need every feature.
#[cfg(any(
    doc,
    all(feature = "testing", feature = "postgres", feature = "sqlite")
))]
pub mod guide;
mod handshake;
pub mod machine;
mod mirror;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;

pub use actix::{extract, guard, middleware, response};
pub use base::{api, claims, error, events, user};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use mirror::store;
pub use mirror::sync;
pub use tokens::{jwks, keys, session, verify};

/// Health and readiness: [`Clerk::health`] reports what an orchestrator needs (keys loaded and
/// their age, the last JWKS and Backend API failures, whether each user store answers), and
/// [`readyz`](health::readyz) answers it over HTTP — 200 when the service can verify tokens, 503
/// when it cannot — ready to mount at `/readyz`. No secret, key material or token appears in it.
///
/// ```no_run
/// use actix_web::{web, App};
/// use clerk_actix::{health, ClerkMiddleware};
/// # fn demo(clerk: clerk_actix::Clerk) {
/// App::new()
///     .wrap(ClerkMiddleware::new(clerk))
///     .route("/readyz", web::get().to(health::readyz));
/// # }
/// ```
pub mod health {
    pub use crate::actix::health::readyz;
    pub use crate::config::health::*;
}

/// Clerk webhooks (Svix): [`WebhookVerifier`](webhooks::WebhookVerifier) checks the signature
/// of a delivery, and [`resource`](webhooks::resource) is a ready actix endpoint that keeps the
/// user table in sync with `user.created`, `user.updated` and `user.deleted`.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo() -> std::io::Result<()> {
/// use actix_web::{web, App, HttpServer};
/// use clerk_actix::{store::{ClerkUserRecord, DieselUserStore}, webhooks, Clerk, ClerkMiddleware};
///
/// let store: DieselUserStore = DieselUserStore::connect("app.sqlite").await.unwrap();
/// let clerk = Clerk::builder()
///     .secret_key("sk_test_...")
///     .webhook_signing_secret("whsec_...") // or CLERK_WEBHOOK_SIGNING_SECRET
///     .user_store(store)
///     .build()
///     .unwrap();
/// HttpServer::new(move || {
///     App::new()
///         .wrap(ClerkMiddleware::new(clerk.clone())) // the endpoint uses its handle
///         .service(webhooks::resource::<ClerkUserRecord>("/webhooks/clerk"))
/// })
/// .bind(("127.0.0.1", 8080))?
/// .run()
/// .await
/// # }
/// ```
pub mod webhooks {
    pub use crate::actix::webhooks::{resource, resource_for};
    pub use crate::mirror::webhooks::*;
}

pub use actix::auth::SESSION_COOKIE;
/// The actix-web this crate is built on, re-exported so a dependency on clerk-actix is enough.
pub use actix_web;
pub use claims::{
    ActiveOrganization, Actor, ClerkClaims, Has, Reverification, SessionStatus, VerificationLevel,
};
pub use clerk_actix_macros::clerk_protected;
/// `#[derive(ClerkUser)]` for your own diesel models (see the macro's docs); the same name as
/// the [`ClerkUser`](struct@ClerkUser) extractor, in the macro namespace.
pub use clerk_actix_macros::ClerkUser;
#[doc(hidden)]
pub use clerk_actix_macros::ClerkUser as ClerkUserModel;
pub use tokens::cache::{DEFAULT_TOKEN_CACHE_CAPACITY, DEFAULT_TOKEN_CACHE_MAX_BYTES};

// The README's example compiles with the doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

// Generated code names `::clerk_actix`, also inside this crate.
extern crate self as clerk_actix;

#[doc(hidden)]
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod __private {
    pub use diesel;
    #[cfg(feature = "postgres")]
    pub use diesel_async::AsyncPgConnection;
    pub use diesel_async::RunQueryDsl;
    pub use futures_util::future::{BoxFuture, FutureExt};
    pub use serde_json;

    #[cfg(feature = "sqlite")]
    pub use crate::mirror::store::AsyncSqliteConnection;
}
pub use config::{Clerk, ClerkBuilder, ConfigError};
pub use error::{AuthError, AuthErrorKind, AuthErrorReason};
pub use events::{AuthSource, ClerkEvent, EventListener, HandshakeOutcome, TokenCarrier};
pub use extract::{
    AuthState, ClerkAuth, ClerkMachine, ClerkSession, ClerkUser, OptionalClerkSession,
};
pub use keys::{KeyError, VerificationKeys};
pub use machine::{MachineAuth, TokenType, TokenTypes};
pub use middleware::ClerkMiddleware;
pub use sync::{DeletedUserPolicy, SyncError, SyncedUser, UserSource, UserStore};
pub use user::ClerkUserData;
pub use verify::{TokenVerifier, VerifyOptions};
