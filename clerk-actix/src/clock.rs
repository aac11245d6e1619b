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
