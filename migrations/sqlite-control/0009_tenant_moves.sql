-- The move of a tenant that is marked `moving`: where from and to, how far it got
-- ('copying': the source is authoritative; 'switched': the target is), and who runs it.
-- `owner` is drawn afresh by each mover and fences the switch and the release, so a
-- mover taken for dead (no heartbeat within `lease_ms`) and taken over can change
-- nothing after that. The row goes when the mark is cleared.
CREATE TABLE tenant_moves (
    tenant_id     INTEGER PRIMARY KEY,
    from_location TEXT    NOT NULL,
    to_location   TEXT    NOT NULL,
    phase         TEXT    NOT NULL,
    owner         TEXT    NOT NULL,
    lease_ms      INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);
