-- Signatures (issue 19). Kept in step with ../postgres/0007_signatures.sql.
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
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    content         BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, name),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);

CREATE TRIGGER signature_attachment_follows_subject AFTER DELETE ON manifests
FOR EACH ROW WHEN OLD.digest LIKE 'sha256:%'
BEGIN
    DELETE FROM tags
    WHERE repository_id = OLD.repository_id
      AND name = 'sha256-' || substr(OLD.digest, 8) || '.sig';
END;
