-- Metered use per tenant and UTC day, added to as in-memory counters are flushed.
CREATE TABLE usage (
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day         TEXT   NOT NULL,
    requests    BIGINT NOT NULL DEFAULT 0,
    doc_writes  BIGINT NOT NULL DEFAULT 0,
    invocations BIGINT NOT NULL DEFAULT 0,
    cpu_us      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);
