-- The cache's content rows follow the deletes of what they describe: a blob unlinked
-- from a repository (garbage collection's review, a blob DELETE, the cache's own
-- eviction) or a manifest deleted (collected after a mirrored tag moved, a DELETE)
-- takes its `proxy_content` row with it, so the size the cache counts and the content
-- it expires are what the store holds. Kept in step with
-- ../postgres/0005_proxy_content_follows_deletes.sql.

CREATE TRIGGER proxy_blob_unlinked AFTER DELETE ON repository_blobs
FOR EACH ROW
BEGIN
    DELETE FROM proxy_content
    WHERE digest = OLD.digest AND is_manifest = 0
      AND repository = (SELECT name FROM repositories WHERE id = OLD.repository_id);
END;

CREATE TRIGGER proxy_manifest_deleted AFTER DELETE ON manifests
FOR EACH ROW
BEGIN
    DELETE FROM proxy_content
    WHERE digest = OLD.digest AND is_manifest = 1
      AND repository = (SELECT name FROM repositories WHERE id = OLD.repository_id);
END;
