//! The wall clock in the units Clerk uses: Unix seconds (token times) and milliseconds
//! (Backend API and webhook times).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (0 before 1970).
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Now, in Unix seconds (0 before 1970).
pub(crate) fn unix_secs() -> i64 {
    unix_ms() / 1000
}

/// The clock session tokens are verified against: the system's, or one a test sets with
/// `ClerkBuilder::clock` (feature `testing`) to cross an expiry without sleeping.
#[derive(Clone, Default)]
pub(crate) struct Clock(Option<std::sync::Arc<dyn Fn() -> SystemTime + Send + Sync>>);

impl Clock {
    /// A clock reading `now` instead of the system's.
    #[cfg(feature = "testing")]
    pub(crate) fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self(Some(std::sync::Arc::new(now)))
    }

    /// The current time.
    pub(crate) fn now(&self) -> SystemTime {
        self.0.as_ref().map_or_else(SystemTime::now, |now| now())
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(set)"
        } else {
            "Clock(system)"
        })
    }
}
