-- Setup tokens: one per start of the server while no admin exists, each valid until the
-- first admin is made, instead of one row that each start replaced (the PostgreSQL
-- schema's change, where several nodes start at once). A pending token stays valid.
CREATE TABLE setup_tokens_new (
    token_hash TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL
);
INSERT INTO setup_tokens_new (token_hash, created_at)
    SELECT token_hash, created_at FROM setup_tokens;
DROP TABLE setup_tokens;
ALTER TABLE setup_tokens_new RENAME TO setup_tokens;
