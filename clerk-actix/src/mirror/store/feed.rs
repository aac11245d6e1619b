//! The change feed of a PostgreSQL store ([`ChangeFeed`]): a `LISTEN` connection, the change
//! log read by `seq`, and probes of the connection.

#[cfg(feature = "postgres")]
use super::*;

/// The `application_name` of the change feed's connection (in `pg_stat_activity`).
pub const FEED_APPLICATION_NAME: &str = "clerk-actix-changes";
/// The `application_name` of the connection that sends the change feed's probes.
pub const FEED_PROBE_APPLICATION_NAME: &str = "clerk-actix-changes-probe";

/// How long connecting, or one query of the change feed, may take.
#[cfg(feature = "postgres")]
pub(super) const FEED_TIMEOUT: Duration = Duration::from_secs(5);

/// The change feed of a PostgreSQL store: a `LISTEN` connection of its own on
/// [`CHANGES_CHANNEL`] (a wake-up), the change log (the data), and a second connection that
/// sends the probes telling whether the first one hears anything.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(super) struct PgChangeFeed {
    pub(super) target: PgTarget,
    pub(super) prober: PgTarget,
}

#[cfg(feature = "postgres")]
pub(super) struct PgSubscription {
    conn: AsyncPgConnection,
    prober: AsyncPgConnection,
}

/// A row of `clerk_user_changes`.
#[cfg(feature = "postgres")]
#[derive(QueryableByName, Queryable)]
pub(super) struct ChangeRow {
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
pub(super) struct LastSeq {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

/// Changes read per query while catching up.
#[cfg(feature = "postgres")]
pub(super) const CATCH_UP_PAGE: i64 = 1_000;

#[cfg(feature = "postgres")]
pub(super) async fn within<T>(
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
pub(super) fn to_changes(rows: Vec<ChangeRow>) -> Vec<UserChange> {
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
