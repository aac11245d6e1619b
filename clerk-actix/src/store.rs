//! [`DieselUserStore`]: the [`UserStore`] over diesel-async pools (deadpool) for PostgreSQL
//! (`AsyncPgConnection`, feature `postgres`) and SQLite (`SyncConnectionWrapper<SqliteConnection>`,
//! bundled, feature `sqlite`), with the included [`ClerkUserRecord`] model, its `clerk_users`
//! table and embedded migrations for both.

#[cfg(feature = "postgres")]
use std::time::Duration;
use std::{marker::PhantomData, sync::Arc};

use diesel::prelude::*;
use diesel_async::pooled_connection::{deadpool::Pool, AsyncDieselConnectionManager};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use futures_util::{future::BoxFuture, FutureExt};
use serde::Serialize;

#[cfg(feature = "sqlite")]
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
#[cfg(feature = "postgres")]
use diesel_async::AsyncPgConnection;

#[cfg(feature = "postgres")]
use crate::pg_connect::PgTarget;

#[cfg(feature = "postgres")]
use crate::sync::{ChangeSubscription, FeedItem, UserChange, UserChangeKind};
use crate::{
    sync::{ChangeFeed, DeletedUserPolicy, Delivered, StoreError, SyncedUser, UserStore},
    user::ClerkUserData,
};

/// An SQLite connection usable with diesel-async.
#[cfg(feature = "sqlite")]
pub type AsyncSqliteConnection = SyncConnectionWrapper<diesel::SqliteConnection>;

/// The SQL type of a metadata column: `JSONB` on PostgreSQL (queryable with `->`, `@>`, GIN
/// indexes), `TEXT` holding JSON on SQLite.
#[derive(
    Debug, Clone, Copy, Default, diesel::query_builder::QueryId, diesel::sql_types::SqlType,
)]
#[cfg_attr(feature = "postgres", diesel(postgres_type(name = "jsonb")))]
#[cfg_attr(feature = "sqlite", diesel(sqlite_type(name = "Text")))]
pub struct MetadataJson;

/// A metadata column's value: Clerk's JSON, stored as `JSONB` on PostgreSQL and JSON text on
/// SQLite ([`MetadataJson`]). Serializes as the JSON itself; `null` from Clerk is stored as `{}`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[serde(transparent)]
#[diesel(sql_type = MetadataJson)]
pub struct Metadata(pub serde_json::Value);

impl FromClerkField<serde_json::Value> for Metadata {
    fn from_clerk_field(value: serde_json::Value) -> Self {
        if value.is_null() {
            Self(serde_json::Value::Object(serde_json::Map::new()))
        } else {
            Self(value)
        }
    }
}

/// PostgreSQL's binary `jsonb`: a version byte (1) and the JSON text.
#[cfg(feature = "postgres")]
impl diesel::serialize::ToSql<MetadataJson, diesel::pg::Pg> for Metadata {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        use std::io::Write;
        out.write_all(&[1])?;
        serde_json::to_writer(out, &self.0)?;
        Ok(diesel::serialize::IsNull::No)
    }
}

#[cfg(feature = "postgres")]
impl diesel::deserialize::FromSql<MetadataJson, diesel::pg::Pg> for Metadata {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((1, json)) => Ok(Self(serde_json::from_slice(json)?)),
            _ => Err("unsupported jsonb encoding (expected version 1)".into()),
        }
    }
}

#[cfg(feature = "sqlite")]
impl diesel::serialize::ToSql<MetadataJson, diesel::sqlite::Sqlite> for Metadata {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::sqlite::Sqlite>,
    ) -> diesel::serialize::Result {
        out.set_value(self.0.to_string());
        Ok(diesel::serialize::IsNull::No)
    }
}

#[cfg(feature = "sqlite")]
impl diesel::deserialize::FromSql<MetadataJson, diesel::sqlite::Sqlite> for Metadata {
    fn from_sql(
        value: diesel::sqlite::SqliteValue<'_, '_, '_>,
    ) -> diesel::deserialize::Result<Self> {
        let text = <String as diesel::deserialize::FromSql<
            diesel::sql_types::Text,
            diesel::sqlite::Sqlite,
        >>::from_sql(value)?;
        Ok(Self(serde_json::from_str(&text)?))
    }
}

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
mod change_log {
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
const LOCK_SPACE: i32 = 1_131_179_883;
/// Second keys: the store's own tables, and the migrations.
#[cfg(feature = "postgres")]
const LOCK_TABLES: i32 = 0;
#[cfg(feature = "postgres")]
const LOCK_MIGRATIONS: i32 = 1;
/// The change log: held from a change's `seq` to its commit, so changes commit in `seq` order.
#[cfg(feature = "postgres")]
const LOCK_CHANGES: i32 = 2;

/// The included user model (the Django SDK's `ClerkUser`): a row of `clerk_users`, kept in
/// sync by `#[derive(ClerkUser)]` like any model of yours.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize, crate::ClerkUserModel)]
#[diesel(table_name = clerk_users)]
pub struct ClerkUserRecord {
    /// Local primary key.
    pub id: i64,
    /// Clerk's `user_...` id.
    #[clerk(id)]
    pub clerk_user_id: String,
    /// The primary email address.
    #[clerk(email)]
    pub email: Option<String>,
    /// Username.
    #[clerk(username)]
    pub username: Option<String>,
    /// First name.
    #[clerk(first_name)]
    pub first_name: Option<String>,
    /// Last name.
    #[clerk(last_name)]
    pub last_name: Option<String>,
    /// Profile image URL.
    #[clerk(image_url)]
    pub image_url: Option<String>,
    /// The primary phone number.
    #[clerk(phone)]
    pub phone: Option<String>,
    /// Clerk's `external_id`.
    #[clerk(external_id)]
    pub external_id: Option<String>,
    /// `public_metadata` (`JSONB` on PostgreSQL; `{}` when Clerk sends `null`).
    #[clerk(public_metadata)]
    pub public_metadata: Metadata,
    /// Last activity, Unix ms (day precision).
    #[clerk(last_active_at)]
    pub last_active_at: Option<i64>,
    /// Last sign-in, Unix ms.
    #[clerk(last_sign_in_at)]
    pub last_sign_in_at: Option<i64>,
    /// Banned in Clerk.
    #[clerk(banned)]
    pub banned: bool,
    /// Locked in Clerk.
    #[clerk(locked)]
    pub locked: bool,
    /// May sign in.
    #[clerk(is_active)]
    pub is_active: bool,
    /// Clerk's `created_at`, Unix ms.
    #[clerk(created_at)]
    pub created_at: i64,
    /// Clerk's `updated_at`, Unix ms.
    #[clerk(updated_at)]
    pub updated_at: i64,
    /// Last written from Clerk's data, Unix ms (a row synced within the user-cache TTL is
    /// served without asking Clerk).
    #[clerk(synced_at)]
    pub synced_at: i64,
}

/// Now, in Unix milliseconds (the value `#[clerk(synced_at)]` writes).
#[doc(hidden)]
pub fn now_ms() -> i64 {
    crate::clock::unix_ms()
}

/// The field marked `#[clerk(id)]`: Clerk user ids are always present, so it is a `String`.
#[diagnostic::on_unimplemented(
    message = "the #[clerk(id)] field must be a `String`, not `{Self}`",
    label = "Clerk user ids are always present: use `String`"
)]
pub trait ClerkIdField {
    /// The id.
    fn as_clerk_id(&self) -> &str;
}

impl ClerkIdField for String {
    fn as_clerk_id(&self) -> &str {
        self
    }
}

/// The field marked `#[clerk(updated_at)]`, read back as Clerk's `updated_at` (Unix ms) for
/// [`SyncedUser::updated_at`].
#[diagnostic::on_unimplemented(
    message = "the #[clerk(updated_at)] field must be an `i64` or `Option<i64>`, not `{Self}`",
    label = "Clerk times are Unix milliseconds: use `i64`"
)]
pub trait ClerkVersionField {
    /// The version.
    fn as_clerk_version(&self) -> Option<i64>;
}

impl ClerkVersionField for i64 {
    fn as_clerk_version(&self) -> Option<i64> {
        Some(*self)
    }
}

impl ClerkVersionField for Option<i64> {
    fn as_clerk_version(&self) -> Option<i64> {
        *self
    }
}

/// Converts a Clerk value into a model field's type (used by `#[derive(ClerkUser)]`). A field
/// whose type has no conversion from the value of its `#[clerk(...)]` key is a compile error at
/// that field.
#[diagnostic::on_unimplemented(
    message = "a `{Self}` field cannot hold the Clerk value `{V}` of its #[clerk(...)] key",
    label = "use a type that can hold `{V}` (see clerk_actix::store::FromClerkField)"
)]
pub trait FromClerkField<V>: Sized {
    /// The conversion.
    fn from_clerk_field(value: V) -> Self;
}

macro_rules! identity_field {
    ($($t:ty),*) => {$(
        impl FromClerkField<$t> for $t {
            fn from_clerk_field(value: $t) -> Self { value }
        }
    )*};
}
identity_field!(
    String,
    Option<String>,
    i64,
    Option<i64>,
    bool,
    serde_json::Value
);

/// A NOT NULL text column for an optional value: empty when Clerk has none.
impl FromClerkField<Option<String>> for String {
    fn from_clerk_field(value: Option<String>) -> Self {
        value.unwrap_or_default()
    }
}
impl FromClerkField<String> for Option<String> {
    fn from_clerk_field(value: String) -> Self {
        Some(value)
    }
}
impl FromClerkField<i64> for Option<i64> {
    fn from_clerk_field(value: i64) -> Self {
        Some(value)
    }
}
/// Metadata as JSON text (`{}` when Clerk sends `null`).
impl FromClerkField<serde_json::Value> for String {
    fn from_clerk_field(value: serde_json::Value) -> Self {
        if value.is_null() {
            "{}".to_owned()
        } else {
            value.to_string()
        }
    }
}
/// Metadata as nullable JSON text.
impl FromClerkField<serde_json::Value> for Option<String> {
    fn from_clerk_field(value: serde_json::Value) -> Self {
        (!value.is_null()).then(|| value.to_string())
    }
}

/// A model [`DieselUserStore`] can keep in sync: the backend-specific queries. Implemented by
/// [`ClerkUserRecord`].
pub trait DieselUserModel: SyncedUser + Sized {
    /// Upsert (one `INSERT ... ON CONFLICT (clerk_user_id) DO UPDATE ... WHERE updated_at <=
    /// new`), returning the stored row.
    #[cfg(feature = "postgres")]
    fn upsert_pg<'a>(
        conn: &'a mut AsyncPgConnection,
        user: &'a ClerkUserData,
    ) -> BoxFuture<'a, QueryResult<Self>>;
    /// The row for a Clerk user id.
    #[cfg(feature = "postgres")]
    fn find_pg<'a>(
        conn: &'a mut AsyncPgConnection,
        clerk_user_id: &'a str,
    ) -> BoxFuture<'a, QueryResult<Option<Self>>>;
    /// Sets the row inactive (the deletion's part of the row; the tombstone is the store's);
    /// rows changed.
    #[cfg(feature = "postgres")]
    fn deactivate_pg<'a>(
        conn: &'a mut AsyncPgConnection,
        clerk_user_id: &'a str,
    ) -> BoxFuture<'a, QueryResult<usize>>;
    /// Deletes the row; rows deleted.
    #[cfg(feature = "postgres")]
    fn delete_pg<'a>(
        conn: &'a mut AsyncPgConnection,
        clerk_user_id: &'a str,
    ) -> BoxFuture<'a, QueryResult<usize>>;

    /// SQLite upsert.
    #[cfg(feature = "sqlite")]
    fn upsert_sqlite<'a>(
        conn: &'a mut AsyncSqliteConnection,
        user: &'a ClerkUserData,
    ) -> BoxFuture<'a, QueryResult<Self>>;
    /// SQLite find.
    #[cfg(feature = "sqlite")]
    fn find_sqlite<'a>(
        conn: &'a mut AsyncSqliteConnection,
        clerk_user_id: &'a str,
    ) -> BoxFuture<'a, QueryResult<Option<Self>>>;
    /// SQLite deactivate.
    #[cfg(feature = "sqlite")]
    fn deactivate_sqlite<'a>(
        conn: &'a mut AsyncSqliteConnection,
        clerk_user_id: &'a str,
    ) -> BoxFuture<'a, QueryResult<usize>>;
    /// SQLite delete.
    #[cfg(feature = "sqlite")]
    fn delete_sqlite<'a>(
        conn: &'a mut AsyncSqliteConnection,
        clerk_user_id: &'a str,
    ) -> BoxFuture<'a, QueryResult<usize>>;
}

/// Expands its input only when clerk-actix has the `postgres` feature (used by generated code,
/// whose own crate features say nothing about clerk-actix's).
#[doc(hidden)]
#[cfg(feature = "postgres")]
#[macro_export]
macro_rules! __clerk_if_postgres {
    ($($t:tt)*) => { $($t)* };
}
#[doc(hidden)]
#[cfg(not(feature = "postgres"))]
#[macro_export]
macro_rules! __clerk_if_postgres {
    ($($t:tt)*) => {};
}
/// Expands its input only when clerk-actix has the `sqlite` feature.
#[doc(hidden)]
#[cfg(feature = "sqlite")]
#[macro_export]
macro_rules! __clerk_if_sqlite {
    ($($t:tt)*) => { $($t)* };
}
#[doc(hidden)]
#[cfg(not(feature = "sqlite"))]
#[macro_export]
macro_rules! __clerk_if_sqlite {
    ($($t:tt)*) => {};
}

/// The [`DieselUserModel`] queries of a model, for each enabled backend. Generated by
/// `#[derive(ClerkUser)]`; `$table` is a module alias of the diesel table, `$row` a type with
/// `fn from_data(&ClerkUserData) -> Self` deriving `Insertable` and `AsChangeset`
/// (`treat_none_as_null`), `$id` / `$updated_at` / `$active` column names.
#[doc(hidden)]
#[macro_export]
macro_rules! __clerk_user_model {
    (
        model = $model:ty,
        table = $table:ident,
        row = $row:ty,
        id = $id:ident,
        updated_at = [$($updated_at:ident)?],
        active = $active:ident $(,)?
    ) => {
        impl $crate::store::DieselUserModel for $model {
            $crate::__clerk_if_postgres! {
                $crate::__clerk_user_queries!(
                    $crate::__private::AsyncPgConnection, upsert_pg, find_pg, deactivate_pg, delete_pg,
                    $model, $table, $row, $id, [$($updated_at)?], $active
                );
            }
            $crate::__clerk_if_sqlite! {
                $crate::__clerk_user_queries!(
                    $crate::__private::AsyncSqliteConnection, upsert_sqlite, find_sqlite,
                    deactivate_sqlite, delete_sqlite,
                    $model, $table, $row, $id, [$($updated_at)?], $active
                );
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __clerk_user_queries {
    (
        $conn:ty, $upsert:ident, $find:ident, $deactivate:ident, $delete:ident,
        $model:ty, $table:ident, $row:ty, $id:ident, [$($updated_at:ident)?], $active:ident
    ) => {
        fn $upsert<'a>(
            conn: &'a mut $conn,
            user: &'a $crate::ClerkUserData,
        ) -> $crate::__private::BoxFuture<'a, $crate::__private::diesel::QueryResult<Self>> {
            #[allow(unused_imports)]
            use $crate::__private::diesel::{
                ExpressionMethods as _, OptionalExtension as _, QueryDsl as _, SelectableHelper as _,
            };
            #[allow(unused_imports)]
            use $crate::__private::{diesel, FutureExt as _};
            async move {
                let row = <$row>::from_data(user);
                let upsert = diesel::insert_into($table::table)
                    .values(&row)
                    .on_conflict($table::$id)
                    .do_update()
                    .set(&row);
                $(
                    // ... WHERE updated_at <= <incoming>: never go back in time.
                    let upsert = diesel::query_dsl::methods::FilterDsl::filter(
                        upsert,
                        $table::$updated_at.le(user.updated_at),
                    );
                )?
                let written = $crate::__private::RunQueryDsl::get_result(
                    upsert.returning(<$model>::as_returning()),
                    conn,
                )
                .await
                .optional()?;
                match written {
                    Some(record) => Ok(record),
                    // The stored row is newer: keep it.
                    None => {
                        $crate::__private::RunQueryDsl::first(
                            $table::table
                                .filter($table::$id.eq(&user.id))
                                .select(<$model>::as_select()),
                            conn,
                        )
                        .await
                    }
                }
            }
            .boxed()
        }

        fn $find<'a>(
            conn: &'a mut $conn,
            clerk_user_id: &'a str,
        ) -> $crate::__private::BoxFuture<'a, $crate::__private::diesel::QueryResult<Option<Self>>> {
            #[allow(unused_imports)]
            use $crate::__private::diesel::{
                ExpressionMethods as _, OptionalExtension as _, QueryDsl as _, SelectableHelper as _,
            };
            #[allow(unused_imports)]
            use $crate::__private::{FutureExt as _};
            $crate::__private::RunQueryDsl::first(
                $table::table
                    .filter($table::$id.eq(clerk_user_id))
                    .select(<$model>::as_select()),
                conn,
            )
            .map(|r| r.optional())
            .boxed()
        }

        fn $deactivate<'a>(
            conn: &'a mut $conn,
            clerk_user_id: &'a str,
        ) -> $crate::__private::BoxFuture<'a, $crate::__private::diesel::QueryResult<usize>> {
            #[allow(unused_imports)]
            use $crate::__private::diesel::{
                ExpressionMethods as _, OptionalExtension as _, QueryDsl as _, SelectableHelper as _,
            };
            #[allow(unused_imports)]
            use $crate::__private::{diesel, FutureExt as _};
            // Only `active`: the tombstone makes the deletion final, and `updated_at` keeps
            // Clerk's own time (never the local clock).
            $crate::__private::RunQueryDsl::execute(
                diesel::update($table::table.filter($table::$id.eq(clerk_user_id)))
                    .set($table::$active.eq(false)),
                conn,
            )
            .boxed()
        }

        fn $delete<'a>(
            conn: &'a mut $conn,
            clerk_user_id: &'a str,
        ) -> $crate::__private::BoxFuture<'a, $crate::__private::diesel::QueryResult<usize>> {
            #[allow(unused_imports)]
            use $crate::__private::diesel::{
                ExpressionMethods as _, OptionalExtension as _, QueryDsl as _, SelectableHelper as _,
            };
            #[allow(unused_imports)]
            use $crate::__private::{diesel, FutureExt as _};
            $crate::__private::RunQueryDsl::execute(
                diesel::delete($table::table.filter($table::$id.eq(clerk_user_id))),
                conn,
            )
            .boxed()
        }
    };
}

/// The included migrations for PostgreSQL (`clerk_users`).
#[cfg(feature = "postgres")]
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations/postgres");
/// The included migrations for SQLite (`clerk_users`).
#[cfg(feature = "sqlite")]
pub const SQLITE_MIGRATIONS: EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations/sqlite");

/// The database behind a [`DieselUserStore`].
#[derive(Clone)]
#[non_exhaustive]
pub enum DbPool {
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(Pool<AsyncPgConnection>),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(Pool<AsyncSqliteConnection>),
}

impl std::fmt::Debug for DbPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(p) => write!(f, "DbPool::Postgres({:?})", p.status()),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(p) => write!(f, "DbPool::Sqlite({:?})", p.status()),
        }
    }
}

/// [`UserStore`] over a diesel-async pool. `U` is the model: the included [`ClerkUserRecord`]
/// by default, or your own model with `#[derive(ClerkUser)]`.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo() -> Result<(), clerk_actix::sync::StoreError> {
/// use clerk_actix::store::DieselUserStore;
/// let store: DieselUserStore = DieselUserStore::connect("sqlite://app.sqlite").await?;
/// store.run_migrations().await?; // creates clerk_users if needed; safe on every start
/// # Ok(()) }
/// ```
pub struct DieselUserStore<U = ClerkUserRecord> {
    pool: DbPool,
    url: String,
    /// The pool reaches PostgreSQL through a transaction-mode pooler (`pgbouncer=true`): each
    /// operation runs in a transaction of its own.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pooler: bool,
    /// Set once the store's own tables (tombstones, deliveries, changes) are known to exist.
    tables: tokio::sync::OnceCell<()>,
    _model: PhantomData<fn() -> U>,
}

impl<U> std::fmt::Debug for DieselUserStore<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselUserStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

fn store_err(context: &str, e: impl std::fmt::Display) -> StoreError {
    let text = e.to_string();
    // A prepared statement missing on the server, or already there: the signature of a
    // transaction-mode pooler (PgBouncer, Supavisor) the URL does not mention.
    let hint = if text.contains("prepared statement \"s")
        && (text.contains("does not exist") || text.contains("already exists"))
    {
        " (through a transaction-mode pooler? add pgbouncer=true to the connection string)"
    } else {
        ""
    };
    StoreError::new(format!("{context}: {text}{hint}"))
}

/// Strips `sqlite://` / `sqlite:` to the file path SQLite expects.
#[cfg(feature = "sqlite")]
fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

/// A connection from the pool, or (with `?`) the store error naming the pool.
macro_rules! pooled {
    ($pool:expr, $what:literal) => {
        $pool.get().await.map_err(|e| store_err($what, e))?
    };
}

impl<U> DieselUserStore<U> {
    /// Connects a pool to `database_url`: `postgres://...` / `postgresql://...` or libpq's
    /// key/value form (`host=... dbname=...`) (feature `postgres`; TLS as its `sslmode` asks and
    /// `PG*` environment variables as libpq reads them, see [`postgres_manager`]), or
    /// `sqlite://path` or a plain file path (feature `sqlite`;
    /// in-memory databases are refused, as each pooled connection would get its own).
    /// Connections are made lazily; this fails only on a bad URL.
    pub async fn connect(database_url: &str) -> Result<Self, StoreError> {
        let url = database_url.trim();
        // libpq's key/value form (`host=db dbname=app ...`) is PostgreSQL too.
        let key_value = ["host=", "hostaddr=", "dbname=", "user=", "port="]
            .iter()
            .any(|k| url.starts_with(k));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") || key_value {
            #[cfg(feature = "postgres")]
            {
                let manager = postgres_manager(url)?;
                let pool = Pool::builder(manager)
                    .max_size(16)
                    .wait_timeout(Some(std::time::Duration::from_secs(5)))
                    .create_timeout(Some(std::time::Duration::from_secs(5)))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| store_err("postgres pool", e))?;
                return Self::from_pool(DbPool::Postgres(pool), url);
            }
            #[cfg(not(feature = "postgres"))]
            return Err(StoreError::new(
                "a postgres:// URL needs clerk-actix's `postgres` feature",
            ));
        }
        #[cfg(feature = "sqlite")]
        {
            let path = sqlite_path(url).to_owned();
            if path.is_empty() || path.contains(":memory:") || path.contains("mode=memory") {
                // Every pooled connection (and the migration connection) would get its own
                // empty database: the table would never exist for the pool.
                return Err(StoreError::new(
                    "in-memory SQLite is not supported by the pooled store: use a file path",
                ));
            }
            let mut config = diesel_async::pooled_connection::ManagerConfig::default();
            config.custom_setup = Box::new(|url| {
                let url = url.to_owned();
                async move {
                    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
                    let mut conn = AsyncSqliteConnection::establish(&url).await?;
                    // Wait for a concurrent writer instead of failing with SQLITE_BUSY.
                    conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                    Ok(conn)
                }
                .boxed()
            });
            let manager = AsyncDieselConnectionManager::<AsyncSqliteConnection>::new_with_config(
                &path, config,
            );
            let pool = Pool::builder(manager)
                .max_size(4)
                .wait_timeout(Some(std::time::Duration::from_secs(5)))
                .create_timeout(Some(std::time::Duration::from_secs(5)))
                .runtime(deadpool::Runtime::Tokio1)
                .build()
                .map_err(|e| store_err("sqlite pool", e))?;
            Self::from_pool(DbPool::Sqlite(pool), &path)
        }
        #[cfg(not(feature = "sqlite"))]
        Err(StoreError::new(
            "only postgres:// URLs are supported without clerk-actix's `sqlite` feature",
        ))
    }

    /// A store over an existing pool. `url` is the pool's database: the migrations and, on
    /// PostgreSQL, the change feed connect to it themselves (a `postgres://` URL or libpq's
    /// key/value string, read as [`postgres_manager`] reads it, `PG*` variables included). For
    /// a pool through a transaction-mode pooler, pass the pooled string with `pgbouncer=true`
    /// (the pool's manager made from it too): the store then runs each operation in a
    /// transaction; add the direct string with [`with_direct_url`](Self::with_direct_url). A
    /// PostgreSQL `url` that cannot be used is an error here rather than a store without its
    /// feed.
    pub fn from_pool(pool: DbPool, url: &str) -> Result<Self, StoreError> {
        #[cfg(feature = "postgres")]
        let pooler = match pool {
            DbPool::Postgres(_) => PgTarget::parse(url)
                .map_err(|e| store_err("postgres URL", e))?
                .transaction_pooler(),
            #[cfg(feature = "sqlite")]
            DbPool::Sqlite(_) => false,
        };
        #[cfg(not(feature = "postgres"))]
        let pooler = false;
        Ok(Self {
            pool,
            url: url.trim().to_owned(),
            pooler,
            tables: tokio::sync::OnceCell::new(),
            _model: PhantomData,
        })
    }

    /// Uses `direct_url` — the same database reached directly, not through a transaction-mode
    /// pooler — for what needs a session of its own: the migrations and the change feed's
    /// `LISTEN` (managed services hand out both strings, e.g. `CLERK_DATABASE_DIRECT_URL` in the
    /// quickstart). Without it, through such a pooler the feed notices that it hears nothing
    /// and reads the change log every second instead.
    pub fn with_direct_url(mut self, direct_url: &str) -> Result<Self, StoreError> {
        #[cfg(feature = "postgres")]
        if matches!(self.pool, DbPool::Postgres(_)) {
            PgTarget::parse(direct_url).map_err(|e| store_err("postgres direct URL", e))?;
        }
        self.url = direct_url.trim().to_owned();
        Ok(self)
    }

    /// The pool.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// Runs the included `clerk_users` migrations (idempotent: applied ones are skipped) and
    /// creates the store's own tables (tombstones, webhook deliveries and, on PostgreSQL, the
    /// change log). Call once at start-up; an empty database then just works. On PostgreSQL it
    /// runs under an advisory lock, so replicas starting together do not race.
    pub async fn run_migrations(&self) -> Result<(), StoreError> {
        match &self.pool {
            #[cfg(feature = "postgres")]
            DbPool::Postgres(_) => {
                run_migrations_pg(self.url.clone(), POSTGRES_MIGRATIONS).await?;
            }
            #[cfg(feature = "sqlite")]
            DbPool::Sqlite(_) => {
                run_migrations_sqlite(self.url.clone(), SQLITE_MIGRATIONS).await?;
            }
        }
        self.ensure_tables().await
    }

    /// Creates the store's own tables if needed, once per store (models of your own get them
    /// without any migration of theirs). On PostgreSQL under an advisory lock (replicas racing
    /// on `CREATE TABLE IF NOT EXISTS` could otherwise fail); on SQLite it also sweeps
    /// deliveries past their retention.
    async fn ensure_tables(&self) -> Result<(), StoreError> {
        self.tables
            .get_or_try_init(|| async {
                match &self.pool {
                    #[cfg(feature = "postgres")]
                    DbPool::Postgres(pool) => {
                        let mut conn = pooled!(pool, "postgres pool");
                        create_tables_pg(&mut conn).await
                    }
                    #[cfg(feature = "sqlite")]
                    DbPool::Sqlite(pool) => {
                        use diesel_async::SimpleAsyncConnection;
                        let mut conn = pooled!(pool, "sqlite pool");
                        conn.batch_execute(&format!("{TOMBSTONES_DDL}; {DELIVERIES_DDL}"))
                            .await
                            .map_err(|e| store_err("store tables", e))?;
                        let before = crate::clock::unix_ms().saturating_sub(
                            crate::replication::DELIVERIES_RETENTION.as_millis() as i64,
                        );
                        diesel_async::RunQueryDsl::execute(
                            diesel::delete(
                                clerk_webhook_deliveries::table
                                    .filter(clerk_webhook_deliveries::received_at.lt(before)),
                            ),
                            &mut conn,
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| store_err("delivery sweep", e))
                    }
                }
            })
            .await
            .map(|_| ())
    }
}

/// The store's own tables on PostgreSQL.
#[cfg(feature = "postgres")]
const STORE_TABLES: [&str; 3] = [
    "clerk_user_tombstones",
    "clerk_webhook_deliveries",
    "clerk_user_changes",
];

/// A table's name, as `QueryableByName`.
#[cfg(feature = "postgres")]
#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// Makes sure the store's tables exist on PostgreSQL. When they do (a migrated database), this
/// is one read and no DDL: a role with only `SELECT`/`INSERT`/`UPDATE`/`DELETE` runs the
/// application. When some are missing, they are created under an advisory lock (serialized
/// between processes); a role that may not create them gets an error naming the migration.
#[cfg(feature = "postgres")]
async fn create_tables_pg(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    // In a transaction, as every statement that may go through a transaction-mode pooler.
    let missing: Vec<TableName> = conn
        .transaction(async |conn| {
            diesel_async::RunQueryDsl::load(
                diesel::sql_query(
                    "SELECT name FROM unnest($1::text[]) AS t(name) \
                     WHERE to_regclass(name) IS NULL",
                )
                .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(
                    STORE_TABLES.to_vec(),
                ),
                conn,
            )
            .await
        })
        .await
        .map_err(|e| store_err("store tables", e))?;
    if missing.is_empty() {
        return Ok(());
    }
    let names = missing
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    conn.transaction(async |conn| {
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind::<diesel::sql_types::Integer, _>(LOCK_SPACE)
                .bind::<diesel::sql_types::Integer, _>(LOCK_TABLES),
            conn,
        )
        .await?;
        conn.batch_execute(&format!(
            "{TOMBSTONES_DDL}; {DELIVERIES_DDL}; {CHANGES_DDL}"
        ))
        .await
    })
    .await
    .map_err(|e| {
        StoreError::new(format!(
            "the store's tables {names} are missing and could not be created ({e}): run \
             `run_migrations()` once as the tables' owner (migration \
             2026-12-07-000000_store_tables), or apply clerk-actix/migrations/postgres"
        ))
    })
}

/// Runs migrations on a blocking thread: diesel's migration harness is synchronous.
#[cfg(feature = "sqlite")]
pub async fn run_migrations_sqlite(
    path: String,
    migrations: EmbeddedMigrations,
) -> Result<(), StoreError> {
    let task = tokio::task::spawn_blocking(move || {
        let mut conn = diesel::SqliteConnection::establish(sqlite_path(&path))
            .map_err(|e| store_err("sqlite connect", e))?;
        conn.run_pending_migrations(migrations)
            .map(|_| ())
            .map_err(|e| store_err("sqlite migrations", e))
    });
    task.await.map_err(|e| store_err("migration task", e))?
}

/// A deadpool manager for `AsyncPgConnection`s to `database_url`, with TLS as its `sslmode`
/// asks (for a pool of your own, e.g. passed to [`DieselUserStore::from_pool`]):
///
/// | `sslmode` | TLS | server certificate checked |
/// |---|---|---|
/// | `disable` | never | — |
/// | `allow`, `prefer` (the default, as libpq) | when the server offers it | no |
/// | `require` | always | no; the chain when `sslrootcert` is set (as libpq) |
/// | `verify-ca` | always | the chain |
/// | `verify-full` | always | the chain, and the host name or IP address |
///
/// The chain is checked against `sslrootcert=<PEM file>` (your provider's CA bundle) or, without
/// it or with `sslrootcert=system`, the Mozilla roots (`webpki-roots`). TLS is rustls with
/// aws-lc-rs; client certificates (`sslcert`, `sslkey`) and CRLs are refused with an error. Fails
/// only on a URL or `sslrootcert` that cannot be read; connections are made by the pool.
///
/// `pgbouncer=true` (a string through a transaction-mode pooler, Prisma's name for it) makes
/// connections that cache no prepared statement and check themselves with a simple query; run
/// every query of yours on such a pool inside a transaction.
///
/// ```no_run
/// # fn demo() -> Result<(), clerk_actix::sync::StoreError> {
/// use clerk_actix::store::{postgres_manager, DbPool, DieselUserStore};
/// use diesel_async::pooled_connection::deadpool::Pool;
/// let url = "postgres://app:pw@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem";
/// let pool = Pool::builder(postgres_manager(url)?).max_size(32).build().expect("pool");
/// let store: DieselUserStore = DieselUserStore::from_pool(DbPool::Postgres(pool), url)?;
/// # Ok(()) }
/// ```
#[cfg(feature = "postgres")]
pub fn postgres_manager(
    database_url: &str,
) -> Result<AsyncDieselConnectionManager<AsyncPgConnection>, StoreError> {
    let target =
        Arc::new(PgTarget::parse(database_url.trim()).map_err(|e| store_err("postgres URL", e))?);
    let mut config = diesel_async::pooled_connection::ManagerConfig::default();
    if target.transaction_pooler() {
        // The default check prepares `SELECT 1` outside a transaction; a simple query instead.
        config.recycling_method = diesel_async::pooled_connection::RecyclingMethod::CustomFunction(
            Box::new(|conn: &mut AsyncPgConnection| {
                use diesel_async::SimpleAsyncConnection;
                conn.batch_execute("SELECT 1").boxed()
            }),
        );
    }
    config.custom_setup = Box::new(move |_url| {
        let target = Arc::clone(&target);
        async move { target.establish().await }.boxed()
    });
    Ok(AsyncDieselConnectionManager::new_with_config(
        database_url.trim(),
        config,
    ))
}

/// One `AsyncPgConnection` to `database_url`, with TLS as its `sslmode` asks (the table of
/// [`postgres_manager`]).
#[cfg(feature = "postgres")]
pub async fn establish_postgres(database_url: &str) -> Result<AsyncPgConnection, StoreError> {
    let target = PgTarget::parse(database_url.trim()).map_err(|e| store_err("postgres URL", e))?;
    target
        .establish()
        .await
        .map_err(|e| store_err("postgres connect", e))
}

/// The versions of `migrations` the database has not applied, read with `SELECT` only (no
/// DDL, no lock): a started process on a migrated database needs no `CREATE` privilege.
#[cfg(feature = "postgres")]
async fn pending_migrations_pg(
    conn: &mut AsyncPgConnection,
    migrations: &EmbeddedMigrations,
) -> Result<Vec<String>, StoreError> {
    use diesel::migration::MigrationSource;
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let all: Vec<String> = MigrationSource::<diesel::pg::Pg>::migrations(migrations)
        .map_err(|e| store_err("postgres migrations", e))?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    // One transaction (a transaction-mode pooler keeps a server for it, not for a session).
    let applied: Vec<Version> = diesel_async::AsyncConnection::transaction(conn, async |conn| {
        let table: Vec<TableName> = diesel_async::RunQueryDsl::load(
            diesel::sql_query(
                "SELECT '__diesel_schema_migrations'::text AS name \
                 WHERE to_regclass('__diesel_schema_migrations') IS NOT NULL",
            ),
            conn,
        )
        .await?;
        if table.is_empty() {
            return Ok(Vec::new());
        }
        diesel_async::RunQueryDsl::load(
            diesel::sql_query("SELECT version FROM __diesel_schema_migrations"),
            conn,
        )
        .await
    })
    .await
    .map_err(|e: diesel::result::Error| store_err("postgres migrations", e))?;
    Ok(all
        .into_iter()
        .filter(|v| !applied.iter().any(|a| &a.version == v))
        .collect())
}

/// Runs migrations on a thread of its own with a multi-threaded runtime, as diesel's migration
/// harness is synchronous (actix's runtime is single-threaded).
///
/// With nothing pending this only reads (`SELECT`): no lock, no DDL. Otherwise the pending
/// migrations run in one transaction that first takes a transaction-scoped advisory lock, so
/// replicas starting together take turns (the first applies, the others then find nothing
/// pending), also through a transaction-mode pooler, and a failed start leaves no lock behind.
#[cfg(feature = "postgres")]
pub async fn run_migrations_pg(
    url: String,
    migrations: EmbeddedMigrations,
) -> Result<(), StoreError> {
    let target = PgTarget::parse(&url).map_err(|e| store_err("postgres URL", e))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("clerk-actix-migrations".into())
        .spawn(move || {
            let result = (|| {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(|e| store_err("migration runtime", e))?;
                rt.block_on(async move {
                    let task = tokio::spawn(async move {
                        let mut conn = target
                            .establish()
                            .await
                            .map_err(|e| store_err("postgres connect", e))?;
                        let pending = pending_migrations_pg(&mut conn, &migrations).await?;
                        if pending.is_empty() {
                            return Ok(());
                        }
                        tokio::task::block_in_place(move || {
                            apply_migrations_pg(conn, migrations, &pending)
                        })
                    });
                    task.await.map_err(|e| store_err("migration task", e))?
                })
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| store_err("migration thread", e))?;
    rx.await
        .map_err(|_| StoreError::new("the migration thread stopped"))?
}

/// Applies what is pending in one transaction under the migrations' advisory lock (blocking:
/// diesel's harness is synchronous). Errors name the pending migrations, e.g. when the role
/// may not create tables.
#[cfg(feature = "postgres")]
fn apply_migrations_pg(
    conn: AsyncPgConnection,
    migrations: EmbeddedMigrations,
    pending: &[String],
) -> Result<(), StoreError> {
    use diesel::{Connection, RunQueryDsl};
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
    let mut conn: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
    conn.transaction::<_, Box<dyn std::error::Error + Send + Sync>, _>(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind::<diesel::sql_types::Integer, _>(LOCK_SPACE)
            .bind::<diesel::sql_types::Integer, _>(LOCK_MIGRATIONS)
            .execute(conn)?;
        conn.run_pending_migrations(migrations)?;
        Ok(())
    })
    .map_err(|e| {
        StoreError::new(format!(
            "postgres migrations: could not apply {} ({e}); if this role may not create \
             tables, run them once as the tables' owner",
            pending.join(", ")
        ))
    })
}

/// `$body` with `$c` bound to the connection `$conn`: in a transaction of its own when
/// `$pooler` (a transaction-mode pooler hands each transaction, not each session, a server).
#[cfg(feature = "postgres")]
macro_rules! pg_unit {
    ($pooler:expr, $conn:expr, |$c:ident| $body:expr) => {{
        let conn: &mut AsyncPgConnection = $conn;
        if $pooler {
            use diesel_async::AsyncConnection;
            conn.transaction(async |$c| $body).await
        } else {
            let $c = conn;
            $body
        }
    }};
}

/// Runs `U::$pg` or `U::$sqlite` on a pooled connection of the store's backend.
macro_rules! on_backend {
    ($store:expr, $pg:ident, $sqlite:ident, $($arg:expr),*) => {
        match &$store.pool {
            #[cfg(feature = "postgres")]
            DbPool::Postgres(pool) => {
                let mut conn = pooled!(pool, "postgres pool");
                pg_unit!($store.pooler, &mut *conn, |c| U::$pg(c, $($arg),*).await)
            }
            #[cfg(feature = "sqlite")]
            DbPool::Sqlite(pool) => {
                let mut conn = pooled!(pool, "sqlite pool");
                U::$sqlite(&mut conn, $($arg),*).await
            }
        }
    };
}

/// Clerk's deletion time of a tombstoned id (any backend's connection).
macro_rules! tombstone_of {
    ($conn:expr, $id:expr) => {
        diesel_async::RunQueryDsl::first::<i64>(
            clerk_user_tombstones::table
                .filter(clerk_user_tombstones::clerk_user_id.eq($id))
                .select(clerk_user_tombstones::deleted_at),
            $conn,
        )
        .await
        .optional()
    };
}

/// Writes a tombstone (kept if one exists); `true` when it is new.
macro_rules! insert_tombstone {
    ($conn:expr, $id:expr, $at:expr) => {
        diesel_async::RunQueryDsl::execute(
            diesel::insert_into(clerk_user_tombstones::table)
                .values((
                    clerk_user_tombstones::clerk_user_id.eq($id),
                    clerk_user_tombstones::deleted_at.eq($at),
                ))
                .on_conflict_do_nothing(),
            $conn,
        )
        .await
        .map(|n| n > 0)
    };
}

/// Serializes the writes for one Clerk id until the transaction ends (PostgreSQL): an upsert
/// and a deletion of the same id never interleave, so a row cannot be written after its
/// tombstone. (SQLite has a single writer: each transaction below writes first, which takes
/// the database's write lock before anything is read.)
#[cfg(feature = "postgres")]
async fn lock_id_pg(conn: &mut AsyncPgConnection, clerk_user_id: &str) -> QueryResult<()> {
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<diesel::sql_types::Integer, _>(LOCK_SPACE)
            .bind::<diesel::sql_types::Text, _>(clerk_user_id),
        conn,
    )
    .await
    .map(|_| ())
}

/// Records a delivery (`svix-id`); `false` when it was recorded before (a duplicate).
macro_rules! insert_delivery {
    ($conn:expr, $svix_id:expr) => {
        diesel_async::RunQueryDsl::execute(
            diesel::insert_into(clerk_webhook_deliveries::table)
                .values((
                    clerk_webhook_deliveries::svix_id.eq($svix_id),
                    clerk_webhook_deliveries::received_at.eq(crate::clock::unix_ms()),
                ))
                .on_conflict_do_nothing(),
            $conn,
        )
        .await
        .map(|n| n > 0)
    };
}

/// The database's clock, Unix ms.
#[cfg(feature = "postgres")]
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Adds a change to the log and announces it (`NOTIFY`, delivered when the transaction
/// commits, to every replica listening). The notification is only a wake-up: replicas read the
/// log by `seq`, and never trust a payload (any role that can connect may `NOTIFY`). Its payload
/// keeps the form of earlier versions, which applied it, so they keep working during a rolling
/// upgrade.
///
/// The log's lock is taken before the row gets its `seq` and held until the transaction ends:
/// changes commit in `seq` order, so a reader that has seen `seq` n has seen every change
/// before it, and catching up "after n" misses nothing. (Every writer takes the user's lock
/// first and this one last: no deadlock.)
#[cfg(feature = "postgres")]
async fn record_change_pg(
    conn: &mut AsyncPgConnection,
    clerk_user_id: &str,
    kind: UserChangeKind,
    active: bool,
    version: i64,
) -> QueryResult<()> {
    use diesel::sql_types::{BigInt, Bool, Integer, Text};
    // One statement: the row's values are selected from the lock's result, so the lock is taken
    // before `nextval` gives the row its seq.
    let sql = format!(
        "WITH l AS (SELECT pg_advisory_xact_lock($5, $6)), \
         c AS (INSERT INTO clerk_user_changes \
           (clerk_user_id, kind, active, version, recorded_at) \
           SELECT $1, $2, $3, $4, {DB_NOW_MS} FROM l \
           RETURNING seq, kind, active, version, recorded_at, clerk_user_id) \
         SELECT pg_notify('{CHANGES_CHANNEL}', concat_ws(E'\\t', seq, kind, \
           CASE WHEN active THEN '1' ELSE '0' END, version, recorded_at, clerk_user_id)) FROM c"
    );
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(sql)
            .bind::<Text, _>(clerk_user_id)
            .bind::<Text, _>(kind.as_str())
            .bind::<Bool, _>(active)
            .bind::<BigInt, _>(version)
            .bind::<Integer, _>(LOCK_SPACE)
            .bind::<Integer, _>(LOCK_CHANGES),
        conn,
    )
    .await
    .map(|_| ())
}

/// A SQLite transaction's early end, which writes nothing (rolled back), or its failure.
#[cfg(feature = "sqlite")]
enum SqliteOutcome {
    Duplicate,
    Tombstoned,
    Failed(diesel::result::Error),
}

#[cfg(feature = "sqlite")]
impl From<diesel::result::Error> for SqliteOutcome {
    fn from(e: diesel::result::Error) -> Self {
        Self::Failed(e)
    }
}

impl<U: DieselUserModel> DieselUserStore<U> {
    /// The upsert, with the delivery recorded in its transaction when there is one; on
    /// PostgreSQL the change is logged and announced in it too.
    async fn write_user(
        &self,
        user: &ClerkUserData,
        svix_id: Option<&str>,
    ) -> Result<Delivered<Option<U>>, StoreError> {
        use diesel_async::AsyncConnection;
        self.ensure_tables().await?;
        let id = user.id.as_str();
        let written: QueryResult<Delivered<Option<U>>> = match &self.pool {
            #[cfg(feature = "postgres")]
            DbPool::Postgres(pool) => {
                let mut conn = pooled!(pool, "postgres pool");
                conn.transaction(async |conn| {
                    lock_id_pg(conn, id).await?;
                    if let Some(svix_id) = svix_id {
                        if !insert_delivery!(conn, svix_id)? {
                            return Ok(Delivered::Duplicate);
                        }
                    }
                    if tombstone_of!(conn, id)?.is_some() {
                        return Ok(Delivered::Applied(None));
                    }
                    let row = U::upsert_pg(conn, user).await?;
                    // The stored row decides (it may be newer than the data written).
                    let version = row.updated_at().unwrap_or(user.updated_at);
                    record_change_pg(conn, id, UserChangeKind::Updated, row.is_active(), version)
                        .await?;
                    Ok(Delivered::Applied(Some(row)))
                })
                .await
            }
            #[cfg(feature = "sqlite")]
            DbPool::Sqlite(pool) => {
                let mut conn = pooled!(pool, "sqlite pool");
                let written = conn
                    .transaction(async |conn| {
                        // A write first: it takes the database's write lock.
                        if let Some(svix_id) = svix_id {
                            if !insert_delivery!(conn, svix_id)? {
                                return Err(SqliteOutcome::Duplicate);
                            }
                        }
                        let row = U::upsert_sqlite(conn, user).await?;
                        if tombstone_of!(conn, id)?.is_some() {
                            return Err(SqliteOutcome::Tombstoned);
                        }
                        Ok(row)
                    })
                    .await;
                match written {
                    Ok(row) => Ok(Delivered::Applied(Some(row))),
                    Err(SqliteOutcome::Duplicate) => Ok(Delivered::Duplicate),
                    Err(SqliteOutcome::Tombstoned) => Ok(Delivered::Applied(None)),
                    Err(SqliteOutcome::Failed(e)) => Err(e),
                }
            }
        };
        written.map_err(|e| store_err("upsert", e))
    }

    /// The deletion (tombstone + policy), with the delivery recorded in its transaction when
    /// there is one; on PostgreSQL the change is logged and announced in it too.
    async fn write_deletion(
        &self,
        id: &str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
        svix_id: Option<&str>,
    ) -> Result<Delivered<bool>, StoreError> {
        use diesel_async::AsyncConnection;
        self.ensure_tables().await?;
        let created: QueryResult<Delivered<bool>> = match &self.pool {
            #[cfg(feature = "postgres")]
            DbPool::Postgres(pool) => {
                let mut conn = pooled!(pool, "postgres pool");
                conn.transaction(async |conn| {
                    lock_id_pg(conn, id).await?;
                    if let Some(svix_id) = svix_id {
                        if !insert_delivery!(conn, svix_id)? {
                            return Ok(Delivered::Duplicate);
                        }
                    }
                    let created = insert_tombstone!(conn, id, deleted_at)?;
                    match policy {
                        DeletedUserPolicy::Deactivate => U::deactivate_pg(conn, id).await?,
                        DeletedUserPolicy::Delete => U::delete_pg(conn, id).await?,
                    };
                    record_change_pg(conn, id, UserChangeKind::Deleted, false, deleted_at).await?;
                    Ok(Delivered::Applied(created))
                })
                .await
            }
            #[cfg(feature = "sqlite")]
            DbPool::Sqlite(pool) => {
                let mut conn = pooled!(pool, "sqlite pool");
                let written = conn
                    .transaction(async |conn| {
                        if let Some(svix_id) = svix_id {
                            if !insert_delivery!(conn, svix_id)? {
                                return Err(SqliteOutcome::Duplicate);
                            }
                        }
                        let created = insert_tombstone!(conn, id, deleted_at)?;
                        match policy {
                            DeletedUserPolicy::Deactivate => U::deactivate_sqlite(conn, id).await?,
                            DeletedUserPolicy::Delete => U::delete_sqlite(conn, id).await?,
                        };
                        Ok(created)
                    })
                    .await;
                match written {
                    Ok(created) => Ok(Delivered::Applied(created)),
                    Err(SqliteOutcome::Duplicate) => Ok(Delivered::Duplicate),
                    Err(SqliteOutcome::Failed(e)) => Err(e),
                    Err(SqliteOutcome::Tombstoned) => Ok(Delivered::Applied(false)),
                }
            }
        };
        created.map_err(|e| store_err("mark deleted", e))
    }
}

/// A written value, for callers that record no delivery (they never get `Duplicate`).
fn applied<T>(written: Delivered<T>, duplicate: T) -> T {
    match written {
        Delivered::Applied(value) => value,
        Delivered::Duplicate => duplicate,
    }
}

impl<U: DieselUserModel> UserStore for DieselUserStore<U> {
    type User = U;

    fn upsert<'a>(
        &'a self,
        user: &'a ClerkUserData,
    ) -> BoxFuture<'a, Result<Option<U>, StoreError>> {
        async move { Ok(applied(self.write_user(user, None).await?, None)) }.boxed()
    }

    fn upsert_delivered<'a>(
        &'a self,
        user: &'a ClerkUserData,
        svix_id: &'a str,
    ) -> BoxFuture<'a, Result<Delivered<Option<U>>, StoreError>> {
        self.write_user(user, Some(svix_id)).boxed()
    }

    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<U>, StoreError>> {
        async move { on_backend!(self, find_pg, find_sqlite, id).map_err(|e| store_err("find", e)) }
            .boxed()
    }

    fn mark_deleted<'a>(
        &'a self,
        id: &'a str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            Ok(applied(
                self.write_deletion(id, deleted_at, policy, None).await?,
                false,
            ))
        }
        .boxed()
    }

    fn mark_deleted_delivered<'a>(
        &'a self,
        id: &'a str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
        svix_id: &'a str,
    ) -> BoxFuture<'a, Result<Delivered<bool>, StoreError>> {
        self.write_deletion(id, deleted_at, policy, Some(svix_id))
            .boxed()
    }

    fn change_feed(&self) -> Option<Arc<dyn ChangeFeed>> {
        match &self.pool {
            #[cfg(feature = "postgres")]
            // A URL that does not parse has no pool either: `connect` refused it.
            DbPool::Postgres(_) => PgTarget::parse(&self.url).ok().map(|target| {
                Arc::new(PgChangeFeed {
                    prober: target
                        .clone()
                        .with_application_name(FEED_PROBE_APPLICATION_NAME),
                    target: target.with_application_name(FEED_APPLICATION_NAME),
                }) as Arc<dyn ChangeFeed>
            }),
            #[cfg(feature = "sqlite")]
            DbPool::Sqlite(_) => None,
        }
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            use diesel_async::SimpleAsyncConnection;
            match &self.pool {
                #[cfg(feature = "postgres")]
                DbPool::Postgres(pool) => {
                    let mut conn = pooled!(pool, "postgres pool");
                    conn.batch_execute("SELECT 1")
                        .await
                        .map_err(|e| store_err("postgres ping", e))
                }
                #[cfg(feature = "sqlite")]
                DbPool::Sqlite(pool) => {
                    let mut conn = pooled!(pool, "sqlite pool");
                    conn.batch_execute("SELECT 1")
                        .await
                        .map_err(|e| store_err("sqlite ping", e))
                }
            }
        }
        .boxed()
    }

    fn deleted_at<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        async move {
            self.ensure_tables().await?;
            let found: QueryResult<Option<i64>> = match &self.pool {
                #[cfg(feature = "postgres")]
                DbPool::Postgres(pool) => {
                    let mut conn = pooled!(pool, "postgres pool");
                    pg_unit!(self.pooler, &mut *conn, |c| tombstone_of!(c, id))
                }
                #[cfg(feature = "sqlite")]
                DbPool::Sqlite(pool) => {
                    let mut conn = pooled!(pool, "sqlite pool");
                    tombstone_of!(&mut conn, id)
                }
            };
            found.map_err(|e| store_err("tombstone", e))
        }
        .boxed()
    }
}

/// The `application_name` of the change feed's connection (in `pg_stat_activity`).
pub const FEED_APPLICATION_NAME: &str = "clerk-actix-changes";
/// The `application_name` of the connection that sends the change feed's probes.
pub const FEED_PROBE_APPLICATION_NAME: &str = "clerk-actix-changes-probe";

/// How long connecting, or one query of the change feed, may take.
#[cfg(feature = "postgres")]
const FEED_TIMEOUT: Duration = Duration::from_secs(5);

/// The change feed of a PostgreSQL store: a `LISTEN` connection of its own on
/// [`CHANGES_CHANNEL`] (a wake-up), the change log (the data), and a second connection that
/// sends the probes telling whether the first one hears anything.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct PgChangeFeed {
    target: PgTarget,
    prober: PgTarget,
}

#[cfg(feature = "postgres")]
struct PgSubscription {
    conn: AsyncPgConnection,
    prober: AsyncPgConnection,
}

/// A row of `clerk_user_changes`.
#[cfg(feature = "postgres")]
#[derive(QueryableByName, Queryable)]
struct ChangeRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    clerk_user_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    active: bool,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    version: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    recorded_at: i64,
}

#[cfg(feature = "postgres")]
#[derive(QueryableByName)]
struct LastSeq {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

/// Changes read per query while catching up.
#[cfg(feature = "postgres")]
const CATCH_UP_PAGE: i64 = 1_000;

#[cfg(feature = "postgres")]
async fn within<T>(
    what: &str,
    fut: impl std::future::Future<Output = QueryResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(FEED_TIMEOUT, fut).await {
        Ok(result) => result.map_err(|e| store_err(what, e)),
        Err(_) => Err(StoreError::new(format!(
            "{what}: no answer within {FEED_TIMEOUT:?}"
        ))),
    }
}

#[cfg(feature = "postgres")]
impl PgChangeFeed {
    async fn connect(target: &PgTarget) -> Result<AsyncPgConnection, StoreError> {
        match tokio::time::timeout(FEED_TIMEOUT, target.establish()).await {
            Ok(conn) => conn.map_err(|e| store_err("change feed connect", e)),
            Err(_) => Err(StoreError::new(format!(
                "change feed connect: no answer within {FEED_TIMEOUT:?}"
            ))),
        }
    }
}

#[cfg(feature = "postgres")]
impl ChangeFeed for PgChangeFeed {
    fn subscribe(&self) -> BoxFuture<'_, Result<Box<dyn ChangeSubscription>, StoreError>> {
        async move {
            use diesel_async::SimpleAsyncConnection;
            let mut conn = Self::connect(&self.target).await?;
            create_tables_pg(&mut conn).await?;
            within(
                "change feed listen",
                conn.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}")),
            )
            .await?;
            let prober = Self::connect(&self.prober).await?;
            Ok(Box::new(PgSubscription { conn, prober }) as Box<dyn ChangeSubscription>)
        }
        .boxed()
    }
}

#[cfg(feature = "postgres")]
fn to_changes(rows: Vec<ChangeRow>) -> Vec<UserChange> {
    rows.into_iter()
        .filter_map(|r| {
            Some(UserChange {
                seq: r.seq,
                kind: UserChangeKind::parse(&r.kind)?,
                user_id: r.clerk_user_id,
                active: r.active,
                version: r.version,
                recorded_at: r.recorded_at,
            })
        })
        .collect()
}

#[cfg(feature = "postgres")]
impl ChangeSubscription for PgSubscription {
    fn catch_up(
        &mut self,
        after_seq: Option<i64>,
        window: Duration,
    ) -> BoxFuture<'_, Result<(Vec<UserChange>, i64), StoreError>> {
        async move {
            use diesel::sql_types::BigInt;
            use diesel_async::AsyncConnection;
            let columns = "seq, clerk_user_id, kind, active, version, recorded_at";
            let Some(mut after) = after_seq else {
                // Start-up: the log's position first (every change up to it has committed),
                // then what can still revoke a token up to it, and the changes that followed
                // for the same users (a lifted ban).
                let window_ms = window.as_millis() as i64;
                let (rows, last) = within(
                    "change feed catch-up",
                    self.conn.transaction(async |conn| {
                        let last: LastSeq = diesel_async::RunQueryDsl::get_result(
                            diesel::sql_query(
                                "SELECT coalesce(max(seq), 0)::bigint AS seq \
                                 FROM clerk_user_changes",
                            ),
                            conn,
                        )
                        .await?;
                        let rows: Vec<ChangeRow> = diesel_async::RunQueryDsl::load(
                            diesel::sql_query(format!(
                                "SELECT {columns} FROM clerk_user_changes \
                                 WHERE seq <= $1 AND recorded_at >= {DB_NOW_MS} - $2 \
                                 AND clerk_user_id IN (SELECT clerk_user_id \
                                 FROM clerk_user_changes \
                                 WHERE seq <= $1 AND recorded_at >= {DB_NOW_MS} - $2 \
                                 AND (kind = 'deleted' OR NOT active)) ORDER BY seq"
                            ))
                            .bind::<BigInt, _>(last.seq)
                            .bind::<BigInt, _>(window_ms),
                            conn,
                        )
                        .await?;
                        Ok((rows, last.seq))
                    }),
                )
                .await?;
                return Ok((to_changes(rows), last));
            };
            let mut changes = Vec::new();
            loop {
                use change_log::clerk_user_changes::dsl as log;
                let rows: Vec<ChangeRow> = within(
                    "change feed catch-up",
                    self.conn.transaction(async |conn| {
                        diesel_async::RunQueryDsl::load(
                            log::clerk_user_changes
                                .select((
                                    log::seq,
                                    log::clerk_user_id,
                                    log::kind,
                                    log::active,
                                    log::version,
                                    log::recorded_at,
                                ))
                                .filter(log::seq.gt(after))
                                .order(log::seq)
                                .limit(CATCH_UP_PAGE),
                            conn,
                        )
                        .await
                    }),
                )
                .await?;
                let full = rows.len() as i64 == CATCH_UP_PAGE;
                if let Some(last) = rows.last() {
                    after = last.seq;
                }
                changes.extend(to_changes(rows));
                if !full {
                    return Ok((changes, after));
                }
            }
        }
        .boxed()
    }

    fn next(&mut self, wait: Duration) -> BoxFuture<'_, Result<FeedItem, StoreError>> {
        async move {
            use futures_util::StreamExt as _;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let got = {
                    let mut stream = std::pin::pin!(self.conn.notifications_stream());
                    if wait.is_zero() {
                        // What is already here, without a timer (a timer's tick is a
                        // millisecond).
                        stream.next().now_or_never().ok_or(())
                    } else {
                        tokio::time::timeout_at(deadline, stream.next())
                            .await
                            .map_err(|_| ())
                    }
                };
                match got {
                    Ok(Some(Ok(n))) => {
                        if n.channel == CHANGES_CHANNEL {
                            return Ok(FeedItem::Notified { payload: n.payload });
                        }
                    }
                    Ok(Some(Err(e))) => return Err(store_err("change feed", e)),
                    Ok(None) => return Err(StoreError::new("change feed: the connection closed")),
                    Err(_) => return Ok(FeedItem::Idle),
                }
            }
        }
        .boxed()
    }

    fn probe<'a>(&'a mut self, payload: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            use diesel_async::AsyncConnection;
            within(
                "change feed probe",
                self.prober.transaction(async |conn| {
                    diesel_async::RunQueryDsl::execute(
                        diesel::sql_query("SELECT pg_notify($1, $2)")
                            .bind::<diesel::sql_types::Text, _>(CHANGES_CHANNEL)
                            .bind::<diesel::sql_types::Text, _>(payload),
                        conn,
                    )
                    .await
                }),
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn sweep(
        &mut self,
        changes_before_ms: i64,
        deliveries_before_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            use diesel::sql_types::BigInt;
            use diesel_async::AsyncConnection;
            let (changes, deliveries) = within(
                "change log sweep",
                self.conn.transaction(async |conn| {
                    let changes = diesel_async::RunQueryDsl::execute(
                        diesel::sql_query("DELETE FROM clerk_user_changes WHERE recorded_at < $1")
                            .bind::<BigInt, _>(changes_before_ms),
                        conn,
                    )
                    .await?;
                    let deliveries = diesel_async::RunQueryDsl::execute(
                        diesel::sql_query(
                            "DELETE FROM clerk_webhook_deliveries WHERE received_at < $1",
                        )
                        .bind::<BigInt, _>(deliveries_before_ms),
                        conn,
                    )
                    .await?;
                    Ok((changes, deliveries))
                }),
            )
            .await?;
            Ok((changes + deliveries) as u64)
        }
        .boxed()
    }
}
