DROP TABLE clerk_users;
