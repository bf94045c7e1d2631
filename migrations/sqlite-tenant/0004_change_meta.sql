-- Enough metadata on each change to show the document as GET shows it, before and after.
ALTER TABLE changes ADD COLUMN created_at INTEGER;        -- the document's creation time
ALTER TABLE changes ADD COLUMN before_updated_at INTEGER; -- update time of the version before
