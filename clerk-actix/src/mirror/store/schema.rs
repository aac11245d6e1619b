//! The tables: `clerk_users` (diesel's schema), and the store's own tables (tombstones,
//! deliveries, the change log) with their DDL and advisory-lock keys.

use super::*;

diesel::table! {
    use diesel::sql_types::*;
    use super::MetadataJson;

    /// The included user table (see the migrations in `clerk-actix/migrations/`).
    clerk_users (id) {
        /// Local primary key.
        id -> BigInt,
        /// Clerk's `user_...` id (unique).
        clerk_user_id -> Text,
        /// Primary email address.
        email -> Nullable<Text>,
        /// Username.
        username -> Nullable<Text>,
        /// First name.
        first_name -> Nullable<Text>,
        /// Last name.
        last_name -> Nullable<Text>,
        /// Profile image URL.
        image_url -> Nullable<Text>,
        /// Primary phone number.
        phone -> Nullable<Text>,
        /// Clerk's `external_id`.
        external_id -> Nullable<Text>,
        /// `public_metadata`: `JSONB` on PostgreSQL, JSON text on SQLite.
        public_metadata -> MetadataJson,
        /// Last activity, Unix ms.
        last_active_at -> Nullable<BigInt>,
        /// Last sign-in, Unix ms.
        last_sign_in_at -> Nullable<BigInt>,
        /// Banned in Clerk.
        banned -> Bool,
        /// Locked in Clerk.
        locked -> Bool,
        /// `!banned && !locked`, false after deactivation.
        is_active -> Bool,
        /// Clerk's `created_at`, Unix ms.
        created_at -> BigInt,
        /// Clerk's `updated_at`, Unix ms (orders updates).
        updated_at -> BigInt,
        /// When this row was last written from Clerk's data, Unix ms.
        synced_at -> BigInt,
    }
}

diesel::table! {
    /// Deleted Clerk user ids (deletion is final: Clerk never reuses an id). Created by the
    /// store itself ([`TOMBSTONES_DDL`]) for the included model and for yours.
    clerk_user_tombstones (clerk_user_id) {
        /// Clerk's `user_...` id.
        clerk_user_id -> Text,
        /// Clerk's deletion time, Unix ms.
        deleted_at -> BigInt,
    }
}

diesel::table! {
    /// Webhook deliveries applied (Svix's `svix-id`), recorded in the transaction of the write
    /// they caused: a delivery takes effect once, whichever process receives it. Kept for a
    /// week (swept by the change feed on PostgreSQL, at start-up on SQLite).
    clerk_webhook_deliveries (svix_id) {
        /// Svix's message id.
        svix_id -> Text,
        /// When it was applied, Unix ms.
        received_at -> BigInt,
    }
}

// The change log (PostgreSQL), for the feed's reads (a cached prepared statement).
#[cfg(feature = "postgres")]
pub(super) mod change_log {
    diesel::table! {
        clerk_user_changes (seq) {
            seq -> BigInt,
            clerk_user_id -> Text,
            kind -> Text,
            active -> Bool,
            version -> BigInt,
            recorded_at -> BigInt,
        }
    }
}

/// The tombstone table, the same on PostgreSQL and SQLite; idempotent.
pub const TOMBSTONES_DDL: &str = "CREATE TABLE IF NOT EXISTS clerk_user_tombstones (\
    clerk_user_id TEXT PRIMARY KEY, \
    deleted_at BIGINT NOT NULL)";

/// The delivery table, the same on PostgreSQL and SQLite; idempotent.
pub const DELIVERIES_DDL: &str = "CREATE TABLE IF NOT EXISTS clerk_webhook_deliveries (\
    svix_id TEXT PRIMARY KEY, \
    received_at BIGINT NOT NULL); \
    CREATE INDEX IF NOT EXISTS clerk_webhook_deliveries_received_at \
    ON clerk_webhook_deliveries (received_at)";

/// PostgreSQL's change log: every write to a user (upsert, deletion) adds a row in its own
/// transaction (rows commit in `seq` order) and wakes replicas with `NOTIFY` on
/// [`CHANGES_CHANNEL`]; replicas read and apply the rows after the last `seq` they applied, and
/// trust no notification's payload. Kept for 25 hours.
pub const CHANGES_DDL: &str = "CREATE TABLE IF NOT EXISTS clerk_user_changes (\
    seq BIGSERIAL PRIMARY KEY, \
    clerk_user_id TEXT NOT NULL, \
    kind TEXT NOT NULL, \
    active BOOLEAN NOT NULL, \
    version BIGINT NOT NULL, \
    recorded_at BIGINT NOT NULL); \
    CREATE INDEX IF NOT EXISTS clerk_user_changes_recorded_at \
    ON clerk_user_changes (recorded_at)";

/// The `NOTIFY` channel of user changes (PostgreSQL).
pub const CHANGES_CHANNEL: &str = "clerk_actix_user_changes";

/// The first key of every advisory lock the store takes: keeps them apart from the
/// application's own.
#[cfg(feature = "postgres")]
pub(super) const LOCK_SPACE: i32 = 1_131_179_883;
/// Second keys: the store's own tables, and the migrations.
#[cfg(feature = "postgres")]
pub(super) const LOCK_TABLES: i32 = 0;
#[cfg(feature = "postgres")]
pub(super) const LOCK_MIGRATIONS: i32 = 1;
/// The change log: held from a change's `seq` to its commit, so changes commit in `seq` order.
#[cfg(feature = "postgres")]
pub(super) const LOCK_CHANGES: i32 = 2;
