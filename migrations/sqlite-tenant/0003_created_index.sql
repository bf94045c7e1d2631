-- Lists break ties by rowid on SQLite (every index already holds it), so the default
-- order (created_at) is served by an index on created_at alone, without a sort.
DROP INDEX documents_created;
CREATE INDEX documents_created ON documents (tenant_id, collection, created_at);
