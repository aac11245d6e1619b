-- Applied webhook deliveries (by svix-id). The store also creates this table when missing, for
-- models of your own.
CREATE TABLE IF NOT EXISTS clerk_webhook_deliveries (
    svix_id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS clerk_webhook_deliveries_received_at
    ON clerk_webhook_deliveries (received_at);
