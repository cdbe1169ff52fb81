-- `wharf import`: one row per repository of a distribution storage layout that has been
-- imported completely (its blob links, manifests and tags recorded), so an interrupted
-- import resumes after the last finished repository. `source` names the store and its
-- root (`filesystem:/srv/registry`, `s3:bucket/root`), so imports of two stores into one
-- database keep their own checkpoints. Nothing else reads it.
CREATE TABLE import_checkpoints (
    source       TEXT   NOT NULL,
    repository   TEXT   NOT NULL,
    completed_at BIGINT NOT NULL,
    PRIMARY KEY (source, repository)
);
