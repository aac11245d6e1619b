-- The included user model: one row per Clerk user, kept in sync from the Backend API and
-- webhooks. Times are Clerk's Unix milliseconds.
CREATE TABLE clerk_users (
    id BIGSERIAL PRIMARY KEY,
    clerk_user_id TEXT NOT NULL UNIQUE,
    email TEXT,
    username TEXT,
    first_name TEXT,
    last_name TEXT,
    image_url TEXT,
    phone TEXT,
    external_id TEXT,
    public_metadata TEXT NOT NULL DEFAULT '{}',
    last_active_at BIGINT,
    last_sign_in_at BIGINT,
    banned BOOLEAN NOT NULL DEFAULT FALSE,
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    synced_at BIGINT NOT NULL
);
CREATE INDEX clerk_users_email_idx ON clerk_users (email);
