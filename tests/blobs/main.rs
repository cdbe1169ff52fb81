//! The blob-backend contract suite, in the style of object_store's shared integration
//! tests: one set of async cases (`cases`), each taking a backend built the way
//! `wharf serve` builds it (`wharf::server::blob_backend` from a `storage` section),
//! instantiated by [`contract!`] once per backend as `<backend>::<case>`:
//!
//! - `filesystem`: a temporary directory;
//! - `inmemory`: a fresh store;
//! - `s3`: moto (`WHARF_TEST_S3_ENDPOINT`, `WHARF_TEST_S3_BUCKET`; `start_s3`);
//! - `azure`: Azurite (`WHARF_TEST_AZURE_ENDPOINT`, `WHARF_TEST_AZURE_CONTAINER`;
//!   `start_azurite`);
//! - `gcs`: fake-gcs-server (`WHARF_TEST_GCS_JSON_ENDPOINT`, `WHARF_TEST_GCS_BUCKET`;
//!   `start_fake_gcs`), for part of the contract only (below).
//!
//! The cloud tests use a `rootdirectory` of their own in the emulator's shared bucket
//! and empty it when they end. `scripts/test` starts the emulators and sets the
//! variables (the functions named are in `scripts/lib/services.sh`); without them these
//! tests fail, saying so. To run without an emulator, filter its tests out, e.g.
//! `cargo nextest run --test blobs -E 'not test(/^(s3|azure|gcs)::/)'`.
//!
//! **GCS.** No emulator here takes the writes of object_store's GCS client (its XML API;
//! see tests/README-backends.md), so on `gcs` the chunks are uploaded through
//! fake-gcs-server's JSON API by the harness, and only what goes through calls the
//! emulator serves is run: compose (the JSON API's `objects.compose`, the one part of the
//! backend Wharf writes itself), reads and ranged reads, delete, missing objects,
//! release and discard, readiness on a good bucket. The cases that need the backend's
//! own chunk writer or a plain PUT (`chunk_written_then_read`, `empty_blob`,
//! `aborted_chunk_leaves_the_upload_as_it_was`, `concurrent_writers_of_one_upload`) do
//! not run there, nor `check_fails_on_a_missing_location`: fake-gcs-server answers a
//! listing of a missing bucket with a 500 (GCS: 404), which the client retries as a
//! transient failure.
//!
//! Per backend: filesystem 17 cases, inmemory 16 (it has no location to be missing),
//! s3 17, azure 17, gcs 12.

// A test crate: a panic is a failed test, so unwrapping is how it fails.
#![allow(clippy::unwrap_used)]

mod cases;
mod support;

/// Declares `cases::$case` as a test of the enclosing backend module.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let kind = crate::support::Kind::from_module(super_name(module_path!()));
                let subject = crate::support::Subject::new(kind).await;
                crate::cases::$case(&subject).await;
                subject.clean_up().await;
            }
        )*
    };
}

/// The cases every backend runs, the GCS emulator included.
macro_rules! common_cases {
    () => {
        contract!(
            several_chunks_assembled,
            small_chunk_before_the_last_assembled,
            ranged_reads,
            delete_then_get_is_not_found,
            delete_of_a_missing_object_is_ok,
            get_of_a_missing_object_is_not_found,
            discard_upload_removes_everything,
            release_chunks_keeps_only_the_blob,
            concurrent_uploads_of_one_digest,
            failed_compose_leaves_no_blob,
            check_passes,
            presigned_get,
            foreign_keys_are_read_under_the_root,
        );
    };
}

/// The cases that write through the backend's own chunk writer or PUT.
macro_rules! writer_cases {
    () => {
        contract!(
            chunk_written_then_read,
            empty_blob,
            aborted_chunk_leaves_the_upload_as_it_was,
            concurrent_writers_of_one_upload,
        );
    };
}

/// The last segment of a module path (`blobs::s3` → `s3`).
fn super_name(path: &'static str) -> &'static str {
    path.rsplit("::").next().unwrap_or(path)
}

mod filesystem {
    use super::super_name;
    common_cases!();
    writer_cases!();
    contract!(check_fails_on_a_missing_location);
}

mod inmemory {
    use super::super_name;
    common_cases!();
    writer_cases!();
}

mod s3 {
    use super::super_name;
    common_cases!();
    writer_cases!();
    contract!(check_fails_on_a_missing_location);
}

mod azure {
    use super::super_name;
    common_cases!();
    writer_cases!();
    contract!(check_fails_on_a_missing_location);
}

mod gcs {
    use super::super_name;
    common_cases!();
}
