//! Budgets for Backend API calls a client can cause without proving they are worth making: a
//! machine token not seen before, a handshake nonce. Clerk's rate limit is shared by the whole
//! instance (1,000 calls per 10 s in production, 100 in development), so one client must not be
//! able to spend it, nor to keep other clients' genuine first calls from being made.
//!
//! Each call takes a token from the caller's own bucket (by client address) and from a global
//! one (the ceiling). A call whose answer shows it was worth making (a genuine token, a nonce
//! Clerk knew) gives both back: genuine clients are not charged, only what Clerk refuses is.
//! A flood from one address empties its own bucket and then stops reaching the global one.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// A token bucket: refilled at `rate` per second, up to `burst`.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

/// `rate` tokens per second, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    pub(crate) per_second: f64,
    pub(crate) burst: u32,
}

impl Rate {
    pub(crate) const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }
}

impl Bucket {
    pub(crate) fn full(rate: Rate) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            last: Instant::now(),
        }
    }

    /// One token, if there is one (refilled up to `now` first).
    pub(crate) fn take(&mut self, rate: Rate, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * rate.per_second;
        self.tokens = (self.tokens + refill).min(f64::from(rate.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until one token is there, as of the last `take`.
    pub(crate) fn until_one(&self, rate: Rate) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / rate.per_second).max(0.0))
    }

    fn give(&mut self, rate: Rate) {
        self.tokens = (self.tokens + 1.0).min(f64::from(rate.burst));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A per-client budget under a global ceiling.
pub(crate) struct ClientBudget {
    global: Mutex<Bucket>,
    global_rate: Rate,
    clients: moka::sync::Cache<IpAddr, Arc<Mutex<Bucket>>>,
    client_rate: Rate,
}

impl std::fmt::Debug for ClientBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBudget")
            .field("global_rate", &self.global_rate)
            .field("client_rate", &self.client_rate)
            .field("clients", &self.clients.entry_count())
            .finish()
    }
}

/// Calls reserved from a [`ClientBudget`]: kept when dropped, given back with
/// [`refund`](Self::refund).
#[must_use]
pub(crate) struct Reservation<'a> {
    budget: &'a ClientBudget,
    client: Option<Arc<Mutex<Bucket>>>,
}

impl Reservation<'_> {
    /// The call was worth making: both buckets get their token back.
    pub(crate) fn refund(self) {
        lock(&self.budget.global).give(self.budget.global_rate);
        if let Some(client) = &self.client {
            lock(client).give(self.budget.client_rate);
        }
    }
}

impl ClientBudget {
    /// Clients whose buckets are remembered (an idle one is forgotten after 10 minutes, when it
    /// would be full again anyway).
    const CLIENTS: u64 = 100_000;

    pub(crate) fn new(global: Rate, per_client: Rate) -> Self {
        Self {
            global: Mutex::new(Bucket::full(global)),
            global_rate: global,
            clients: moka::sync::Cache::builder()
                .max_capacity(Self::CLIENTS)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            client_rate: per_client,
        }
    }

    /// One call for `client` (its address; `None` when unknown: only the global ceiling
    /// applies), or `None` when its bucket or the global one is empty.
    pub(crate) fn reserve(&self, client: Option<IpAddr>) -> Option<Reservation<'_>> {
        let now = Instant::now();
        let bucket = client.map(|ip| {
            self.clients
                .get_with(ip, || Arc::new(Mutex::new(Bucket::full(self.client_rate))))
        });
        if let Some(bucket) = &bucket {
            if !lock(bucket).take(self.client_rate, now) {
                return None;
            }
        }
        if !lock(&self.global).take(self.global_rate, now) {
            // The client's token goes back: the call is not made.
            if let Some(bucket) = &bucket {
                lock(bucket).give(self.client_rate);
            }
            return None;
        }
        Some(Reservation {
            budget: self,
            client: bucket,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn a_flooding_client_spends_its_own_bucket_not_the_global_one() {
        // Slow refills: the test runs within a fraction of one refill.
        let budget = ClientBudget::new(Rate::new(0.001, 20), Rate::new(0.001, 5));
        let flood = (0..1_000)
            .filter_map(|_| budget.reserve(ip(1)))
            .map(std::mem::forget)
            .count();
        assert_eq!(flood, 5, "the flooder gets its burst");
        // Another client still has the global budget (20 - 5 left) up to its own burst.
        let other = (0..10)
            .filter_map(|_| budget.reserve(ip(2)))
            .map(std::mem::forget)
            .count();
        assert_eq!(other, 5);
        // Without an address, only the global ceiling: 10 left.
        let anonymous = (0..100)
            .filter_map(|_| budget.reserve(None))
            .map(std::mem::forget)
            .count();
        assert_eq!(anonymous, 10);
        assert!(budget.reserve(ip(3)).is_none(), "the ceiling holds");
    }

    #[test]
    fn refunded_calls_cost_nothing_and_refused_ones_are_kept() {
        let budget = ClientBudget::new(Rate::new(0.001, 3), Rate::new(0.001, 2));
        // Genuine: every call refunded, so a hundred of them go through.
        for _ in 0..100 {
            budget.reserve(ip(1)).expect("refunded calls").refund();
        }
        // Refused: kept (dropped without refund).
        drop(budget.reserve(ip(1)));
        drop(budget.reserve(ip(1)));
        assert!(budget.reserve(ip(1)).is_none());
        // The global bucket lost 2 of 3.
        drop(budget.reserve(ip(2)));
        assert!(budget.reserve(ip(2)).is_none());
    }

    #[test]
    fn a_client_refused_by_the_ceiling_keeps_its_own_token() {
        let budget = ClientBudget::new(Rate::new(0.001, 1), Rate::new(0.001, 1));
        drop(budget.reserve(ip(1)));
        // The ceiling is empty: client 2 is refused, and its own token is not spent.
        assert!(budget.reserve(ip(2)).is_none());
        let bucket = budget.clients.get(&IpAddr::from([127, 0, 0, 2])).unwrap();
        assert!(lock(&bucket).tokens >= 1.0);
    }
}
