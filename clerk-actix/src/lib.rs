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
//! Layers import only downward (CI checks it: `python3 .ci/modcycles.py clerk-actix/src`). The
//! data and protocol layers use no actix-web types, except the Backend API transport ([`api`]),
//! which runs awc on its own thread; [`config`] holds the adapters' settings (the error hook).
//!
//! | layer | modules | concern |
//! |---|---|---|
//! | data | [`events`], [`error`], [`claims`], [`user`], `clock` | what flows through: events (plain data, listeners, the log budget), errors and their reason codes, verified claims and `has()`, Clerk's user object; Unix time in Clerk's units |
//! | protocol | [`keys`], [`verify`], `cache`, `budget`, [`jwks`], [`api`], `revocation`, [`session`], [`machine`], [`sync`], [`store`], `replication`, [`webhooks`] (verification), `webhooks::apply`, `handshake` | PEM/JWKS keys; Clerk's verification rules (the `azp` check is in `verify::TokenVerifier`); the verified-token cache; the remote key set and its refresh task; the Backend API transport (one client thread: every public future is `Send`); per-client budgets under a global ceiling for the calls a client can cause (unknown machine tokens, handshake nonces); revoked users; authenticating one session token (`session::Sessions`); machine tokens (`machine::Machines`: shape check, verify calls bounded for unknown tokens, a short cache; JWT forms with the session keys); the user cache, the per-model syncs (`sync::Users`) and the `UserStore` seam and its `ChangeFeed`; diesel stores with tombstones, durable `svix-id`s and (PostgreSQL) a change log announced with `NOTIFY`; the `LISTEN` task that applies other replicas' changes; Svix signatures and applying events; the handshake's protocol core (publishable key, cookie suffixes and selection, the cookie path's decision table, the redirect URL and loop guard, the return leg's payload and its bounded nonce exchange) |
//! | composition | [`config`] (`Clerk`, `ClerkBuilder`) | the handle: it composes the services above (sessions, users, revocations, webhooks, events) and the adapters' settings |
//! | actix adapters | `auth`, `document`, [`middleware`], [`extract`], [`guard`], [`response`], [`health`], `webhooks::endpoint` | a request's token (header, else cookie) to an `AuthState` (the accepted token types; a type the middleware leaves out deferred to the handler's guard); the handshake mode for server-rendered pages (`document`: the 307 to the Frontend API, the nonce exchange, cookies set on the page); `ClerkMiddleware`, the extractors, `#[clerk_protected]`'s runtime, errors as HTTP responses (RFC 6750), the webhook resource and `WebhookVerifier::verify_at` over actix headers; the health report and `/readyz` |
//! | kit | `testing` (feature `testing`) | `MockClerk`, token builder, webhook signer |
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

pub mod api;
mod auth;
mod budget;
mod cache;
pub mod claims;
mod clock;
pub mod config;
mod document;
pub mod error;
pub mod events;
pub mod extract;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
mod handshake;
pub mod health;
pub mod jwks;
pub mod keys;
pub mod machine;
pub mod middleware;
#[cfg(feature = "postgres")]
mod pg_connect;
mod replication;
pub mod response;
mod revocation;
pub mod session;
mod slots;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod store;
pub mod sync;
mod telemetry;
pub mod user;
pub mod verify;
pub mod webhooks;

#[cfg(feature = "testing")]
pub mod testing;

/// The actix-web this crate is built on, re-exported so a dependency on clerk-actix is enough.
pub use actix_web;
pub use auth::SESSION_COOKIE;
pub use cache::{DEFAULT_TOKEN_CACHE_CAPACITY, DEFAULT_TOKEN_CACHE_MAX_BYTES};
pub use claims::{
    ActiveOrganization, Actor, ClerkClaims, Has, Reverification, SessionStatus, VerificationLevel,
};
pub use clerk_actix_macros::clerk_protected;
/// `#[derive(ClerkUser)]` for your own diesel models (see the macro's docs); the same name as
/// the [`ClerkUser`](struct@ClerkUser) extractor, in the macro namespace.
pub use clerk_actix_macros::ClerkUser;
#[doc(hidden)]
pub use clerk_actix_macros::ClerkUser as ClerkUserModel;

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
    pub use crate::store::AsyncSqliteConnection;
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
