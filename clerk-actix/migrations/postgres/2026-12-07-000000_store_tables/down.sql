DROP TABLE IF EXISTS clerk_user_changes;
DROP TABLE IF EXISTS clerk_webhook_deliveries;
