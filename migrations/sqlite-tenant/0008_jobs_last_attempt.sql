-- A claim first marks dead the due jobs already at their last attempt (their last claim
-- ran out). Found through `jobs_due`, that look visited every due job at each claim of
-- 64: with a backlog of n jobs, n²/64 row visits to drain it. This index holds only the
-- jobs it looks for (normally none).
CREATE INDEX jobs_last_attempt ON jobs (tenant_id, run_at)
    WHERE state = 'pending' AND attempts >= max_attempts;
