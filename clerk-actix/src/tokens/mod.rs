//! Session tokens and their keys: PEM and JWKS keys and the remote key set's refresh, Clerk's
//! verification rules, the verified-token cache, revoked users, and authenticating one session
//! token (`session::Sessions`). No actix type appears here.

pub(crate) mod cache;
pub mod jwks;
pub mod keys;
pub(crate) mod revocation;
pub mod session;
pub mod verify;
