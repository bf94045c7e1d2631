-- Control database of the SQLite backend: everything that is not one tenant's data.
CREATE TABLE tenants (
    id           INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: ids are never reused
    slug         TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    suspended    INTEGER NOT NULL DEFAULT 0,
    cors_origins TEXT    NOT NULL DEFAULT '[]',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE admins (
    id            TEXT    PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- At most one pending setup token, stored hashed.
CREATE TABLE setup_tokens (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    token_hash TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid        TEXT    PRIMARY KEY,
    alg        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    tenant TEXT,
    target TEXT,
    detail TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant ON audit_log (tenant, id);
