//! The remote JWKS (`GET {api_url}/jwks`): lock-free reads, one refresh in flight on a task of
//! its own (requests wait for it, never own it), a TTL,
//! rate-limited refreshes on unknown `kid`s, back-off after failures, and known keys kept in
//! service while Clerk is unreachable. The refresh decision is a pure function of instants
//! (`decide`) so it is tested with back-dated times.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use futures_util::future::{FutureExt as _, Shared};
use tokio::sync::oneshot;

use crate::{
    base::api::{self, ApiError, SecretKey},
    base::error::{AuthError, AuthErrorReason as R},
    base::events::{ClerkEvent, Events, JwksRefreshCause},
    base::telemetry,
    tokens::keys::VerificationKeys,
};

/// Timings of the JWKS cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksPolicy {
    /// How long a fetched key set is used before it is fetched again (Clerk's SDKs: 5 min).
    pub ttl: Duration,
    /// At most one refresh per this interval is caused by unknown `kid`s, so random `kid`s
    /// cannot make the server hammer Clerk.
    pub unknown_kid_interval: Duration,
    /// First back-off after a failed fetch; doubles per failure.
    pub backoff_base: Duration,
    /// Largest back-off.
    pub backoff_max: Duration,
    /// Timeout of one HTTP attempt.
    pub timeout: Duration,
    /// Attempts per fetch for transient failures (network, 5xx).
    pub attempts: u32,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            unknown_kid_interval: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            attempts: 3,
        }
    }
}

/// What the fetcher remembers between requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RefreshState {
    pub last_success: Option<Instant>,
    pub last_unknown_kid_fetch: Option<Instant>,
    pub failures: u32,
    pub retry_at: Option<Instant>,
    pub last_error: Option<R>,
    /// Bumped after every fetch attempt, so waiters know one happened while they waited.
    pub generation: u64,
}

/// The JWKS side of the health report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JwksStatus {
    pub(crate) kids: usize,
    pub(crate) age: Option<Duration>,
    pub(crate) last_error: Option<R>,
    pub(crate) consecutive_failures: u32,
}

/// What to do for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The cached keys can answer.
    Use,
    /// Fetch the JWKS first.
    Fetch(JwksRefreshCause),
    /// The `kid` is unknown and a refresh for unknown `kid`s happened too recently.
    KidMismatch,
    /// Clerk is in back-off and the cached keys cannot answer: retry after this long.
    Unavailable(Duration),
}

/// The refresh decision, as a pure function of the state and the current instant.
pub(crate) fn decide(
    state: &RefreshState,
    policy: &JwksPolicy,
    now: Instant,
    have_keys: bool,
    kid_known: bool,
) -> Decision {
    let backoff_left = state
        .retry_at
        .and_then(|t| t.checked_duration_since(now))
        .filter(|d| !d.is_zero());
    if !have_keys {
        return match backoff_left {
            Some(left) => Decision::Unavailable(left),
            None => Decision::Fetch(JwksRefreshCause::Initial),
        };
    }
    let expired = state
        .last_success
        .is_none_or(|t| now.saturating_duration_since(t) >= policy.ttl);
    if kid_known {
        return if expired && backoff_left.is_none() {
            Decision::Fetch(JwksRefreshCause::Expired)
        } else {
            Decision::Use
        };
    }
    if let Some(left) = backoff_left {
        return Decision::Unavailable(left);
    }
    if expired {
        return Decision::Fetch(JwksRefreshCause::Expired);
    }
    let may_refresh = state
        .last_unknown_kid_fetch
        .is_none_or(|t| now.saturating_duration_since(t) >= policy.unknown_kid_interval);
    if may_refresh {
        Decision::Fetch(JwksRefreshCause::UnknownKid)
    } else {
        Decision::KidMismatch
    }
}

/// Back-off after `failures` failures in a row: base · 2^(failures-1), capped, with up to +50 %
/// jitter so replicas do not retry in step.
pub(crate) fn backoff(policy: &JwksPolicy, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let raw = policy.backoff_base.saturating_mul(1 << exp);
    let capped = raw.min(policy.backoff_max);
    let jitter = capped.as_secs_f64() * fastrand::f64() * 0.5;
    capped.saturating_add(Duration::try_from_secs_f64(jitter).unwrap_or_default())
}

/// The JWKS of one Clerk instance.
#[derive(Debug)]
pub(crate) struct RemoteJwks {
    url: String,
    secret_key: SecretKey,
    policy: JwksPolicy,
    keys: ArcSwapOption<VerificationKeys>,
    state: Mutex<RefreshState>,
    /// The refresh in flight, if any: requests that need its result wait on this.
    inflight: Mutex<Option<Refresh>>,
}

/// Resolves when a refresh task has finished (or was dropped with its runtime).
type Refresh = Shared<oneshot::Receiver<()>>;

fn kid_mismatch() -> AuthError {
    AuthError::new(R::JwkKidMismatch, "no JWK matches the token's kid")
}

fn unavailable(reason: R, retry_after: Duration) -> AuthError {
    let detail = if reason == R::RemoteJwkInvalid {
        "the Clerk JWKS response held no usable key"
    } else {
        "the Clerk JWKS could not be loaded"
    };
    AuthError::unavailable(reason, detail, retry_after)
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RemoteJwks {
    pub(crate) fn new(api_url: &str, secret_key: SecretKey, policy: JwksPolicy) -> Self {
        Self {
            url: format!("{api_url}/jwks"),
            secret_key,
            policy,
            keys: ArcSwapOption::empty(),
            state: Mutex::new(RefreshState::default()),
            inflight: Mutex::new(None),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RefreshState> {
        locked(&self.state)
    }

    /// The keys to verify a token with this `kid`, fetching the JWKS when needed.
    ///
    /// A fetch runs on a task of its own: the request that started it only waits for it, so a
    /// client that disconnects cancels its wait, never the fetch (which would otherwise count
    /// as a failure and delay new keys by a back-off).
    pub(crate) async fn keys_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        events: &Events,
    ) -> Result<Arc<VerificationKeys>, AuthError> {
        // State first, keys second: a fetch that lands in between is then seen as "keys present",
        // never as "state says fetched, keys say nothing" (which would fetch twice).
        let (state, generation) = {
            let st = self.state();
            (st.clone(), st.generation)
        };
        if let Some(at) = state.last_success {
            telemetry::jwks_age(at.elapsed());
        }
        let snapshot = self.keys.load_full();
        let kid_known = snapshot.as_ref().is_some_and(|k| k.contains(kid));
        let decision = decide(
            &state,
            &self.policy,
            Instant::now(),
            snapshot.is_some(),
            kid_known,
        );
        let cause = match decision {
            Decision::Use => {
                return snapshot.ok_or_else(|| self.outage_error(Duration::from_secs(1)))
            }
            Decision::KidMismatch => return Err(kid_mismatch()),
            Decision::Unavailable(left) => return Err(self.outage_error(left)),
            Decision::Fetch(cause) => cause,
        };
        let refresh = self.refresh(cause, generation, events);
        if kid_known {
            // A routine TTL refresh for a kid we know: it runs in the background while this
            // request (and every other) keeps using the current keys.
            if let Some(keys) = snapshot {
                return Ok(keys);
            }
        }
        if let Some(refresh) = refresh {
            // `Err` only if the task was dropped with its runtime: the state tells the rest.
            let _ = refresh.await;
        }
        match self.keys.load_full() {
            Some(keys) if keys.contains(kid) => Ok(keys),
            current => {
                let st = self.state();
                let failed = st.last_error.is_some();
                let left = st
                    .retry_at
                    .and_then(|t| t.checked_duration_since(Instant::now()))
                    .filter(|d| !d.is_zero())
                    .unwrap_or(Duration::from_secs(1));
                drop(st);
                // No keys at all, or the last fetch failed: an outage, not a bad token.
                if current.is_none() || failed {
                    Err(self.outage_error(left))
                } else {
                    Err(kid_mismatch())
                }
            }
        }
    }

    /// The refresh to wait for: the one in flight, else a new one on its own task. `None` when
    /// a fetch finished since the caller read `generation` (its result is already in place).
    fn refresh(
        self: &Arc<Self>,
        cause: JwksRefreshCause,
        generation: u64,
        events: &Events,
    ) -> Option<Refresh> {
        let mut inflight = locked(&self.inflight);
        if let Some(refresh) = inflight.as_ref() {
            return Some(refresh.clone());
        }
        if self.state().generation != generation {
            return None;
        }
        let (done, refresh) = oneshot::channel();
        let refresh = refresh.shared();
        *inflight = Some(refresh.clone());
        drop(inflight);
        // The guard exists before the task does: however the task ends — or if it is never
        // polled, or cannot be spawned at all (no tokio runtime: spawning panics) — dropping it
        // clears `inflight`, so a later request can fetch again.
        let in_flight = InFlight(Arc::clone(self));
        let events = events.clone();
        // A `Send` task on whichever tokio runtime the request runs on (actix's, or any other).
        tokio::spawn(async move {
            in_flight.0.fetch(cause, &events).await;
            // Cleared before waiters wake, so a waiter that needs another fetch can start one.
            drop(in_flight);
            let _ = done.send(());
        });
        Some(refresh)
    }

    /// What the health report shows: keys loaded, their age, the last failure.
    pub(crate) fn status(&self) -> JwksStatus {
        let st = self.state();
        if let Some(at) = st.last_success {
            telemetry::jwks_age(at.elapsed());
        }
        let keys = self.keys.load();
        JwksStatus {
            kids: keys.as_ref().map_or(0, |k| k.kids().count()),
            age: st.last_success.map(|t| t.elapsed()),
            last_error: st.last_error,
            consecutive_failures: st.failures,
        }
    }

    /// Loads the key set now if none is loaded (and Clerk is not in back-off): a readiness
    /// probe at start-up makes the first fetch, instead of the first user request.
    pub(crate) async fn ensure_loaded(self: &Arc<Self>, events: &Events) {
        if self.keys.load().is_none() {
            // No kid: any key set will do; the outcome is in `status()`.
            let _ = self.keys_for(None, events).await;
        }
    }

    fn outage_error(&self, retry_after: Duration) -> AuthError {
        match self.state().last_error {
            Some(R::InvalidSecretKey) => AuthError::new(
                R::InvalidSecretKey,
                "Clerk refused the secret key: check CLERK_SECRET_KEY",
            ),
            Some(R::RemoteJwkInvalid) => unavailable(R::RemoteJwkInvalid, retry_after),
            _ => unavailable(R::RemoteJwkFailedToLoad, retry_after),
        }
    }

    /// One fetch (with bounded retries for transient failures); updates keys and state.
    async fn fetch(&self, cause: JwksRefreshCause, events: &Events) {
        let result = self.fetch_keys().await;
        let now = Instant::now();
        match result {
            Ok(fresh) => {
                let kids: Vec<String> = fresh.kids().map(str::to_owned).collect();
                let merged = match (cause, self.keys.load_full()) {
                    (JwksRefreshCause::UnknownKid, Some(old)) => old.merged_with(&fresh),
                    _ => fresh,
                };
                self.keys.store(Some(Arc::new(merged)));
                {
                    let mut st = self.state();
                    st.last_success = Some(now);
                    st.failures = 0;
                    st.retry_at = None;
                    st.last_error = None;
                    st.generation += 1;
                    if cause == JwksRefreshCause::UnknownKid {
                        st.last_unknown_kid_fetch = Some(now);
                    }
                }
                telemetry::jwks_refreshed(
                    true,
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                );
                events.emit(ClerkEvent::JwksRefreshed { cause, kids });
            }
            Err(err) => {
                let (reason, wait) = match &err {
                    ApiError::RateLimited { retry_after } => {
                        (R::RemoteJwkFailedToLoad, Some(*retry_after))
                    }
                    e if e.is_invalid_secret_key() => (R::InvalidSecretKey, None),
                    ApiError::InvalidBody => (R::RemoteJwkInvalid, None),
                    _ => (R::RemoteJwkFailedToLoad, None),
                };
                telemetry::jwks_refreshed(false, 0.0);
                let (failures, retry_after) = self.record_failure(cause, reason, wait, now);
                events.emit(ClerkEvent::JwksRefreshFailed {
                    cause,
                    reason,
                    consecutive_failures: failures,
                    retry_after,
                });
            }
        }
    }

    /// Counts a failed fetch and schedules the next attempt: the server's `Retry-After` or the
    /// exponential back-off, clamped to [1 s, `backoff_max`] so neither `Retry-After: 0` nor a
    /// huge value can break the schedule.
    fn record_failure(
        &self,
        cause: JwksRefreshCause,
        reason: R,
        wait: Option<Duration>,
        now: Instant,
    ) -> (u32, Duration) {
        let mut st = self.state();
        st.failures = st.failures.saturating_add(1);
        let floor = self
            .policy
            .backoff_base
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(100));
        let ceiling = self.policy.backoff_max.max(floor);
        let wait = wait
            .unwrap_or_else(|| backoff(&self.policy, st.failures))
            .clamp(floor, ceiling);
        st.retry_at = Some(now.checked_add(wait).unwrap_or(now));
        st.last_error = Some(reason);
        st.generation += 1;
        if cause == JwksRefreshCause::UnknownKid {
            st.last_unknown_kid_fetch = Some(now);
        }
        (st.failures, wait)
    }

    async fn fetch_keys(&self) -> Result<VerificationKeys, ApiError> {
        let body = api::get_with_retries(
            "jwks",
            &self.url,
            &self.secret_key,
            self.policy.timeout,
            256 * 1024,
            self.policy.attempts,
        )
        .await?;
        VerificationKeys::from_jwks_bytes(&body).map_err(|_| ApiError::InvalidBody)
    }
}

/// Marks the end of the refresh task, however it ends (also when dropped with its runtime).
struct InFlight(Arc<RemoteJwks>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *locked(&self.0.inflight) = None;
    }
}

/// The keys for a token with this `kid`: the configured PEM key(s) when set, else the remote
/// JWKS; neither is `jwk-failed-to-resolve` (one rule for sessions and machine JWTs).
pub(crate) async fn resolve_keys(
    static_keys: Option<&Arc<VerificationKeys>>,
    jwks: Option<&Arc<RemoteJwks>>,
    kid: Option<&str>,
    events: &Events,
) -> Result<Arc<VerificationKeys>, AuthError> {
    match (static_keys, jwks) {
        (Some(keys), _) => Ok(keys.clone()),
        (None, Some(jwks)) => jwks.keys_for(kid, events).await,
        (None, None) => Err(AuthError::new(
            R::JwkFailedToResolve,
            "set CLERK_SECRET_KEY or CLERK_JWT_KEY",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> JwksPolicy {
        JwksPolicy::default()
    }

    #[test]
    fn no_keys_fetches_unless_backing_off() {
        let now = Instant::now();
        let st = RefreshState::default();
        assert_eq!(
            decide(&st, &policy(), now, false, false),
            Decision::Fetch(JwksRefreshCause::Initial)
        );
        let st = RefreshState {
            retry_at: Some(now + Duration::from_secs(4)),
            failures: 1,
            ..Default::default()
        };
        assert_eq!(
            decide(&st, &policy(), now, false, false),
            Decision::Unavailable(Duration::from_secs(4))
        );
        // Back-off over: try again.
        assert_eq!(
            decide(&st, &policy(), now + Duration::from_secs(5), false, false),
            Decision::Fetch(JwksRefreshCause::Initial)
        );
    }

    #[test]
    fn known_kid_uses_cache_until_ttl_then_refreshes() {
        let t0 = Instant::now();
        let st = RefreshState {
            last_success: Some(t0),
            ..Default::default()
        };
        assert_eq!(
            decide(&st, &policy(), t0 + Duration::from_secs(299), true, true),
            Decision::Use
        );
        assert_eq!(
            decide(&st, &policy(), t0 + Duration::from_secs(300), true, true),
            Decision::Fetch(JwksRefreshCause::Expired)
        );
    }

    #[test]
    fn known_kid_keeps_serving_during_backoff() {
        let t0 = Instant::now();
        let st = RefreshState {
            last_success: Some(t0),
            failures: 3,
            retry_at: Some(t0 + Duration::from_secs(400)),
            ..Default::default()
        };
        assert_eq!(
            decide(&st, &policy(), t0 + Duration::from_secs(350), true, true),
            Decision::Use
        );
    }

    #[test]
    fn unknown_kid_refreshes_at_most_once_per_interval() {
        let t0 = Instant::now();
        let st = RefreshState {
            last_success: Some(t0),
            last_unknown_kid_fetch: Some(t0 + Duration::from_secs(1)),
            ..Default::default()
        };
        assert_eq!(
            decide(&st, &policy(), t0 + Duration::from_secs(5), true, false),
            Decision::KidMismatch
        );
        assert_eq!(
            decide(&st, &policy(), t0 + Duration::from_secs(11), true, false),
            Decision::Fetch(JwksRefreshCause::UnknownKid)
        );
        let never = RefreshState {
            last_success: Some(t0),
            ..Default::default()
        };
        assert_eq!(
            decide(&never, &policy(), t0 + Duration::from_secs(1), true, false),
            Decision::Fetch(JwksRefreshCause::UnknownKid)
        );
    }

    #[test]
    fn unknown_kid_during_backoff_is_unavailable() {
        let t0 = Instant::now();
        let st = RefreshState {
            last_success: Some(t0),
            failures: 1,
            retry_at: Some(t0 + Duration::from_secs(10)),
            ..Default::default()
        };
        assert!(matches!(
            decide(&st, &policy(), t0 + Duration::from_secs(2), true, false),
            Decision::Unavailable(_)
        ));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = policy();
        for failures in 1..20 {
            let b = backoff(&p, failures);
            let floor = p
                .backoff_base
                .saturating_mul(1 << (failures - 1).min(16))
                .min(p.backoff_max);
            assert!(b >= floor && b <= floor.mul_f64(1.5), "{failures}: {b:?}");
        }
        assert!(backoff(&p, 30) <= p.backoff_max.mul_f64(1.5));
    }
}
