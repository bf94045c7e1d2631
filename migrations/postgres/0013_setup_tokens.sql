-- Setup tokens: one per start of a node while no admin exists, each valid until the first
-- admin is made (several nodes starting at once each print one), instead of one row that
-- each start replaced. A token pending at the upgrade stays valid.
CREATE TABLE setup_tokens_new (
    token_hash TEXT   PRIMARY KEY,
    created_at BIGINT NOT NULL
);
INSERT INTO setup_tokens_new (token_hash, created_at)
    SELECT token_hash, created_at FROM setup_tokens;
DROP TABLE setup_tokens;
ALTER TABLE setup_tokens_new RENAME TO setup_tokens;
ALTER INDEX setup_tokens_new_pkey RENAME TO setup_tokens_pkey;
