-- Deleted Clerk user ids: deletion is final (Clerk never reuses an id). The store also creates
-- this table itself when missing, for models of your own.
CREATE TABLE IF NOT EXISTS clerk_user_tombstones (
    clerk_user_id TEXT PRIMARY KEY,
    deleted_at BIGINT NOT NULL
);
