-- One tenant's own database file. Every table still carries tenant_id so that the SQL
-- text is shared with PostgreSQL and every query filters by tenant.
CREATE TABLE users (
    tenant_id      INTEGER NOT NULL,
    id             TEXT    NOT NULL,
    email          TEXT    NOT NULL,
    password_hash  TEXT    NOT NULL,
    email_verified INTEGER NOT NULL DEFAULT 0,
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

-- A session is one refresh-token family.
CREATE TABLE sessions (
    tenant_id    INTEGER NOT NULL,
    id           TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    ip           TEXT,
    user_agent   TEXT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);

CREATE TABLE refresh_tokens (
    tenant_id  INTEGER NOT NULL,
    token_hash TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (tenant_id, session_id);

-- Single-use email verification and password reset tokens, stored hashed.
CREATE TABLE user_tokens (
    tenant_id  INTEGER NOT NULL,
    token_hash TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_tokens_user ON user_tokens (tenant_id, user_id);

CREATE TABLE service_keys (
    tenant_id    INTEGER NOT NULL,
    id           TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    key_hash     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, prefix)
);
