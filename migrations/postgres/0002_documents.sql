CREATE TABLE server_secrets (
    name       TEXT   PRIMARY KEY,
    value      TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE documents (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    collection TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    data       JSONB  NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, collection, id)
);
CREATE INDEX documents_created ON documents (tenant_id, collection, created_at, id);

CREATE TABLE changes (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    collection TEXT   NOT NULL,
    doc_id     TEXT   NOT NULL,
    op         TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    data       JSONB,
    before     JSONB,
    at         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX changes_at ON changes (tenant_id, at);

-- The row lock taken by bumping seq serialises one tenant's writers until commit, so a
-- reader never sees seq N+1 committed while N is still in flight (see TECH-NOTES).
CREATE TABLE tenant_seq (
    tenant_id      BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    seq            BIGINT NOT NULL,
    pruned_through BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE rulesets (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    source     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
