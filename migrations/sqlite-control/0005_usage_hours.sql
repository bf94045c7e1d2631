-- Usage per hour, errors and realtime connections (issue 15). The day table stays as it
-- is and is still written: its rows go back further than any hour row could (days are
-- kept, hours only for 14 days, see src/usage.rs), so old reports read as before.
ALTER TABLE usage ADD COLUMN errors INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN realtime_connections INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN realtime_peak INTEGER NOT NULL DEFAULT 0;

CREATE TABLE usage_hours (
    tenant_id            INTEGER NOT NULL,
    hour                 TEXT    NOT NULL, -- YYYY-MM-DDTHH:00:00Z (UTC), the hour's start
    requests             INTEGER NOT NULL DEFAULT 0,
    errors               INTEGER NOT NULL DEFAULT 0,
    doc_writes           INTEGER NOT NULL DEFAULT 0,
    invocations          INTEGER NOT NULL DEFAULT 0,
    cpu_us               INTEGER NOT NULL DEFAULT 0,
    realtime_connections INTEGER NOT NULL DEFAULT 0,
    realtime_peak        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, hour)
);
-- The retention prune deletes by hour across tenants.
CREATE INDEX usage_hours_hour ON usage_hours (hour);
