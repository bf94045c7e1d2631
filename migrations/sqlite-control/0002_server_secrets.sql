-- Server-wide secrets generated at first start (e.g. the key that signs list cursors).
CREATE TABLE server_secrets (
    name       TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
