//! The local mirror of Clerk's users: the user cache and the per-model syncs (`sync`), the
//! `UserStore` seam and its diesel stores with tombstones and (PostgreSQL) a change log
//! (`store`), the `LISTEN` task that applies other replicas' changes (`replication`), and the
//! webhooks that keep it current (`webhooks`: Svix signatures, applying Clerk's events). No
//! actix type appears here: the webhook endpoint is in `actix::webhooks`.

pub(crate) mod replication;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod store;
pub mod sync;
pub mod webhooks;
