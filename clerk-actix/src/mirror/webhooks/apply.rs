//! Applying a verified delivery to the user store, the user cache and the revocations: the
//! protocol's rules (ordering by `updated_at`, deletion is final, idempotency on `svix-id`),
//! with no HTTP in sight.

use tracing::Instrument as _;

use super::{WebhookEvent, WebhookEventKind, WebhookOutcome};
use crate::{
    base::clock::unix_secs,
    base::events::ClerkEvent,
    base::telemetry,
    config::Clerk,
    mirror::sync::{Delivered, SyncError, SyncedUser},
};

impl Clerk {
    /// Applies a verified webhook event to the store registered for `U`: created / updated →
    /// upsert (an older update never overwrites a newer row) and refresh the user cache;
    /// deleted → a durable tombstone with Clerk's deletion time, the row deactivated (or
    /// deleted), and the user's tokens refused for good; other types → ignored. Deletion is
    /// final: any later event for a deleted id (late, retried, replayed, re-signed) is
    /// `Ignored`. Idempotent on `svix-id`: the store records the delivery in the transaction of
    /// its write (a durable table), so a delivery applied by any process sharing the database
    /// is a `Duplicate` everywhere, before or after a restart.
    pub async fn apply_webhook<U: SyncedUser>(
        &self,
        event: &WebhookEvent,
    ) -> Result<WebhookOutcome, SyncError> {
        let span = tracing::debug_span!(
            target: crate::base::events::TRACING_TARGET,
            "clerk.webhook",
            event_type = event.event_type(),
            outcome = tracing::field::Empty,
        );
        let result = self
            .apply_webhook_in_span::<U>(event)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(outcome) => span.record("outcome", outcome.as_str()),
            Err(_) => span.record("outcome", "store-unavailable"),
        };
        result
    }

    async fn apply_webhook_in_span<U: SyncedUser>(
        &self,
        event: &WebhookEvent,
    ) -> Result<WebhookOutcome, SyncError> {
        let seen = self.inner.webhooks.as_ref().map(|w| &w.seen);
        if seen.is_some_and(|s| s.contains_key(&event.svix_id)) {
            return Ok(self.webhook_done(event, WebhookOutcome::Duplicate, None));
        }
        let sync = self.user_sync::<U>();
        let (outcome, user_id) = match &event.kind {
            WebhookEventKind::UserCreated(data) | WebhookEventKind::UserUpdated(data) => {
                let sync = sync.ok_or(SyncError::NoStore)?;
                // Tokens issued up to the ban are refused: Clerk's clock (`updated_at` against
                // `iat`) or ours if later.
                let ban_at = data.updated_at.div_euclid(1000).max(unix_secs());
                match sync.sync_delivered(data, Some(&event.svix_id)).await {
                    // Applied before (a Svix retry, a replay, another replica): it changes
                    // nothing, in memory either — a ban replayed after the unban that followed
                    // it must not refuse the user again.
                    Ok(Delivered::Duplicate) => {
                        return Ok(self.remember_done(event, WebhookOutcome::Duplicate, data));
                    }
                    Ok(Delivered::Applied(user)) => {
                        // The stored row decides (it may be newer than this delivery).
                        let version = user.updated_at().unwrap_or(data.updated_at);
                        if user.is_active() {
                            self.inner.revoked.lift(&data.id, version);
                        } else {
                            self.inner.revoked.revoke(&data.id, ban_at, version);
                        }
                        (WebhookOutcome::Applied, Some(data.id.clone()))
                    }
                    // A tombstoned id: deletion is final.
                    Err(SyncError::NotFound) => (WebhookOutcome::Ignored, Some(data.id.clone())),
                    Err(e) => {
                        // The store could not say (an outage: 503, retried by Svix): a ban is
                        // applied in memory anyway, so the user is refused rather than admitted
                        // meanwhile (fail closed).
                        if !data.is_active() {
                            self.inner.revoked.revoke(&data.id, ban_at, data.updated_at);
                        }
                        return Err(e);
                    }
                }
            }
            WebhookEventKind::UserDeleted { id: Some(id) } => {
                let sync = sync.ok_or(SyncError::NoStore)?;
                let policy = self
                    .inner
                    .webhooks
                    .as_ref()
                    .map(|w| w.deleted_policy)
                    .unwrap_or_default();
                // Revokes first, then records the tombstone (see UserSync::mark_deleted).
                let outcome = match sync
                    .mark_deleted(id, event.occurred_at_ms, policy, Some(&event.svix_id))
                    .await?
                {
                    Delivered::Applied(_) => WebhookOutcome::Applied,
                    Delivered::Duplicate => WebhookOutcome::Duplicate,
                };
                (outcome, Some(id.clone()))
            }
            WebhookEventKind::UserDeleted { id: None } | WebhookEventKind::Other => {
                (WebhookOutcome::Ignored, None)
            }
        };
        if let Some(seen) = seen {
            seen.insert(event.svix_id.clone(), ());
        }
        Ok(self.webhook_done(event, outcome, user_id))
    }

    /// A duplicate found by the store: remembered here too, so this process answers the next
    /// replay from memory.
    fn remember_done(
        &self,
        event: &WebhookEvent,
        outcome: WebhookOutcome,
        data: &crate::ClerkUserData,
    ) -> WebhookOutcome {
        if let Some(w) = &self.inner.webhooks {
            w.seen.insert(event.svix_id.clone(), ());
        }
        self.webhook_done(event, outcome, Some(data.id.clone()))
    }

    fn webhook_done(
        &self,
        event: &WebhookEvent,
        outcome: WebhookOutcome,
        user_id: Option<String>,
    ) -> WebhookOutcome {
        telemetry::webhook(outcome.as_str());
        self.emit(ClerkEvent::WebhookProcessed {
            svix_id: event.svix_id.clone(),
            event_type: event.event_type.clone(),
            outcome,
            user_id,
        });
        outcome
    }
}
