//! SQLite: the connection type, the file path of a URL, migrations on a blocking thread, and
//! a transaction's early end.

use super::*;

/// An SQLite connection usable with diesel-async.
#[cfg(feature = "sqlite")]
pub type AsyncSqliteConnection = SyncConnectionWrapper<diesel::SqliteConnection>;

/// Strips `sqlite://` / `sqlite:` to the file path SQLite expects.
#[cfg(feature = "sqlite")]
pub(super) fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
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

/// A SQLite transaction's early end, which writes nothing (rolled back), or its failure.
#[cfg(feature = "sqlite")]
pub(super) enum SqliteOutcome {
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
