-- Invitations of admins by mail (issue 15): a one-time link, stored only as a hash,
-- that lets the invitee choose a password and become an admin with the role and
-- tenants the owner chose. Each new invitation drops the expired ones.
CREATE TABLE admin_invites (
    id         TEXT    PRIMARY KEY,
    token_hash TEXT    NOT NULL UNIQUE,
    email      TEXT    NOT NULL,
    role       TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'tenant_admin', 'viewer')),
    tenant_ids TEXT    NOT NULL DEFAULT '[]',
    invited_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX admin_invites_email ON admin_invites (email);
