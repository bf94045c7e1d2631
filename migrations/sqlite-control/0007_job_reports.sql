-- Tenants whose outboxes another process (the CLI's `jobs retry`, a node that runs no
-- hooks) put jobs in that the running hook runner was not told of. The runner's rescan
-- takes these rows and looks at those tenants only, so a rescan opens no idle tenant's
-- file (issue 16). PostgreSQL needs no such table: its rescan is one query over `jobs`.
CREATE TABLE job_reports (
    tenant_id   INTEGER PRIMARY KEY,
    reported_at INTEGER NOT NULL
);
