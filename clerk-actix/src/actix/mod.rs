//! The actix-web adapters: the only folder whose code names `actix_web`, `actix_http` or `awc`
//! (`.ci/core-names-no-actix` checks it). A request's token to an `AuthState` (`auth`), the
//! handshake's document mode for server-rendered pages (`document`), `ClerkMiddleware`, the
//! extractors, `#[clerk_protected]`'s runtime, errors as HTTP responses, the webhook and
//! `/readyz` endpoints, and the Backend API's awc transport (`transport`, a leaf the core's
//! client calls as it would an HTTP crate).

pub(crate) mod auth;
pub(crate) mod document;
pub mod extract;
pub mod guard;
pub(crate) mod health;
pub mod middleware;
pub mod response;
pub(crate) mod transport;
pub(crate) mod webhooks;
