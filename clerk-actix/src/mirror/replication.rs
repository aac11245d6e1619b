//! Replicas sharing one database: each [`Clerk`](crate::Clerk) handle follows the
//! [`ChangeFeed`] of its stores on a thread of its own, and applies every change any process
//! records — to its user caches (a cached copy older than the change is dropped) and to its
//! revocations (a ban, a lifted ban, a deletion).
//!
//! The change log is the only data: a notification (PostgreSQL `NOTIFY`, which any role that
//! can connect may send) is a wake-up to read the log after the last `seq` applied, and its
//! payload is never trusted. Changes commit in `seq` order, so reading by `seq` misses nothing,
//! whatever the clocks say. A probe sent from another connection tells whether notifications
//! arrive; when they do not (a transaction-mode pooler), the log is polled every second instead,
//! and events and [`Clerk::health`](crate::Clerk::health) say so.
//!
//! The feed reconnects by itself with jittered back-off. Each (re)connection first subscribes,
//! then reads from the log what was recorded while it was away, so no change is lost; applying a
//! change twice is harmless. At start-up it loads the revocations that can still matter before any token is
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
    base::budget::{Bucket, Rate},
    base::clock,
    base::events::{ClerkEvent, Events},
    mirror::sync::{
        CachedUsers, ChangeFeed, ChangeSubscription, FeedItem, UserChange, UserChangeKind,
    },
    tokens::revocation::Revocations,
};

/// How long a deletion's or a ban's revocation is loaded back at start-up: the deletion's
/// in-memory lifetime, far beyond any token issued before it.
pub(crate) const STARTUP_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Without a notification, the log is read this often while notifications arrive (a lost
/// one costs at most this much latency)...
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// ...and this often while they do not (through a transaction-mode pooler, `LISTEN` hears
/// nothing).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// A probe not heard back within this is a deaf connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection that hears is probed again this often (it may stop hearing), one that does
/// not this often (it may start).
const REPROBE_LISTENING: Duration = Duration::from_secs(60);
const REPROBE_POLLING: Duration = Duration::from_secs(30);
/// Reads of the log: at most 200 a second, after a burst of 20 (a notification is read at once
/// unless notifications flood in).
const READS: Rate = Rate::new(200.0, 20);

/// A token bucket for the feed's reads of the log.
struct ReadLimiter(Bucket);

impl ReadLimiter {
    fn new() -> Self {
        Self(Bucket::full(READS))
    }

    /// Takes one read, waiting for it if the bucket is empty.
    async fn acquire(&mut self) {
        while !self.0.take(READS, Instant::now()) {
            tokio::time::sleep(self.0.until_one(READS)).await;
        }
    }
}
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
    /// Notifications do not arrive: the log is polled every second.
    pub(crate) polling: AtomicBool,
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
    // The change log's position up to which this process has applied every change; `None`
    // until the start-up revocations are loaded.
    let mut seen_seq: Option<i64> = None;
    let mut backoff = BACKOFF_FIRST;
    let mut last_sweep: Option<Instant> = None;
    loop {
        let error = session(
            &*feed,
            &targets,
            &state,
            &mut seen_seq,
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

/// A probe sent on the change channel from another connection: heard back, the `LISTEN`
/// connection hears other processes.
struct Probe {
    payload: String,
    sent: Instant,
    heard: bool,
}

impl Probe {
    async fn send(sub: &mut dyn ChangeSubscription) -> Result<Self, String> {
        let payload = format!("probe:{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        sub.probe(&payload).await.map_err(|e| e.to_string())?;
        Ok(Self {
            payload,
            sent: Instant::now(),
            heard: false,
        })
    }

    /// Unheard past the deadline: the connection is deaf.
    fn missed(&self) -> bool {
        !self.heard && self.sent.elapsed() >= PROBE_TIMEOUT
    }
}

/// Reads the log after `seen_seq` and applies what is new.
async fn read_log(
    sub: &mut dyn ChangeSubscription,
    targets: &Targets,
    state: &FeedState,
    seen_seq: &mut Option<i64>,
) -> Result<usize, String> {
    let (changes, last) = sub
        .catch_up(*seen_seq, STARTUP_WINDOW)
        .await
        .map_err(|e| e.to_string())?;
    for change in &changes {
        apply(targets, state, change).await;
    }
    *seen_seq = Some(last);
    Ok(changes.len())
}

/// One connection's life: subscribe, catch up, then read the log whenever woken (a
/// notification, whatever it says) or every idle check — every second while notifications do
/// not arrive — until it fails. Returns what failed.
async fn session(
    feed: &dyn ChangeFeed,
    targets: &Targets,
    state: &FeedState,
    seen_seq: &mut Option<i64>,
    backoff: &mut Duration,
    last_sweep: &mut Option<Instant>,
) -> String {
    let mut sub = match feed.subscribe().await {
        Ok(sub) => sub,
        Err(err) => return err.to_string(),
    };
    let reconnected = seen_seq.is_some();
    let mut probe = match Probe::send(&mut *sub).await {
        Ok(probe) => probe,
        Err(err) => return err,
    };
    let caught_up = match read_log(&mut *sub, targets, state, seen_seq).await {
        Ok(n) => n,
        Err(err) => return err,
    };
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
    let mut reads = ReadLimiter::new();
    loop {
        if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            *last_sweep = Some(Instant::now());
            let now = clock::unix_ms();
            let changes_before = now.saturating_sub(CHANGES_RETENTION.as_millis() as i64);
            let deliveries_before = now.saturating_sub(DELIVERIES_RETENTION.as_millis() as i64);
            if let Err(err) = sub.sweep(changes_before, deliveries_before).await {
                return err.to_string();
            }
        }
        let every = if state.polling.load(Ordering::Acquire) {
            POLL_EVERY
        } else {
            IDLE_CHECK
        };
        // A probe in flight shortens the wait to its deadline, never lengthens it.
        let wait = if !probe.heard && !probe.missed() {
            every.min(PROBE_TIMEOUT.saturating_sub(probe.sent.elapsed()))
        } else {
            every
        };
        let mut woken = match sub.next(wait.max(Duration::from_millis(1))).await {
            Ok(item) => item,
            Err(err) => return err.to_string(),
        };
        // Every notification already here is covered by the one read below.
        while let FeedItem::Notified { payload } = woken {
            if !probe.heard && payload == probe.payload {
                probe.heard = true;
                if state.polling.swap(false, Ordering::AcqRel) {
                    targets.events.emit(ClerkEvent::ChangeFeedListening);
                }
            }
            woken = match sub.next(Duration::ZERO).await {
                Ok(item) => item,
                Err(err) => return err.to_string(),
            };
        }
        if probe.missed() && !state.polling.swap(true, Ordering::AcqRel) {
            targets
                .events
                .emit(ClerkEvent::ChangeFeedPolling { every: POLL_EVERY });
        }
        let reprobe = if state.polling.load(Ordering::Acquire) {
            REPROBE_POLLING
        } else {
            REPROBE_LISTENING
        };
        if (probe.heard || probe.missed()) && probe.sent.elapsed() >= reprobe {
            probe = match Probe::send(&mut *sub).await {
                Ok(probe) => probe,
                Err(err) => return err,
            };
        }
        // A flood of notifications (anyone may send them) costs a bounded number of reads.
        reads.acquire().await;
        if let Err(err) = read_log(&mut *sub, targets, state, seen_seq).await {
            return err;
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
    use crate::mirror::sync::StoreError;

    /// One scripted session: what successive reads of the log return (then nothing), the
    /// notifications that arrive, then an error (or, with `live` empty, silence).
    struct Script {
        reads: VecDeque<Vec<UserChange>>,
        /// The log's last `seq` at start-up.
        last_seq: i64,
        live: VecDeque<Result<FeedItem, StoreError>>,
        /// Whether notifications arrive (the probe comes back).
        hears: bool,
    }

    #[derive(Default)]
    struct FakeFeed {
        scripts: Mutex<VecDeque<Result<Script, StoreError>>>,
        /// The `after_seq` of every read of the log, in order.
        afters: Arc<Mutex<Vec<Option<i64>>>>,
    }

    struct FakeSub {
        script: Script,
        afters: Arc<Mutex<Vec<Option<i64>>>>,
        ended: bool,
    }

    impl ChangeFeed for FakeFeed {
        fn subscribe(&self) -> BoxFuture<'_, Result<Box<dyn ChangeSubscription>, StoreError>> {
            let next = FeedState::lock(&self.scripts).pop_front();
            let afters = self.afters.clone();
            Box::pin(async move {
                match next {
                    Some(Ok(script)) => Ok(Box::new(FakeSub {
                        script,
                        afters,
                        ended: false,
                    }) as Box<dyn ChangeSubscription>),
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
            after_seq: Option<i64>,
            _window: Duration,
        ) -> BoxFuture<'_, Result<(Vec<UserChange>, i64), StoreError>> {
            FeedState::lock(&self.afters).push(after_seq);
            let read = self.script.reads.pop_front().unwrap_or_default();
            let last = read
                .last()
                .map(|c| c.seq)
                .or(after_seq)
                .unwrap_or(self.script.last_seq);
            Box::pin(async move { Ok((read, last)) })
        }

        fn next(&mut self, wait: Duration) -> BoxFuture<'_, Result<FeedItem, StoreError>> {
            let item = self.script.live.pop_front();
            if item.as_ref().is_some_and(Result::is_err) {
                self.ended = true;
            }
            Box::pin(async move {
                match item {
                    Some(item) => item,
                    None => {
                        tokio::time::sleep(wait).await;
                        Ok(FeedItem::Idle)
                    }
                }
            })
        }

        fn probe<'a>(&'a mut self, payload: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
            if self.script.hears && !self.ended {
                self.script.live.push_front(Ok(FeedItem::Notified {
                    payload: payload.to_owned(),
                }));
            }
            Box::pin(async { Ok(()) })
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

    fn notified(payload: &str) -> Result<FeedItem, StoreError> {
        Ok(FeedItem::Notified {
            payload: payload.to_owned(),
        })
    }

    struct Running {
        revoked: Arc<Revocations>,
        handle: FeedHandle,
        events: Arc<Mutex<Vec<String>>>,
        rt: tokio::runtime::Runtime,
    }

    fn run_feed(feed: Arc<FakeFeed>) -> Running {
        let revoked = Arc::new(Revocations::default());
        revoked.start_loading();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let listener = move |e: &ClerkEvent| {
            let name = format!("{e:?}");
            let name = name.split([' ', '{', '(']).next().unwrap_or("").to_owned();
            FeedState::lock(&seen).push(name);
        };
        let targets = Arc::new(Targets {
            revoked: revoked.clone(),
            caches: Vec::new(),
            events: Events::new(vec![Arc::new(listener)]),
            starting: AtomicUsize::new(1),
        });
        let handle = start(feed, targets).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Running {
            revoked,
            handle,
            events,
            rt,
        }
    }

    impl Running {
        fn wait_for(&self, what: &str, done: impl Fn(&Self) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !done(self) {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        fn events(&self) -> Vec<String> {
            FeedState::lock(&self.events).clone()
        }
    }

    #[test]
    fn a_lost_connection_catches_up_after_the_last_seq_applied_and_loads_first() {
        let t0 = 1_800_000_000_000_i64;
        let feed = Arc::new(FakeFeed::default());
        {
            let mut scripts = FeedState::lock(&feed.scripts);
            // Start-up: the database is down once.
            scripts.push_back(Err(StoreError::new("connection refused")));
            // Then: a deletion from before the start; a wake-up whose read finds a ban; then
            // the connection dies.
            scripts.push_back(Ok(Script {
                reads: VecDeque::from([
                    vec![change(1, "user_a", UserChangeKind::Deleted, false, t0)],
                    vec![change(
                        2,
                        "user_b",
                        UserChangeKind::Updated,
                        false,
                        t0 + 5_000,
                    )],
                ]),
                last_seq: 1,
                live: VecDeque::from([
                    notified("anything"),
                    Ok(FeedItem::Idle),
                    Err(StoreError::new("terminating connection")),
                ]),
                hears: false,
            }));
            // Reconnected: what was recorded meanwhile.
            scripts.push_back(Ok(Script {
                reads: VecDeque::from([vec![change(
                    3,
                    "user_c",
                    UserChangeKind::Deleted,
                    false,
                    t0 + 6_000,
                )]]),
                last_seq: 0,
                live: VecDeque::new(),
                hears: true,
            }));
        }
        let run = run_feed(feed.clone());
        run.rt.block_on(async {
            assert!(run.revoked.wait_loaded(Duration::from_secs(5)).await);
        });
        run.wait_for("three changes", |r| {
            r.handle.state.applied.load(Ordering::Acquire) >= 3
        });
        assert_eq!(run.revoked.issued_up_to("user_a"), Some(i64::MAX));
        assert_eq!(
            run.revoked.issued_up_to("user_b"),
            Some((t0 + 5_000) / 1000)
        );
        assert_eq!(run.revoked.issued_up_to("user_c"), Some(i64::MAX));
        // The start-up read, the read after the wake-up, then (reconnected) the read after the
        // last seq applied: by position in the log, not by anyone's clock.
        let afters = FeedState::lock(&feed.afters).clone();
        assert_eq!(afters[..3], [None, Some(1), Some(2)], "{afters:?}");
        assert!(run.handle.state.connected.load(Ordering::Acquire));
        assert_eq!(run.handle.state.disconnects.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_notification_is_a_wake_up_and_its_payload_changes_nothing() {
        let t0 = 1_800_000_000_000_i64;
        // Every payload shape the library has sent, describing a ban and a deletion: the log
        // has nothing, so nothing is applied.
        let forged = [
            change(7, "user_x", UserChangeKind::Updated, false, t0).to_payload(),
            change(8, "user_y", UserChangeKind::Deleted, false, t0).to_payload(),
            "8\tdeleted\t0\t1\t1\tuser_y".to_owned(),
        ];
        let feed = Arc::new(FakeFeed::default());
        FeedState::lock(&feed.scripts).push_back(Ok(Script {
            reads: VecDeque::new(),
            last_seq: 6,
            live: forged.iter().map(|p| notified(p)).collect(),
            hears: true,
        }));
        let run = run_feed(feed.clone());
        run.wait_for("a read after the notifications", |_| {
            FeedState::lock(&feed.afters).len() >= 2
        });
        assert_eq!(run.revoked.issued_up_to("user_x"), None);
        assert_eq!(run.revoked.issued_up_to("user_y"), None);
        assert_eq!(run.handle.state.applied.load(Ordering::Acquire), 0);
        // The notifications that arrived together woke one read of the log, after the
        // start-up position.
        let afters = FeedState::lock(&feed.afters).clone();
        assert_eq!(afters[..2], [None, Some(6)], "{afters:?}");
    }

    #[test]
    fn a_feed_that_does_not_hear_its_probe_polls_and_one_that_does_listens() {
        let deaf = Arc::new(FakeFeed::default());
        FeedState::lock(&deaf.scripts).push_back(Ok(Script {
            reads: VecDeque::new(),
            last_seq: 0,
            live: VecDeque::new(),
            hears: false,
        }));
        let hearing = Arc::new(FakeFeed::default());
        FeedState::lock(&hearing.scripts).push_back(Ok(Script {
            reads: VecDeque::new(),
            last_seq: 0,
            live: VecDeque::new(),
            hears: true,
        }));
        let deaf_run = run_feed(deaf.clone());
        let hearing_run = run_feed(hearing.clone());
        deaf_run.wait_for("polling", |r| {
            r.handle.state.polling.load(Ordering::Acquire)
        });
        assert!(deaf_run.events().contains(&"ChangeFeedPolling".to_owned()));
        // Polling: the log is read every second.
        let before = FeedState::lock(&deaf.afters).len();
        std::thread::sleep(POLL_EVERY * 3 + POLL_EVERY / 2);
        let reads = FeedState::lock(&deaf.afters).len() - before;
        assert!((3..=4).contains(&reads), "{reads} reads in 3.5 s");
        // The hearing feed heard its probe: still listening, no polling event.
        assert!(!hearing_run.handle.state.polling.load(Ordering::Acquire));
        assert!(!hearing_run
            .events()
            .contains(&"ChangeFeedPolling".to_owned()));
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
