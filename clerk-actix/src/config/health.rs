//! The health report ([`Clerk::health`]): keys loaded and their age, the last JWKS and Backend
//! API failures, whether each user store answers, each change feed's state. No secret, key
//! material or token appears in it. `actix::health::readyz` serves it; the public path is
//! `clerk_actix::health`.

use std::{sync::atomic::Ordering, time::Duration};

use serde::Serialize;

use super::Clerk;

/// A point-in-time report. Serializes as the `/readyz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Whether tokens can be verified now: a PEM key, or a loaded JWKS, and (next to other
    /// replicas on PostgreSQL) the revocations they recorded loaded. A user store or the
    /// Backend API being down affects every replica alike, and users already cached are still
    /// served, so it is reported but does not take the replica out.
    pub ready: bool,
    /// The verification keys.
    pub keys: KeysHealth,
    /// The Backend API's user calls (absent without a secret key).
    pub backend_api: Option<BackendApiHealth>,
    /// Each registered user store.
    pub stores: Vec<StoreHealth>,
    /// Each change feed (replicas sharing a PostgreSQL database); empty on SQLite. A replica is
    /// not ready until its feeds have loaded the revocations other replicas recorded; once they
    /// have, a lost connection is reported here but keeps the replica ready (it serves from its
    /// caches and catches up when it reconnects).
    pub change_feeds: Vec<ChangeFeedHealth>,
}

/// One change feed in [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChangeFeedHealth {
    /// Whether the feed's connection is up.
    pub connected: bool,
    /// `"listening"` (notifications arrive: the log is read when woken, and every 5 s) or
    /// `"polling"` (they do not, e.g. through a transaction-mode pooler: the log is read every
    /// second).
    pub mode: &'static str,
    /// Whether the start-up revocations are loaded.
    pub revocations_loaded: bool,
    /// Seconds since the connection was lost (while it is down).
    pub disconnected_seconds: Option<u64>,
    /// Connections lost so far.
    pub disconnects: u64,
    /// Changes applied so far.
    pub changes_applied: u64,
    /// The class of the last connection error (`connection-refused`, `timeout`,
    /// `connection-lost`, `tls`, `authentication`, `permission-denied`, `missing-database`,
    /// `missing-table`, `database-error`): the detail, which can name hosts, users and certificates, is only in
    /// the log (`ChangeFeedDisconnected`).
    pub last_error: Option<&'static str>,
    /// Seconds since that error.
    pub last_error_seconds_ago: Option<u64>,
}

/// The keys side of [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeysHealth {
    /// `"pem"` (`CLERK_JWT_KEY`: no network) or `"jwks"`.
    pub source: &'static str,
    /// How many keys are loaded (key ids, never key material).
    pub keys: usize,
    /// Seconds since the key set was last fetched (JWKS only).
    pub age_seconds: Option<u64>,
    /// The reason code of the last failed fetch, if the last fetch failed.
    pub last_error: Option<&'static str>,
    /// Failed fetches in a row.
    pub consecutive_failures: u32,
}

/// The Backend API side of [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackendApiHealth {
    /// Seconds since a user call last got an answer.
    pub last_success_seconds_ago: Option<u64>,
    /// The last failure: a short code (`unreachable`, `rate-limited`, `error-status`, ...).
    pub last_error: Option<&'static str>,
    /// Seconds since that failure.
    pub last_error_seconds_ago: Option<u64>,
}

/// One user store in [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreHealth {
    /// The model's type name.
    pub model: &'static str,
    /// Whether it answered a trivial query.
    pub reachable: bool,
}

/// The class of a database error, for a report anyone may read (the text can name hosts,
/// users and certificates).
fn failure_class(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| e.contains(n));
    if has(&["tls", "certificate", "ssl"]) {
        "tls"
    } else if has(&["password", "authentication", "no pg_hba.conf entry"])
        || (has(&["role \""]) && has(&["does not exist"]))
    {
        "authentication"
    } else if has(&["database \""]) && has(&["does not exist"]) {
        "missing-database"
    } else if has(&["are missing", "does not exist"]) {
        "missing-table"
    } else if has(&["permission denied", "must be owner"]) {
        "permission-denied"
    } else if has(&["connection refused", "could not connect", "os error 111"]) {
        "connection-refused"
    } else if has(&["no answer within", "timed out", "timeout"]) {
        "timeout"
    } else if has(&[
        "closed",
        "terminating",
        "reset by peer",
        "broken pipe",
        "eof",
    ]) {
        "connection-lost"
    } else {
        "database-error"
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

impl Clerk {
    /// The health report. With a JWKS and no keys loaded yet, it first tries to load them
    /// (unless Clerk is in back-off), so a readiness probe at start-up makes the first fetch.
    /// Each user store is pinged (a trivial query).
    pub async fn health(&self) -> Health {
        let sessions = &self.inner.sessions;
        let keys = match (&sessions.static_keys, &sessions.jwks) {
            (Some(pem), _) => KeysHealth {
                source: "pem",
                keys: pem.kids().count().max(1),
                age_seconds: None,
                last_error: None,
                consecutive_failures: 0,
            },
            (None, Some(jwks)) => {
                jwks.ensure_loaded(&self.inner.events).await;
                let status = jwks.status();
                KeysHealth {
                    source: "jwks",
                    keys: status.kids,
                    age_seconds: status.age.map(secs),
                    last_error: status.last_error.map(|r| r.as_str()),
                    consecutive_failures: status.consecutive_failures,
                }
            }
            (None, None) => KeysHealth {
                source: "none",
                keys: 0,
                age_seconds: None,
                last_error: None,
                consecutive_failures: 0,
            },
        };
        let backend_api = self.inner.users.api.as_ref().map(|api| {
            let status = api
                .status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            BackendApiHealth {
                last_success_seconds_ago: status.last_success.map(|t| secs(t.elapsed())),
                last_error: status.last_error.map(|(code, _)| code),
                last_error_seconds_ago: status.last_error.map(|(_, t)| secs(t.elapsed())),
            }
        });
        let mut stores = Vec::with_capacity(self.inner.users.pings.len());
        for (model, ping) in &self.inner.users.pings {
            stores.push(StoreHealth {
                model,
                reachable: ping().await.is_ok(),
            });
        }
        let change_feeds: Vec<_> = self
            .inner
            .feeds
            .iter()
            .map(|feed| {
                let state = &feed.state;
                let (last_error, down) = state.errors();
                ChangeFeedHealth {
                    connected: state.connected.load(Ordering::Acquire),
                    mode: if state.polling.load(Ordering::Acquire) {
                        "polling"
                    } else {
                        "listening"
                    },
                    revocations_loaded: state.loaded.load(Ordering::Acquire),
                    disconnected_seconds: down.map(secs),
                    disconnects: state.disconnects.load(Ordering::Relaxed),
                    changes_applied: state.applied.load(Ordering::Relaxed),
                    last_error_seconds_ago: last_error.as_ref().map(|(_, ago)| secs(*ago)),
                    last_error: last_error.map(|(e, _)| failure_class(&e)),
                }
            })
            .collect();
        Health {
            ready: keys.keys > 0 && change_feeds.iter().all(|f| f.revocations_loaded),
            keys,
            backend_api,
            stores,
            change_feeds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::failure_class;

    #[test]
    fn database_errors_are_reported_by_class_only() {
        for (error, class) in [
            (
                "change feed connect: error performing TLS handshake: invalid peer certificate: UnknownIssuer",
                "tls",
            ),
            ("change feed connect: db error: FATAL: password authentication failed for user \"app\"", "authentication"),
            ("change feed connect: db error: FATAL: role \"app\" does not exist", "authentication"),
            ("change feed connect: db error: FATAL: database \"app\" does not exist", "missing-database"),
            (
                "the store's tables clerk_user_changes are missing and could not be created (permission denied for schema public): run ...",
                "missing-table",
            ),
            ("store tables: permission denied for table clerk_user_changes", "permission-denied"),
            ("change feed connect: error connecting to server: Connection refused (os error 111)", "connection-refused"),
            ("change feed catch-up: no answer within 5s", "timeout"),
            ("change feed: the connection closed", "connection-lost"),
            ("change feed: db error: FATAL: terminating connection due to administrator command", "connection-lost"),
            ("something else entirely", "database-error"),
        ] {
            assert_eq!(failure_class(error), class, "{error}");
        }
    }
}
