//! The ground floor: what flows through the library (events, errors and their reason codes,
//! verified claims, Clerk's user object, Unix time in Clerk's units), the small mechanisms every
//! concern shares (per-client budgets, read slots in front of a cache, metrics), and the client
//! of Clerk's Backend API. Nothing here imports from the folders above it.

pub mod api;
pub(crate) mod budget;
pub mod claims;
pub(crate) mod clock;
pub mod error;
pub mod events;
pub(crate) mod slots;
pub(crate) mod telemetry;
pub mod user;
