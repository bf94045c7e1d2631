-- Function deploys (versioned bundles), the active version, and the invocation log.
CREATE TABLE deploys (
    tenant_id  INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    manifest   TEXT    NOT NULL, -- the bundle's plinth.toml, parsed, as JSON
    files      TEXT    NOT NULL, -- {"functions/x.js": source, ...} as JSON
    rules      TEXT,             -- the rule set shipped with the bundle, if any
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE deploy_active (
    tenant_id    INTEGER PRIMARY KEY,
    version      INTEGER NOT NULL,
    activated_at INTEGER NOT NULL,
    activated_by TEXT    NOT NULL
);

-- One row per function invocation; id is a UUIDv7, so id order is start order.
CREATE TABLE invocations (
    tenant_id   INTEGER NOT NULL,
    id          TEXT    NOT NULL,
    function    TEXT    NOT NULL,
    trigger     TEXT    NOT NULL, -- http | before | after
    version     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    outcome     TEXT    NOT NULL, -- ok | error | timeout | out_of_memory | rejected
    error       TEXT,
    logs        TEXT    NOT NULL, -- JSON array of {level, message}
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX invocations_function ON invocations (tenant_id, function, id);
