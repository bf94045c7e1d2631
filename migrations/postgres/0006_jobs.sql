-- The outbox of after-hooks (see the SQLite tenant migration for the columns).
CREATE TABLE jobs (
    tenant_id    BIGINT  NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           TEXT    NOT NULL,
    function     TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    depth        INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    run_at       BIGINT  NOT NULL,
    lease_until  BIGINT,
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX jobs_due ON jobs (tenant_id, state, run_at);
