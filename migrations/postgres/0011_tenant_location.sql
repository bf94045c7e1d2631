-- Tenant placement: the storage location of the tenant's data ('default': this
-- database; otherwise the name of a configured PostgreSQL cluster), and the mark a move
-- sets while it copies (writes are refused until it is cleared).
ALTER TABLE tenants ADD COLUMN location TEXT NOT NULL DEFAULT 'default';
ALTER TABLE tenants ADD COLUMN moving BOOLEAN NOT NULL DEFAULT FALSE;
