//! The included model ([`ClerkUserRecord`]), the metadata column type, and what
//! `#[derive(ClerkUser)]` implements (`DieselUserModel`, the field traits, the query macros).

use super::*;

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
    crate::base::clock::unix_ms()
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
