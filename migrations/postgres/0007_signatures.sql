-- Signatures (issue 19). Kept in step with ../sqlite/0007_signatures.sql.
--
-- `signatures` holds what OpenShift's signature API extension stores
-- (`PUT /extensions/v2/<name>/signatures/<digest>`): simple-signing blobs by the
-- manifest they sign. They belong to the manifest: the foreign key deletes them with
-- it (a DELETE, garbage collection, the repository going), and they reference nothing,
-- so they keep nothing alive.
--
-- The other stored forms need no table: referrers are manifests with a subject
-- (indexed by `manifests_subject`, collected with their subject by 0002's
-- `gc_manifest_deleted`), and cosign's / containers/image's sigstore attachments are
-- the tag `sha256-<hex>.sig` beside the manifest. That tag follows its subject here:
-- deleting a manifest deletes the tag (whose `gc_tag_deleted` trigger queues the
-- attachment manifest for review, so garbage collection collects it once untagged).

CREATE TABLE signatures (
    repository_id   BIGINT NOT NULL,
    manifest_digest TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    content         BYTEA  NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, name),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);

CREATE FUNCTION signature_attachment_follows_subject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.digest LIKE 'sha256:%' THEN
        DELETE FROM tags
        WHERE repository_id = OLD.repository_id
          AND name = 'sha256-' || substr(OLD.digest, 8) || '.sig';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER signature_attachment_follows_subject AFTER DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION signature_attachment_follows_subject();
