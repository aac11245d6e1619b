-- The store's own tables beside the tombstones: applied webhook deliveries (by svix-id) and the
-- change log replicas read (by seq). Created here so a role with only SELECT/INSERT/UPDATE/DELETE
-- can run the application: the store issues no DDL when they exist. (The store still creates
-- them when missing and it may, for models of your own whose migrations lack them.)
CREATE TABLE IF NOT EXISTS clerk_webhook_deliveries (
    svix_id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS clerk_webhook_deliveries_received_at
    ON clerk_webhook_deliveries (received_at);
CREATE TABLE IF NOT EXISTS clerk_user_changes (
    seq BIGSERIAL PRIMARY KEY,
    clerk_user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS clerk_user_changes_recorded_at
    ON clerk_user_changes (recorded_at);
