DROP TABLE IF EXISTS clerk_webhook_deliveries;
