ALTER TABLE clerk_users ALTER COLUMN public_metadata DROP DEFAULT;
ALTER TABLE clerk_users ALTER COLUMN public_metadata TYPE TEXT USING public_metadata::text;
ALTER TABLE clerk_users ALTER COLUMN public_metadata SET DEFAULT '{}';
