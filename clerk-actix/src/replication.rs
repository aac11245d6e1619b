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
