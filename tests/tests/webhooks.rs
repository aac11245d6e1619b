//! Webhooks end to end over real HTTP (an actix server on 127.0.0.1) on PostgreSQL and SQLite:
//! created, updated, deleted, replay, reordering, bad signatures, store down, unknown types.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;

use clerk_actix::{
    testing::{Endpoint, MockClerk, WebhookDelivery, MOCK_WEBHOOK_SECRET},
    webhooks::{DeletedUserPolicy, WebhookOutcome},
    Clerk, ClerkEvent, UserStore,
};
use clerk_actix_tests::{
    db::{TestDb, BACKENDS},
    http::{get, serve, user_json},
    Probe, Recorder,
};
use serde_json::json;

#[actix_web::test]
async fn created_updated_deleted_replayed_and_reordered() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let rec = Recorder::default();
        let clerk = mock
            .clerk_builder()
            .user_store(store)
            .on_event(rec.listener())
            .build()
            .unwrap();
        let base = serve(clerk);
        let hook = format!("{base}/webhooks/clerk");
        let fresh: clerk_actix::store::DieselUserStore =
            clerk_actix::store::DieselUserStore::connect(&db.url)
                .await
                .unwrap();

        // created → row.
        let created = mock.webhook("user.created", user_json("user_wh", 1_000, "Ada"));
        let (status, body) = created.send(&hook).await.unwrap();
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("applied")),
            "{backend:?}"
        );
        let row = fresh.find("user_wh").await.unwrap().unwrap();
        assert_eq!(row.first_name.as_deref(), Some("Ada"));
        assert_eq!(row.email.as_deref(), Some("wh@example.com"));

        // The user signs in: served from the cache the webhook filled, no Backend API call.
        let token = mock.token().subject("user_wh").build();
        let (status, body) = get(&base, "/api/me/user", &token).await;
        assert_eq!(status, 200);
        assert_eq!(body["user"]["first_name"], "Ada");
        assert_eq!(mock.requests(Endpoint::User), 0);

        // updated → row changed, and the next request sees it.
        let updated = mock.webhook("user.updated", user_json("user_wh", 2_000, "Grace"));
        assert_eq!(updated.send(&hook).await.unwrap().0, 200);
        assert_eq!(
            fresh
                .find("user_wh")
                .await
                .unwrap()
                .unwrap()
                .first_name
                .as_deref(),
            Some("Grace")
        );
        let (_, body) = get(&base, "/api/me/user", &token).await;
        assert_eq!(body["user"]["first_name"], "Grace");

        // Reordered: an older update delivered late changes nothing.
        let late = mock.webhook("user.updated", user_json("user_wh", 1_500, "Late"));
        assert_eq!(late.send(&hook).await.unwrap().0, 200);
        assert_eq!(
            fresh
                .find("user_wh")
                .await
                .unwrap()
                .unwrap()
                .first_name
                .as_deref(),
            Some("Grace")
        );
        let (_, body) = get(&base, "/api/me/user", &token).await;
        assert_eq!(
            body["user"]["first_name"], "Grace",
            "{backend:?}: the cache keeps the newer row"
        );

        // Replay of the first delivery: 200 duplicate, nothing changes.
        let (status, body) = created.send(&hook).await.unwrap();
        assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
        assert_eq!(
            fresh
                .find("user_wh")
                .await
                .unwrap()
                .unwrap()
                .first_name
                .as_deref(),
            Some("Grace")
        );

        // deleted → deactivated, and the still-valid token is refused on every route.
        mock.remove_user("user_wh");
        let deleted = mock.webhook(
            "user.deleted",
            json!({"object": "user", "id": "user_wh", "deleted": true}),
        );
        assert_eq!(deleted.send(&hook).await.unwrap().0, 200);
        let row = fresh.find("user_wh").await.unwrap().unwrap();
        assert!(
            !row.is_active,
            "{backend:?}: deactivated, not deleted, by default"
        );
        let (status, body) = get(&base, "/api/me/user", &token).await;
        assert_eq!(status, 401, "{backend:?}: {body}");
        assert_eq!(body["reason"], "user-inactive");
        let (status, body) = get(&base, "/api/me", &token).await;
        assert_eq!(status, 401);
        assert_eq!(body["reason"], "user-inactive");
        assert_eq!(db.count_rows(&fresh).await, 1);

        // An update from before the deletion, delivered late, does not revive the user.
        let revived = mock.webhook("user.updated", user_json("user_wh", 3_000, "Zombie"));
        assert_eq!(revived.send(&hook).await.unwrap().0, 200);
        let row = fresh.find("user_wh").await.unwrap().unwrap();
        assert!(
            !row.is_active,
            "{backend:?}: a late update revived a deleted user"
        );
        assert_eq!(row.first_name.as_deref(), Some("Grace"));
        assert_eq!(get(&base, "/api/me", &token).await.0, 401);

        let outcomes: Vec<WebhookOutcome> = rec
            .take()
            .iter()
            .filter_map(|e| match e {
                ClerkEvent::WebhookProcessed { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                WebhookOutcome::Applied,
                WebhookOutcome::Applied,
                WebhookOutcome::Applied,
                WebhookOutcome::Duplicate,
                WebhookOutcome::Applied,
                // Deletion is final: the late update is acknowledged and ignored.
                WebhookOutcome::Ignored,
            ]
        );
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn bad_signatures_are_400_and_write_nothing() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let rec = Recorder::default();
        let clerk = mock
            .clerk_builder()
            .user_store(store)
            .on_event(rec.listener())
            .build()
            .unwrap();
        let base = serve(clerk);
        let hook = format!("{base}/webhooks/clerk");
        let data = user_json("user_forged", 1, "Mallory");

        let wrong_secret = WebhookDelivery::new(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "user.created",
            data.clone(),
        );
        let (status, body) = wrong_secret.send(&hook).await.unwrap();
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"error": "invalid_webhook", "reason": "invalid-signature"})
        );

        let mut tampered = mock.webhook("user.created", data.clone());
        tampered.body = tampered.body.replace("Mallory", "Trudy");
        assert_eq!(
            tampered.send(&hook).await.unwrap().1["reason"],
            "invalid-signature"
        );

        let stale = WebhookDelivery::at(
            MOCK_WEBHOOK_SECRET,
            "user.created",
            data.clone(),
            clerk_actix::testing::unix_now() - 600,
        );
        assert_eq!(
            stale.send(&hook).await.unwrap().1["reason"],
            "timestamp-too-old"
        );

        let not_json = WebhookDelivery::sign(
            MOCK_WEBHOOK_SECRET,
            "msg_nj".into(),
            clerk_actix::testing::unix_now(),
            "hello".into(),
        );
        assert_eq!(
            not_json.send(&hook).await.unwrap(),
            (
                400,
                json!({"error": "invalid_webhook", "reason": "invalid-json"})
            )
        );

        let fresh: clerk_actix::store::DieselUserStore =
            clerk_actix::store::DieselUserStore::connect(&db.url)
                .await
                .unwrap();
        assert_eq!(db.count_rows(&fresh).await, 0);
        let rejected = rec
            .take()
            .iter()
            .filter(|e| matches!(e, ClerkEvent::WebhookRejected { .. }))
            .count();
        assert_eq!(rejected, 4);
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn store_down_is_503_so_svix_retries_and_the_retry_applies() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let probe = Probe::new(store);
        let clerk = mock
            .clerk_builder()
            .user_store(probe.clone())
            .build()
            .unwrap();
        let base = serve(clerk);
        let hook = format!("{base}/webhooks/clerk");
        let delivery = mock.webhook("user.created", user_json("user_retry", 1, "Retry"));
        probe.down.store(true, Ordering::SeqCst);
        // By hand, for the headers: a 503 tells Svix when to retry.
        let mut req = awc::Client::default()
            .post(&hook)
            .insert_header(("content-type", "application/json"));
        for header in delivery.headers() {
            req = req.insert_header(header);
        }
        let mut res = req.send_body(delivery.body.clone()).await.unwrap();
        assert_eq!(res.status().as_u16(), 503, "{backend:?}");
        assert_eq!(
            res.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("30"),
            "{backend:?}"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["reason"], "user-store-unavailable");
        assert_eq!(db.count_rows(&probe.inner).await, 0);
        // Svix retries the same message: not a duplicate, it applies now.
        probe.down.store(false, Ordering::SeqCst);
        let (status, body) = delivery.send(&hook).await.unwrap();
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("applied")),
            "{backend:?}"
        );
        assert_eq!(db.count_rows(&probe.inner).await, 1);
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn unknown_types_are_acknowledged_and_delete_policy_can_delete() {
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let rec = Recorder::default();
        let clerk = mock
            .clerk_builder()
            .user_store(store)
            .on_user_deleted(DeletedUserPolicy::Delete)
            .on_event(rec.listener())
            .build()
            .unwrap();
        let base = serve(clerk);
        let hook = format!("{base}/webhooks/clerk");
        let (status, body) = mock
            .webhook("session.created", json!({"id": "sess_1"}))
            .send(&hook)
            .await
            .unwrap();
        assert_eq!((status, body["status"].as_str()), (200, Some("ignored")));
        assert!(rec.take().iter().any(|e| matches!(e, ClerkEvent::WebhookProcessed { outcome: WebhookOutcome::Ignored, event_type, .. } if event_type == "session.created")));

        assert_eq!(
            mock.webhook("user.created", user_json("user_del", 1, "D"))
                .send(&hook)
                .await
                .unwrap()
                .0,
            200
        );
        assert_eq!(
            mock.webhook("user.deleted", json!({"id": "user_del", "deleted": true}))
                .send(&hook)
                .await
                .unwrap()
                .0,
            200
        );
        let fresh: clerk_actix::store::DieselUserStore =
            clerk_actix::store::DieselUserStore::connect(&db.url)
                .await
                .unwrap();
        assert!(fresh.find("user_del").await.unwrap().is_none());
        // A deleted event without an id is acknowledged and ignored.
        let (status, body) = mock
            .webhook("user.deleted", json!({"deleted": true}))
            .send(&hook)
            .await
            .unwrap();
        assert_eq!((status, body["status"].as_str()), (200, Some("ignored")));
        db.cleanup().await;
    }
}

#[actix_web::test]
async fn an_unconfigured_endpoint_is_a_500_naming_the_fix() {
    let mock = MockClerk::start();
    let clerk = Clerk::builder()
        .secret_key(mock.secret_key())
        .api_url(mock.api_url())
        .build()
        .unwrap();
    let base = serve(clerk);
    let (status, body) = mock
        .webhook("user.created", user_json("user_x", 1, "X"))
        .send(&format!("{base}/webhooks/clerk"))
        .await
        .unwrap();
    assert_eq!(status, 500);
    assert_eq!(body["reason"], "webhook-secret-missing");
    assert!(body["fix"]
        .as_str()
        .unwrap()
        .contains("CLERK_WEBHOOK_SIGNING_SECRET"));
}

/// The revocation lifecycle on each backend: a ban by webhook refuses the user's tokens on
/// every route; a token issued after the ban passes session-only routes but not the user
/// routes (the row is banned); an unban admits the old token again and a stale ban arriving
/// late does not undo it; `revoke_user` / `unrevoke_user` by hand do the same.
#[actix_web::test]
async fn ban_unban_and_manual_revocation_lifecycle() {
    use clerk_actix::testing::unix_now;
    for backend in BACKENDS {
        let (db, store) = TestDb::new(backend).await;
        let mock = MockClerk::start();
        let clerk = mock.clerk_builder().user_store(store).build().unwrap();
        let base = serve(clerk.clone());
        let hook = format!("{base}/webhooks/clerk");
        let id = "user_lifecycle";
        let send = |body: serde_json::Value, kind: &'static str| {
            let delivery = mock.webhook(kind, body);
            let hook = hook.clone();
            async move {
                let (status, body) = delivery.send(&hook).await.unwrap();
                assert_eq!(status, 200, "{backend:?}: {body}");
                body["status"].as_str().unwrap().to_owned()
            }
        };
        let answer = |path: &'static str, token: String| {
            let base = base.clone();
            async move {
                let (status, body) = get(&base, path, &token).await;
                (status, body["reason"].as_str().unwrap_or("").to_owned())
            }
        };
        let ok = (200, String::new());
        let inactive = (401, "user-inactive".to_owned());

        assert_eq!(
            send(user_json(id, 1_000, "Ada"), "user.created").await,
            "applied"
        );
        let before = mock.token().subject(id).build();
        assert_eq!(answer("/api/me", before.clone()).await, ok, "{backend:?}");
        assert_eq!(answer("/api/me/user", before.clone()).await.0, 200);

        // Banned: the cached token is refused everywhere, at once.
        let mut banned = user_json(id, 2_000, "Ada");
        banned["banned"] = json!(true);
        assert_eq!(send(banned.clone(), "user.updated").await, "applied");
        assert_eq!(
            answer("/api/me", before.clone()).await,
            inactive,
            "{backend:?}"
        );
        assert_eq!(answer("/api/me/user", before.clone()).await, inactive);

        // A token issued after the ban (Clerk would not issue one; a session refreshed just
        // before it landed): the revocation does not cover it, the banned row still does.
        let after = mock
            .token()
            .subject(id)
            .claim("iat", unix_now() + 2)
            .build();
        assert_eq!(answer("/api/me", after.clone()).await, ok, "{backend:?}");
        assert_eq!(answer("/api/me/user", after.clone()).await, inactive);

        // Unbanned: the old token works again; a stale ban delivered late changes nothing.
        assert_eq!(
            send(user_json(id, 3_000, "Ada"), "user.updated").await,
            "applied"
        );
        assert_eq!(answer("/api/me", before.clone()).await, ok, "{backend:?}");
        assert_eq!(answer("/api/me/user", before.clone()).await.0, 200);
        let mut stale = banned.clone();
        stale["updated_at"] = json!(2_500);
        // Acknowledged as applied (the newer row is kept as it is, see WebhookOutcome).
        assert_eq!(send(stale, "user.updated").await, "applied");
        assert_eq!(answer("/api/me", before.clone()).await, ok, "{backend:?}");
        assert_eq!(answer("/api/me/user", before.clone()).await.0, 200);

        // By hand: tokens issued up to now are refused, later ones admitted, until lifted.
        clerk.revoke_user(id);
        assert_eq!(
            answer("/api/me", before.clone()).await,
            inactive,
            "{backend:?}"
        );
        let fresh = mock
            .token()
            .subject(id)
            .claim("iat", unix_now() + 2)
            .build();
        assert_eq!(answer("/api/me", fresh).await, ok);
        clerk.unrevoke_user(id);
        assert_eq!(answer("/api/me", before.clone()).await, ok, "{backend:?}");
        db.cleanup().await;
    }
}
