//! [`DieselUserStore`]: the [`UserStore`] over diesel-async pools (deadpool) for PostgreSQL
//! (`AsyncPgConnection`, feature `postgres`) and SQLite (`SyncConnectionWrapper<SqliteConnection>`,
//! bundled, feature `sqlite`), with the included [`ClerkUserRecord`] model, its `clerk_users`
//! table and embedded migrations for both.

use std::{
    marker::PhantomData,
    time::{SystemTime, UNIX_EPOCH},
};

use diesel::prelude::*;
use diesel_async::pooled_connection::{deadpool::Pool, AsyncDieselConnectionManager};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use futures_util::{future::BoxFuture, FutureExt};
use serde::Serialize;

#[cfg(feature = "sqlite")]
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
#[cfg(feature = "postgres")]
use diesel_async::AsyncPgConnection;

use crate::{
    sync::{DeletedUserPolicy, StoreError, SyncedUser, UserStore},
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

/// The tombstone table, the same on PostgreSQL and SQLite; idempotent.
pub const TOMBSTONES_DDL: &str = "CREATE TABLE IF NOT EXISTS clerk_user_tombstones (\
    clerk_user_id TEXT PRIMARY KEY, \
    deleted_at BIGINT NOT NULL)";

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
    /// Last written from Clerk's data, Unix ms.
    #[clerk(with = synced_now)]
    pub synced_at: i64,
}

/// Now, in Unix milliseconds.
#[doc(hidden)]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `synced_at`: when the row was last written from Clerk's data.
fn synced_now(_: &ClerkUserData) -> i64 {
    now_ms()
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
    /// Set once the tombstone table is known to exist.
    tombstones: tokio::sync::OnceCell<()>,
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
    StoreError::new(format!("{context}: {e}"))
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
    /// Connects a pool to `database_url`: `postgres://...` / `postgresql://...` (feature
    /// `postgres`; no TLS), or `sqlite://path` or a plain file path (feature `sqlite`;
    /// in-memory databases are refused, as each pooled connection would get its own).
    /// Connections are made lazily; this fails only on a bad URL.
    pub async fn connect(database_url: &str) -> Result<Self, StoreError> {
        let url = database_url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
                let pool = Pool::builder(manager)
                    .max_size(16)
                    .wait_timeout(Some(std::time::Duration::from_secs(5)))
                    .create_timeout(Some(std::time::Duration::from_secs(5)))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| store_err("postgres pool", e))?;
                return Ok(Self::from_pool(DbPool::Postgres(pool), url));
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
            Ok(Self::from_pool(DbPool::Sqlite(pool), &path))
        }
        #[cfg(not(feature = "sqlite"))]
        Err(StoreError::new(
            "only postgres:// URLs are supported without clerk-actix's `sqlite` feature",
        ))
    }

    /// A store over an existing pool. `url` is used only by [`run_migrations`](Self::run_migrations).
    pub fn from_pool(pool: DbPool, url: &str) -> Self {
        Self {
            pool,
            url: url.to_owned(),
            tombstones: tokio::sync::OnceCell::new(),
            _model: PhantomData,
        }
    }

    /// The pool.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// Runs the included `clerk_users` migrations (idempotent: applied ones are skipped) and
    /// creates the tombstone table. Call once at start-up; an empty database then just works.
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
        self.ensure_tombstones().await
    }

    /// Creates the tombstone table if needed, once per store (models of your own get it without
    /// any migration of theirs). Replicas racing on `CREATE TABLE IF NOT EXISTS` may see an
    /// error while another creates it: the table existing afterwards is what counts.
    async fn ensure_tombstones(&self) -> Result<(), StoreError> {
        self.tombstones
            .get_or_try_init(|| async {
                macro_rules! create {
                    ($pool:expr, $what:literal) => {{
                        use diesel_async::SimpleAsyncConnection;
                        let mut conn = $pool.get().await.map_err(|e| store_err($what, e))?;
                        if let Err(create) = conn.batch_execute(TOMBSTONES_DDL).await {
                            conn.batch_execute("SELECT 1 FROM clerk_user_tombstones LIMIT 0")
                                .await
                                .map_err(|_| store_err("tombstone table", create))?;
                        }
                        Ok(())
                    }};
                }
                match &self.pool {
                    #[cfg(feature = "postgres")]
                    DbPool::Postgres(pool) => create!(pool, "postgres pool"),
                    #[cfg(feature = "sqlite")]
                    DbPool::Sqlite(pool) => create!(pool, "sqlite pool"),
                }
            })
            .await
            .map(|_| ())
    }
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

/// Runs migrations on a thread of its own with a multi-threaded runtime, as diesel-async's
/// migration harness requires (actix's runtime is single-threaded).
#[cfg(feature = "postgres")]
pub async fn run_migrations_pg(
    url: String,
    migrations: EmbeddedMigrations,
) -> Result<(), StoreError> {
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
                        use diesel_async::AsyncConnection;
                        let conn = AsyncPgConnection::establish(&url)
                            .await
                            .map_err(|e| store_err("postgres connect", e))?;
                        let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
                        harness
                            .run_pending_migrations(migrations)
                            .map(|_| ())
                            .map_err(|e| store_err("postgres migrations", e))
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

/// Runs `U::$pg` or `U::$sqlite` on a pooled connection of the store's backend.
macro_rules! on_backend {
    ($store:expr, $pg:ident, $sqlite:ident, $($arg:expr),*) => {
        match &$store.pool {
            #[cfg(feature = "postgres")]
            DbPool::Postgres(pool) => {
                let mut conn = pooled!(pool, "postgres pool");
                U::$pg(&mut conn, $($arg),*).await
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
    // A fixed first key keeps these locks apart from the application's own advisory locks.
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("SELECT pg_advisory_xact_lock(1131179883, hashtext($1))")
            .bind::<diesel::sql_types::Text, _>(clerk_user_id),
        conn,
    )
    .await
    .map(|_| ())
}

impl<U: DieselUserModel> UserStore for DieselUserStore<U> {
    type User = U;

    fn upsert<'a>(
        &'a self,
        user: &'a ClerkUserData,
    ) -> BoxFuture<'a, Result<Option<U>, StoreError>> {
        use diesel_async::AsyncConnection;
        async move {
            self.ensure_tombstones().await?;
            let id = user.id.as_str();
            let written: QueryResult<Option<U>> = match &self.pool {
                #[cfg(feature = "postgres")]
                DbPool::Postgres(pool) => {
                    let mut conn = pooled!(pool, "postgres pool");
                    conn.transaction(async |conn| {
                        lock_id_pg(conn, id).await?;
                        if tombstone_of!(conn, id)?.is_some() {
                            return Ok(None);
                        }
                        U::upsert_pg(conn, user).await.map(Some)
                    })
                    .await
                }
                #[cfg(feature = "sqlite")]
                DbPool::Sqlite(pool) => {
                    let mut conn = pooled!(pool, "sqlite pool");
                    let written = conn
                        .transaction(async |conn| {
                            let row = U::upsert_sqlite(conn, user).await?;
                            if tombstone_of!(conn, id)?.is_some() {
                                return Err(diesel::result::Error::RollbackTransaction);
                            }
                            Ok(Some(row))
                        })
                        .await;
                    match written {
                        Err(diesel::result::Error::RollbackTransaction) => Ok(None),
                        other => other,
                    }
                }
            };
            written.map_err(|e| store_err("upsert", e))
        }
        .boxed()
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
        use diesel_async::AsyncConnection;
        async move {
            self.ensure_tombstones().await?;
            let created: QueryResult<bool> = match &self.pool {
                #[cfg(feature = "postgres")]
                DbPool::Postgres(pool) => {
                    let mut conn = pooled!(pool, "postgres pool");
                    conn.transaction(async |conn| {
                        lock_id_pg(conn, id).await?;
                        let created = insert_tombstone!(conn, id, deleted_at)?;
                        match policy {
                            DeletedUserPolicy::Deactivate => U::deactivate_pg(conn, id).await?,
                            DeletedUserPolicy::Delete => U::delete_pg(conn, id).await?,
                        };
                        Ok(created)
                    })
                    .await
                }
                #[cfg(feature = "sqlite")]
                DbPool::Sqlite(pool) => {
                    let mut conn = pooled!(pool, "sqlite pool");
                    conn.transaction(async |conn| {
                        let created = insert_tombstone!(conn, id, deleted_at)?;
                        match policy {
                            DeletedUserPolicy::Deactivate => U::deactivate_sqlite(conn, id).await?,
                            DeletedUserPolicy::Delete => U::delete_sqlite(conn, id).await?,
                        };
                        Ok(created)
                    })
                    .await
                }
            };
            created.map_err(|e| store_err("mark deleted", e))
        }
        .boxed()
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
            self.ensure_tombstones().await?;
            let found: QueryResult<Option<i64>> = match &self.pool {
                #[cfg(feature = "postgres")]
                DbPool::Postgres(pool) => {
                    let mut conn = pooled!(pool, "postgres pool");
                    tombstone_of!(&mut conn, id)
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
