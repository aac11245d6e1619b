DROP TABLE IF EXISTS clerk_user_tombstones;
