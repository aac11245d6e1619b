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
use crate::mirror::store::pg_connect::PgTarget;

#[cfg(feature = "postgres")]
use crate::mirror::sync::{ChangeSubscription, FeedItem, UserChange, UserChangeKind};
use crate::{
    base::user::ClerkUserData,
    mirror::sync::{ChangeFeed, DeletedUserPolicy, Delivered, StoreError, SyncedUser, UserStore},
};

/// A connection from the pool, or (with `?`) the store error naming the pool.
macro_rules! pooled {
    ($pool:expr, $what:literal) => {
        $pool.get().await.map_err(|e| store_err($what, e))?
    };
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

/// Records a delivery (`svix-id`); `false` when it was recorded before (a duplicate).
macro_rules! insert_delivery {
    ($conn:expr, $svix_id:expr) => {
        diesel_async::RunQueryDsl::execute(
            diesel::insert_into(clerk_webhook_deliveries::table)
                .values((
                    clerk_webhook_deliveries::svix_id.eq($svix_id),
                    clerk_webhook_deliveries::received_at.eq(crate::base::clock::unix_ms()),
                ))
                .on_conflict_do_nothing(),
            $conn,
        )
        .await
        .map(|n| n > 0)
    };
}

mod feed;
mod model;
mod ops;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
pub(crate) mod pg_connect;
mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
use feed::*;
pub use feed::{FEED_APPLICATION_NAME, FEED_PROBE_APPLICATION_NAME};
pub use model::*;
#[cfg(feature = "postgres")]
use pg::*;
#[cfg(feature = "postgres")]
pub use pg::{establish_postgres, postgres_manager, run_migrations_pg};
pub use schema::*;
#[cfg(feature = "sqlite")]
use sqlite::*;
#[cfg(feature = "sqlite")]
pub use sqlite::{run_migrations_sqlite, AsyncSqliteConnection};

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
                        let before = crate::base::clock::unix_ms().saturating_sub(
                            crate::mirror::replication::DELIVERIES_RETENTION.as_millis() as i64,
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
