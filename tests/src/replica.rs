//! A replica of an application on a shared PostgreSQL database: a `Clerk` handle with its own
//! pools and change feed, served over HTTP, as a separate process would be.

use std::time::{Duration, Instant};

use clerk_actix::{
    store::{ClerkUserRecord, DieselUserStore},
    testing::MockClerk,
    Clerk, ClerkBuilder,
};

use crate::http::{get, serve};

/// One replica: its handle and base URL.
#[derive(Debug)]
pub struct Replica {
    /// The handle.
    pub clerk: Clerk,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Replica {
    /// A replica over `url` (a store of its own, migrated), served, its change feed connected.
    pub async fn start(mock: &MockClerk, url: &str) -> Self {
        Self::start_with(mock, url, |b| b).await
    }

    /// [`start`](Self::start), with `configure` applied to the builder (event listeners...).
    pub async fn start_with(
        mock: &MockClerk,
        url: &str,
        configure: impl FnOnce(ClerkBuilder) -> ClerkBuilder,
    ) -> Self {
        let store: DieselUserStore<ClerkUserRecord> = DieselUserStore::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        store
            .run_migrations()
            .await
            .unwrap_or_else(|e| panic!("migrations: {e}"));
        let clerk = configure(mock.clerk_builder().user_store(store))
            .build()
            .unwrap_or_else(|e| panic!("build: {e}"));
        let base = serve(clerk.clone());
        let replica = Self { clerk, base };
        replica.wait_connected(Duration::from_secs(10)).await;
        replica
    }

    /// Its webhook endpoint.
    pub fn hook(&self) -> String {
        format!("{}/webhooks/clerk", self.base)
    }

    /// Waits until its change feed is connected and has loaded the revocations.
    pub async fn wait_connected(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let health = self.clerk.health().await;
            let feed = &health.change_feeds[0];
            if feed.connected && feed.revocations_loaded {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the change feed did not connect: {health:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET path` with `token`: the status and the reason code (`""` when none).
    pub async fn answer(&self, path: &str, token: &str) -> (u16, String) {
        let (status, body) = get(&self.base, path, token).await;
        (status, body["reason"].as_str().unwrap_or("").to_owned())
    }

    /// `GET path` with `token`: the status.
    pub async fn status(&self, path: &str, token: &str) -> u16 {
        get(&self.base, path, token).await.0
    }
}

/// Polls `check` every 5 ms until it holds; the time it took, or a failure after `within`.
pub async fn within<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
