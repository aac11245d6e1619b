//! PostgreSQL: the connection manager (TLS, poolers), migrations and the store's tables under
//! an advisory lock, the per-user write lock, and recording a change in the log.

use super::*;

/// The store's own tables on PostgreSQL.
#[cfg(feature = "postgres")]
pub(super) const STORE_TABLES: [&str; 3] = [
    "clerk_user_tombstones",
    "clerk_webhook_deliveries",
    "clerk_user_changes",
];

/// A table's name, as `QueryableByName`.
#[cfg(feature = "postgres")]
#[derive(QueryableByName)]
pub(super) struct TableName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// Makes sure the store's tables exist on PostgreSQL. When they do (a migrated database), this
/// is one read and no DDL: a role with only `SELECT`/`INSERT`/`UPDATE`/`DELETE` runs the
/// application. When some are missing, they are created under an advisory lock (serialized
/// between processes); a role that may not create them gets an error naming the migration.
#[cfg(feature = "postgres")]
pub(super) async fn create_tables_pg(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
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
pub(super) async fn pending_migrations_pg(
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
pub(super) fn apply_migrations_pg(
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

/// Serializes the writes for one Clerk id until the transaction ends (PostgreSQL): an upsert
/// and a deletion of the same id never interleave, so a row cannot be written after its
/// tombstone. (SQLite has a single writer: each transaction below writes first, which takes
/// the database's write lock before anything is read.)
#[cfg(feature = "postgres")]
pub(super) async fn lock_id_pg(
    conn: &mut AsyncPgConnection,
    clerk_user_id: &str,
) -> QueryResult<()> {
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<diesel::sql_types::Integer, _>(LOCK_SPACE)
            .bind::<diesel::sql_types::Text, _>(clerk_user_id),
        conn,
    )
    .await
    .map(|_| ())
}

/// The database's clock, Unix ms.
#[cfg(feature = "postgres")]
pub(super) const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

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
pub(super) async fn record_change_pg(
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
