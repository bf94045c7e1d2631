-- The outbox: one job per after-hook a committed write triggered, inserted in the write's
-- transaction. Done jobs are deleted; jobs out of attempts stay as 'dead' until retried.
CREATE TABLE jobs (
    tenant_id    INTEGER NOT NULL,
    id           TEXT    NOT NULL, -- UUIDv7; also the event id (idempotency key)
    function     TEXT    NOT NULL,
    event        TEXT    NOT NULL, -- the event as JSON
    depth        INTEGER NOT NULL, -- hook depth of the writes the job's function makes
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    state        TEXT    NOT NULL, -- pending | dead
    run_at       INTEGER NOT NULL, -- not before (ms)
    lease_until  INTEGER,          -- claimed by a runner until then
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX jobs_due ON jobs (tenant_id, state, run_at);
