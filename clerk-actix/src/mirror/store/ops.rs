//! The store's operations, on either backend (`on_backend!`): upserts with their delivery and
//! change recorded in one transaction, deletions with tombstones, lookups, and [`UserStore`].

use super::*;

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
pub(super) fn applied<T>(written: Delivered<T>, duplicate: T) -> T {
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
