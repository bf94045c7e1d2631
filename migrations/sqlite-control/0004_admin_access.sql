-- Admin roles, tenant assignments, admin API keys and console sessions (issue 15).
-- Every admin that exists before this change is an owner.
ALTER TABLE admins ADD COLUMN role TEXT NOT NULL DEFAULT 'owner'
    CHECK (role IN ('owner', 'admin', 'tenant_admin', 'viewer'));
-- JSON array of tenant ids (ids are never reused; slugs of deleted tenants could be).
ALTER TABLE admins ADD COLUMN tenant_ids TEXT NOT NULL DEFAULT '[]';
-- Bumped by a password change: admin tokens carry it, older ones stop working.
ALTER TABLE admins ADD COLUMN password_version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE admin_api_keys (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'tenant_admin', 'viewer')),
    tenant_ids   TEXT    NOT NULL DEFAULT '[]',
    prefix       TEXT    NOT NULL UNIQUE,
    key_hash     TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- A console session: the cookie's value and the CSRF token are stored only as hashes.
CREATE TABLE admin_sessions (
    id           TEXT    PRIMARY KEY,
    admin_id     TEXT    NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    csrf_hash    TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_id);
