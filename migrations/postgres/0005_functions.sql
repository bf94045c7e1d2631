-- Function deploys (versioned bundles), the active version, and the invocation log.
CREATE TABLE deploys (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    manifest   TEXT   NOT NULL,
    files      TEXT   NOT NULL,
    rules      TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE deploy_active (
    tenant_id    BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    activated_at BIGINT NOT NULL,
    activated_by TEXT   NOT NULL
);

CREATE TABLE invocations (
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          TEXT   NOT NULL,
    function    TEXT   NOT NULL,
    trigger     TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    outcome     TEXT   NOT NULL,
    error       TEXT,
    logs        TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX invocations_function ON invocations (tenant_id, function, id);
