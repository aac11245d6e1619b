//! The public async API off actix: every future is `Send` (checked by `tokio::spawn`, which
//! requires it) and runs on a plain multi-threaded tokio runtime, as a background job would.

#![allow(clippy::unwrap_used)]

use clerk_actix::{
    store::ClerkUserRecord,
    testing::{Endpoint, MockClerk},
    TokenCarrier,
};
use clerk_actix_tests::db::{Backend, TestDb};

#[test]
fn the_public_async_api_runs_on_a_plain_tokio_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mock = MockClerk::start();
    runtime.block_on(async {
        let (db, store) = TestDb::new(Backend::Sqlite).await;
        let clerk = mock.clerk_builder().user_store(store).build().unwrap();

        let c = clerk.clone();
        let details = tokio::spawn(async move { c.get_user_details("user_send").await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(details.id, "user_send");

        let c = clerk.clone();
        let synced = tokio::spawn(async move { c.sync_user::<ClerkUserRecord>(&details).await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(synced.clerk_user_id, "user_send");

        // Served from the cache sync_user filled: no second Backend API call.
        let c = clerk.clone();
        let user = tokio::spawn(async move { c.user::<ClerkUserRecord>("user_send").await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user, synced);
        assert_eq!(mock.requests(Endpoint::User), 1);

        // Token verification with a JWKS fetch (its refresh task is spawned on this runtime).
        let token = mock.token().subject("user_send").build();
        let c = clerk.clone();
        let session =
            tokio::spawn(async move { c.authenticate_token(&token, TokenCarrier::Header).await })
                .await
                .unwrap()
                .unwrap();
        assert_eq!(session.user_id(), "user_send");
        assert_eq!(mock.requests(Endpoint::Jwks), 1);

        // Many at once from several threads: one client, all answered.
        let calls = (0..16).map(|i| {
            let c = clerk.clone();
            tokio::spawn(async move { c.get_user_details(&format!("user_many_{i}")).await })
        });
        for call in futures_util::future::join_all(calls).await {
            assert!(call.unwrap().is_ok());
        }
        db.cleanup().await;
    });
}
