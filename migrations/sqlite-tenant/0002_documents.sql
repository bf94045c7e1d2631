-- Documents, the change log, and the per-tenant change sequence.
CREATE TABLE documents (
    tenant_id  INTEGER NOT NULL,
    collection TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    data       TEXT    NOT NULL, -- a JSON object
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, collection, id)
);
CREATE INDEX documents_created ON documents (tenant_id, collection, created_at, id);

-- Every committed write, in commit order. seq comes from tenant_seq, bumped inside the
-- write's transaction, so seq order is commit order.
CREATE TABLE changes (
    tenant_id  INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    collection TEXT    NOT NULL,
    doc_id     TEXT    NOT NULL,
    op         TEXT    NOT NULL, -- create | update | delete
    version    INTEGER NOT NULL, -- version after the write (for delete: the deleted one)
    data       TEXT,             -- after (NULL for delete)
    before     TEXT,             -- before (NULL for create)
    at         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX changes_at ON changes (tenant_id, at);

CREATE TABLE tenant_seq (
    tenant_id      INTEGER PRIMARY KEY,
    seq            INTEGER NOT NULL,
    -- Changes up to this seq may have been deleted by retention.
    pruned_through INTEGER NOT NULL DEFAULT 0
);

-- Rule sets, one row per installed version; the highest version is active.
CREATE TABLE rulesets (
    tenant_id  INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    source     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
