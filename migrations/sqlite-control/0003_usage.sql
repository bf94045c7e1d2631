-- Metered use per tenant and UTC day, added to as in-memory counters are flushed.
CREATE TABLE usage (
    tenant_id   INTEGER NOT NULL,
    day         TEXT    NOT NULL, -- YYYY-MM-DD (UTC)
    requests    INTEGER NOT NULL DEFAULT 0,
    doc_writes  INTEGER NOT NULL DEFAULT 0,
    invocations INTEGER NOT NULL DEFAULT 0,
    cpu_us      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);
