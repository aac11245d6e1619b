-- public_metadata becomes JSONB, so applications can query it (->, @>, GIN indexes). Existing
-- rows hold JSON text written by clerk-actix: converted in place.
ALTER TABLE clerk_users ALTER COLUMN public_metadata DROP DEFAULT;
ALTER TABLE clerk_users ALTER COLUMN public_metadata TYPE JSONB USING public_metadata::jsonb;
ALTER TABLE clerk_users ALTER COLUMN public_metadata SET DEFAULT '{}'::jsonb;
