-- A tenant's secrets (the environment of its functions), encrypted by the server:
-- XChaCha20-Poly1305 with a random 24-byte nonce per write; the associated data binds the
-- tenant id and the name, so a ciphertext moved to another row does not decrypt.
CREATE TABLE secrets (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    nonce      BYTEA  NOT NULL,
    ciphertext BYTEA  NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
