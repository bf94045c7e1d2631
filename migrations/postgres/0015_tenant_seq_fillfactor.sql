-- Every commit of a tenant updates its tenant_seq row. Rows of many tenants share a
-- page; with the page kept 90% free the new versions stay on it (HOT updates, no new
-- index entries), so looking the row up does not walk a growing list of dead entries.
-- Applies to pages written from now on; a table this small is rewritten by VACUUM FULL.
ALTER TABLE tenant_seq SET (fillfactor = 10);
