//! Replicas sharing one database: each [`Clerk`](crate::Clerk) handle listens to the
//! [`ChangeFeed`] of its stores (PostgreSQL `LISTEN`) on a thread of its own, and applies every
//! change any process records — to its user caches (a cached copy older than the change is
//! dropped) and to its revocations (a ban, a lifted ban, a deletion).
//!
//! The feed reconnects by itself with jittered back-off. Each (re)connection first subscribes,
//! then reads from the database's change log what was recorded while it was away (from a little
//! before the last moment it knew about), so no change is lost; applying a change twice is
//! harmless. At start-up it loads the revocations that can still matter before any token is
//! admitted (see [`Revocations::start_loading`]). While disconnected the process keeps serving
//! from its caches, and says so in events and [`Clerk::health`](crate::Clerk::health).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::{
    clock,
    events::{ClerkEvent, Events},
    revocation::Revocations,
    sync::{CachedUsers, ChangeFeed, FeedItem, UserChange, UserChangeKind},
};

/// How long a deletion's or a ban's revocation is loaded back at start-up: the deletion's
/// in-memory lifetime, far beyond any token issued before it.
pub(crate) const STARTUP_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How far before the last known moment a reconnection reads the log: a transaction that
/// recorded its change earlier and committed while the feed was away is still read.
const CATCH_UP_MARGIN: Duration = Duration::from_secs(60);
/// A silent connection is checked this often (a trivial query), which also advances the
/// moment the feed knows it has seen everything up to.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// Back-off between connection attempts: from the first to the longest.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often old changes and deliveries are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Changes are kept a little longer than the start-up window reads.
const CHANGES_RETENTION: Duration = Duration::from_secs(25 * 3600);
/// Deliveries (`svix-id`s) are kept well past Svix's retry schedule (about a day) and manual
/// replays from the dashboard in the following days.
pub(crate) const DELIVERIES_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the feeds apply changes to.
pub(crate) struct Targets {
    pub(crate) revoked: Arc<Revocations>,
    pub(crate) caches: Vec<Arc<dyn CachedUsers>>,
    pub(crate) events: Events,
    /// Feeds that have not loaded their start-up revocations yet.
    pub(crate) starting: AtomicUsize,
}

/// A running feed: its state, and its thread, which stops when this is dropped.
pub(crate) struct FeedHandle {
    pub(crate) state: Arc<FeedState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for FeedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedHandle")
            .field("connected", &self.state.connected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What the health report says about one feed.
#[derive(Debug, Default)]
pub(crate) struct FeedState {
    pub(crate) connected: AtomicBool,
    /// The start-up revocations are loaded.
    pub(crate) loaded: AtomicBool,
    /// Connections lost so far.
    pub(crate) disconnects: AtomicU64,
    /// Changes applied so far (live and caught up).
    pub(crate) applied: AtomicU64,
    pub(crate) last_error: Mutex<Option<(String, Instant)>>,
    pub(crate) disconnected_since: Mutex<Option<Instant>>,
}

impl FeedState {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last error and how long ago, and how long the feed has been disconnected.
    pub(crate) fn errors(&self) -> (Option<(String, Duration)>, Option<Duration>) {
        let last = Self::lock(&self.last_error)
            .as_ref()
            .map(|(e, at)| (e.clone(), at.elapsed()));
        let down = Self::lock(&self.disconnected_since).map(|at| at.elapsed());
        (last, down)
    }
}

/// Starts listening to `feed` on a thread of its own.
pub(crate) fn start(
    feed: Arc<dyn ChangeFeed>,
    targets: Arc<Targets>,
) -> std::io::Result<FeedHandle> {
    let state = Arc::new(FeedState::default());
    *FeedState::lock(&state.disconnected_since) = Some(Instant::now());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread_state = state.clone();
    std::thread::Builder::new()
        .name("clerk-actix-changes".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    targets.events.log_server_error(
                        "change-feed",
                        &format!("the change feed's runtime could not start: {err}"),
                    );
                    return;
                }
            };
            rt.block_on(async move {
                tokio::select! {
                    _ = stopped => {}
                    () = run(feed, targets, thread_state) => {}
                }
            });
        })?;
    Ok(FeedHandle { state, _stop: stop })
}

/// Connects, catches up, applies live changes; on any failure waits and starts over.
async fn run(feed: Arc<dyn ChangeFeed>, targets: Arc<Targets>, state: Arc<FeedState>) {
    // The database's clock up to which this process has seen every change; `None` until the
    // start-up revocations are loaded.
    let mut seen_up_to: Option<i64> = None;
    let mut backoff = BACKOFF_FIRST;
    let mut last_sweep: Option<Instant> = None;
    loop {
        let error = session(
            &*feed,
            &targets,
            &state,
            &mut seen_up_to,
            &mut backoff,
            &mut last_sweep,
        )
        .await;
        let was_connected = state.connected.swap(false, Ordering::AcqRel);
        if was_connected {
            state.disconnects.fetch_add(1, Ordering::Relaxed);
            *FeedState::lock(&state.disconnected_since) = Some(Instant::now());
        }
        *FeedState::lock(&state.last_error) = Some((error.clone(), Instant::now()));
        // Full jitter in [backoff/2, backoff): replicas cut off together do not come back in
        // lockstep.
        let half = backoff / 2;
        let retry_in = half + half.mul_f64(fastrand::f64());
        targets.events.emit(ClerkEvent::ChangeFeedDisconnected {
            error: error.clone(),
            retry_in,
        });
        tokio::time::sleep(retry_in).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: subscribe, catch up, then live changes until it fails. Returns what
/// failed.
async fn session(
    feed: &dyn ChangeFeed,
    targets: &Targets,
    state: &FeedState,
    seen_up_to: &mut Option<i64>,
    backoff: &mut Duration,
    last_sweep: &mut Option<Instant>,
) -> String {
    let mut sub = match feed.subscribe().await {
        Ok(sub) => sub,
        Err(err) => return err.to_string(),
    };
    let reconnected = seen_up_to.is_some();
    let since = seen_up_to.map(|t| t.saturating_sub(CATCH_UP_MARGIN.as_millis() as i64));
    let (missed, db_now) = match sub.catch_up(since, STARTUP_WINDOW).await {
        Ok(caught) => caught,
        Err(err) => return err.to_string(),
    };
    let caught_up = missed.len();
    for change in &missed {
        apply(targets, state, change).await;
    }
    *seen_up_to = Some(db_now);
    state.connected.store(true, Ordering::Release);
    *FeedState::lock(&state.disconnected_since) = None;
    *backoff = BACKOFF_FIRST;
    if !state.loaded.swap(true, Ordering::AcqRel)
        && targets.starting.fetch_sub(1, Ordering::AcqRel) == 1
    {
        targets.revoked.loaded();
    }
    targets.events.emit(ClerkEvent::ChangeFeedConnected {
        caught_up,
        reconnected,
    });
    loop {
        if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            *last_sweep = Some(Instant::now());
            let changes_before = db_now.saturating_sub(CHANGES_RETENTION.as_millis() as i64);
            let deliveries_before = clock::unix_ms()
                .max(db_now)
                .saturating_sub(DELIVERIES_RETENTION.as_millis() as i64);
            if let Err(err) = sub.sweep(changes_before, deliveries_before).await {
                return err.to_string();
            }
        }
        match sub.next(IDLE_CHECK).await {
            Ok(FeedItem::Change(change)) => {
                apply(targets, state, &change).await;
                *seen_up_to = Some(seen_up_to.unwrap_or(i64::MIN).max(change.recorded_at));
            }
            Ok(FeedItem::Idle { db_now_ms }) => {
                *seen_up_to = Some(seen_up_to.unwrap_or(i64::MIN).max(db_now_ms));
            }
            Err(err) => return err.to_string(),
        }
    }
}

/// Applies one change: revocations first (they guard every route), then the user caches.
pub(crate) async fn apply(targets: &Targets, state: &FeedState, change: &UserChange) {
    let id = change.user_id.as_str();
    match change.kind {
        UserChangeKind::Deleted => targets.revoked.revoke_deleted(id),
        UserChangeKind::Updated if change.active => targets.revoked.lift(id, change.version),
        UserChangeKind::Updated => {
            // Tokens issued up to the change are refused: Clerk's clock (`updated_at`) or the
            // database's when it recorded the change, whichever is later.
            let up_to = change
                .version
                .div_euclid(1000)
                .max(change.recorded_at / 1000);
            targets.revoked.revoke(id, up_to, change.version);
        }
    }
    let version = match change.kind {
        UserChangeKind::Deleted => i64::MAX,
        UserChangeKind::Updated => change.version,
    };
    for cache in &targets.caches {
        cache.forget_older(id, version).await;
    }
    state.applied.fetch_add(1, Ordering::Relaxed);
    targets.events.emit(ClerkEvent::UserChangeReceived {
        user_id: change.user_id.clone(),
        kind: change.kind,
        active: change.active,
    });
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::sync::{ChangeSubscription, StoreError};

    /// One scripted session: what `catch_up` returns, then the live items, then an error.
    struct Script {
        caught: Vec<UserChange>,
        db_now: i64,
        live: VecDeque<Result<FeedItem, StoreError>>,
    }

    #[derive(Default)]
    struct FakeFeed {
        scripts: Mutex<VecDeque<Result<Script, StoreError>>>,
        /// The `since` of every catch-up, in order.
        sinces: Arc<Mutex<Vec<Option<i64>>>>,
    }

    struct FakeSub {
        script: Script,
        sinces: Arc<Mutex<Vec<Option<i64>>>>,
    }

    impl ChangeFeed for FakeFeed {
        fn subscribe(&self) -> BoxFuture<'_, Result<Box<dyn ChangeSubscription>, StoreError>> {
            let next = FeedState::lock(&self.scripts).pop_front();
            let sinces = self.sinces.clone();
            Box::pin(async move {
                match next {
                    Some(Ok(script)) => {
                        Ok(Box::new(FakeSub { script, sinces }) as Box<dyn ChangeSubscription>)
                    }
                    Some(Err(e)) => Err(e),
                    // Out of scripts: never connects again.
                    None => std::future::pending().await,
                }
            })
        }
    }

    impl ChangeSubscription for FakeSub {
        fn catch_up(
            &mut self,
            since_ms: Option<i64>,
            _window: Duration,
        ) -> BoxFuture<'_, Result<(Vec<UserChange>, i64), StoreError>> {
            FeedState::lock(&self.sinces).push(since_ms);
            let caught = std::mem::take(&mut self.script.caught);
            let now = self.script.db_now;
            Box::pin(async move { Ok((caught, now)) })
        }

        fn next(&mut self, _idle: Duration) -> BoxFuture<'_, Result<FeedItem, StoreError>> {
            let item = self.script.live.pop_front();
            Box::pin(async move {
                match item {
                    Some(item) => item,
                    None => std::future::pending().await,
                }
            })
        }

        fn sweep(&mut self, _: i64, _: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
            Box::pin(async { Ok(0) })
        }
    }

    fn change(seq: i64, id: &str, kind: UserChangeKind, active: bool, at: i64) -> UserChange {
        UserChange {
            seq,
            user_id: id.to_owned(),
            kind,
            active,
            version: at,
            recorded_at: at,
        }
    }

    #[test]
    fn a_lost_connection_catches_up_from_before_the_last_change_seen_and_loads_first() {
        let t0 = 1_800_000_000_000_i64;
        let feed = Arc::new(FakeFeed::default());
        {
            let mut scripts = FeedState::lock(&feed.scripts);
            // Start-up: the database is down once.
            scripts.push_back(Err(StoreError::new("connection refused")));
            // Then: a deletion from before the start, one live ban, then the connection dies.
            scripts.push_back(Ok(Script {
                caught: vec![change(1, "user_a", UserChangeKind::Deleted, false, t0)],
                db_now: t0 + 1_000,
                live: VecDeque::from([
                    Ok(FeedItem::Change(change(
                        2,
                        "user_b",
                        UserChangeKind::Updated,
                        false,
                        t0 + 5_000,
                    ))),
                    Err(StoreError::new("terminating connection")),
                ]),
            }));
            // Reconnected: what was recorded meanwhile.
            scripts.push_back(Ok(Script {
                caught: vec![change(
                    3,
                    "user_c",
                    UserChangeKind::Deleted,
                    false,
                    t0 + 6_000,
                )],
                db_now: t0 + 7_000,
                live: VecDeque::new(),
            }));
        }
        let revoked = Arc::new(Revocations::default());
        revoked.start_loading();
        let targets = Arc::new(Targets {
            revoked: revoked.clone(),
            caches: Vec::new(),
            events: Events::default(),
            starting: AtomicUsize::new(1),
        });
        let handle = start(feed.clone(), targets).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(revoked.wait_loaded(Duration::from_secs(5)).await);
            let deadline = Instant::now() + Duration::from_secs(5);
            while handle.state.applied.load(Ordering::Acquire) < 3 {
                assert!(Instant::now() < deadline, "changes not applied");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert_eq!(revoked.issued_up_to("user_a"), Some(i64::MAX));
        assert_eq!(revoked.issued_up_to("user_b"), Some((t0 + 5_000) / 1000));
        assert_eq!(revoked.issued_up_to("user_c"), Some(i64::MAX));
        // The start-up read, then a read from a minute before the last change seen.
        let margin = CATCH_UP_MARGIN.as_millis() as i64;
        assert_eq!(
            *FeedState::lock(&feed.sinces),
            vec![None, Some(t0 + 5_000 - margin)]
        );
        assert!(handle.state.connected.load(Ordering::Acquire));
        assert_eq!(handle.state.disconnects.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn payloads_round_trip_and_foreign_ones_are_not_changes() {
        let c = change(42, "user_x", UserChangeKind::Updated, true, 1_700);
        assert_eq!(UserChange::from_payload(&c.to_payload()), Some(c));
        for foreign in [
            "",
            "hello",
            "1\tupdated\t1\t2\t3\t",
            "x\tupdated\t1\t2\t3\tuser_a",
            "1\tcreated\t1\t2\t3\tuser_a",
            "1\tdeleted\t2\t2\t3\tuser_a",
            "1\tdeleted\t0\t2",
        ] {
            assert_eq!(UserChange::from_payload(foreign), None, "{foreign:?}");
        }
    }
}
