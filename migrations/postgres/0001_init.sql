-- PostgreSQL backend: one database for all tenants. Every tenant table's key and every
-- index start with tenant_id; deleting a tenant row cascades to all its data.
CREATE TABLE tenants (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug         TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    suspended    BOOLEAN NOT NULL DEFAULT FALSE,
    cors_origins TEXT    NOT NULL DEFAULT '[]',
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE TABLE admins (
    id            TEXT   PRIMARY KEY,
    email         TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE setup_tokens (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    token_hash TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE signing_keys (
    kid        TEXT   PRIMARY KEY,
    alg        TEXT   NOT NULL,
    secret     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE audit_log (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT   NOT NULL,
    action TEXT   NOT NULL,
    tenant TEXT,
    target TEXT,
    detail TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant ON audit_log (tenant, id);

CREATE TABLE users (
    tenant_id      BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id             TEXT    NOT NULL,
    email          TEXT    NOT NULL,
    password_hash  TEXT    NOT NULL,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE sessions (
    tenant_id    BIGINT NOT NULL,
    id           TEXT   NOT NULL,
    user_id      TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    ip           TEXT,
    user_agent   TEXT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);

CREATE TABLE refresh_tokens (
    tenant_id  BIGINT NOT NULL,
    token_hash TEXT   NOT NULL,
    session_id TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (tenant_id, session_id);

CREATE TABLE user_tokens (
    tenant_id  BIGINT NOT NULL,
    token_hash TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_tokens_user ON user_tokens (tenant_id, user_id);

CREATE TABLE service_keys (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    prefix     TEXT   NOT NULL,
    key_hash   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, prefix)
);
