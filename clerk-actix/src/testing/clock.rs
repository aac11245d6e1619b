//! A clock a test moves by hand.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

/// The system clock plus an offset the test advances: verification reads it through
/// [`ClerkBuilder::clock`](crate::ClerkBuilder::clock), so a test crosses a token's expiry
/// without sleeping (and without racing a wall-clock second).
///
/// ```
/// use std::time::Duration;
/// use clerk_actix::testing::{MockClerk, TestClock};
///
/// let mock = MockClerk::start();
/// let clock = TestClock::new();
/// let clerk = mock.clerk_builder().clock(clock.reader()).build().unwrap();
/// clock.advance(Duration::from_secs(120)); // every token minted before now is expired
/// # drop(clerk);
/// ```
#[derive(Debug, Clone, Default)]
pub struct TestClock {
    offset_ms: Arc<AtomicU64>,
}

impl TestClock {
    /// A clock at the system's time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// What the clock reads now.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    /// A function reading this clock, for [`ClerkBuilder::clock`](crate::ClerkBuilder::clock).
    pub fn reader(&self) -> impl Fn() -> SystemTime + Send + Sync + 'static {
        let clock = self.clone();
        move || clock.now()
    }
}
