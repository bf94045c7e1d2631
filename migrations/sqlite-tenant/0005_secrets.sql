-- A tenant's secrets (the environment of its functions), encrypted by the server:
-- XChaCha20-Poly1305 with a random 24-byte nonce per write; the associated data binds the
-- tenant id and the name, so a ciphertext moved to another row does not decrypt.
CREATE TABLE secrets (
    tenant_id  INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    nonce      BLOB    NOT NULL,
    ciphertext BLOB    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
