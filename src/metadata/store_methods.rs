//! The metadata store's traits, method by method, in one list: the decorators that wrap
//! every aggregate (`guarded`: the circuit breaker; `instrumented`: spans and timings)
//! are generated from it, so a method added to a trait is added here once and both
//! decorators follow (a method missing here fails to compile in both).

/// Calls `$cb!(Trait { fn method(arg: Type, …) -> Output; … })` once per aggregate
/// trait. `$cb` is a `macro_rules!` macro of the caller; the types are resolved where
/// it expands, so the caller imports them.
macro_rules! for_each_store_trait {
    ($cb:ident) => {
        $cb!(UploadStore {
            fn create_upload(upload: &UploadRecord) -> ();
            fn get_upload(id: &str) -> Option<UploadRecord>;
            fn advance_upload(id: &str, expected_offset: u64, new_offset: u64, chunks: &[ChunkRecord],
                hash_state: &[u8], now: i64) -> bool;
            fn delete_upload(id: &str) -> Option<UploadRecord>;
            fn stale_uploads(before: i64, limit: u32) -> Vec<UploadRecord>;
        });

        $cb!(BlobIndex {
            fn commit_blob(repo: &RepoName, blob: &BlobRecord, upload_id: Option<&str>,
                events: &[EventRecord]) -> BlobCommit;
            fn repo_blob(repo: &RepoName, digest: &Digest) -> Option<BlobRecord>;
            fn any_blob(digest: &Digest) -> Option<BlobRecord>;
            fn link_blob(repo: &RepoName, digest: &Digest, events: &[EventRecord]) -> bool;
            fn unlink_blob(repo: &RepoName, digest: &Digest, events: &[EventRecord]) -> bool;
        });

        $cb!(ManifestStore {
            fn put_manifest(repo: &RepoName, manifest: &NewManifest, events: &[EventRecord])
                -> PutManifestOutcome;
            fn manifest_by_digest(repo: &RepoName, digest: &Digest) -> Option<ManifestRecord>;
            fn manifest_by_tag(repo: &RepoName, tag: &Tag) -> Option<ManifestRecord>;
            fn delete_manifest(repo: &RepoName, digest: &Digest, events: &[EventRecord]) -> bool;
            fn delete_tag(repo: &RepoName, tag: &Tag, events: &[EventRecord]) -> bool;
            fn list_tags(repo: &RepoName, last: Option<&str>, limit: u32) -> Option<Vec<String>>;
            fn referrers(repo: &RepoName, subject: &Digest, artifact_type: Option<&str>)
                -> Vec<ReferrerRecord>;
        });

        $cb!(RepositoryStore {
            fn ping() -> ();
            fn list_repositories(last: Option<&str>, limit: u32) -> Vec<String>;
        });

        $cb!(EventStore {
            fn append_events(events: &[EventRecord]) -> ();
            fn register_endpoint(endpoint: &str, now: i64) -> ();
            fn claim_cursors(endpoint: &str, token: &str, now: i64, lease_until: i64, limit: u32)
                -> Vec<ClaimedCursor>;
            fn events_after(repository: &str, after: i64, limit: u32) -> Vec<StoredEvent>;
            fn events_after_each(cursors: &[(String, i64)], limit: u32) -> Vec<Vec<StoredEvent>>;
            fn complete_cursor(endpoint: &str, repository: &str, token: &str, delivered_id: i64) -> bool;
            fn complete_cursors(endpoint: &str, token: &str, done: &[(String, i64)]) -> u64;
            fn complete_and_claim(endpoint: &str, done_token: &str, done: &[(String, i64)],
                token: &str, now: i64, lease_until: i64, limit: u32) -> (u64, Vec<ClaimedCursor>);
            fn fail_cursor(endpoint: &str, repository: &str, token: &str, attempts: u32, due_at: i64,
                error: &str) -> bool;
            fn dead_letter(endpoint: &str, repository: &str, token: &str, events: &[StoredEvent],
                attempts: u32, error: &str, now: i64) -> bool;
            fn dead_letters(endpoint: Option<&str>, limit: u32) -> Vec<DeadLetter>;
            fn replay_dead_letters(filter: &ReplayFilter) -> u64;
            fn pending_events(endpoint: Option<&str>, limit: u32) -> Vec<PendingEvent>;
            fn endpoint_backlog(endpoint: &str) -> EndpointBacklog;
            fn prune_events(stale_before: i64, limit: u32) -> u64;
        });

        $cb!(GcStore {
            fn review_manifests(delay_ms: i64, limit: u32) -> ReviewBatch;
            fn review_blobs(delay_ms: i64, limit: u32) -> ReviewBatch;
            fn preview_reviews(delay_ms: i64, limit: u32) -> ReviewPreview;
            fn tombstones(older_than_ms: i64, limit: u32) -> Vec<Tombstone>;
            fn clear_tombstones(storage_keys: &[String]) -> ();
            fn is_tombstoned(digest: &Digest) -> bool;
            fn touch_blobs(digests: &[Digest]) -> ();
            fn record_pulls(pulls: &[PullRecord]) -> ();
            fn referenced_keys() -> HashSet<String>;
            fn queue_depth(delay_ms: i64) -> QueueDepth;
            fn repository_snapshot(repo: &RepoName) -> Option<RepoSnapshot>;
            fn delete_tag_if(repo: &RepoName, tag: &Tag, digest: &Digest) -> bool;
            fn delete_manifest_if_unreachable(repo: &RepoName, digest: &Digest) -> bool;
        });

        $cb!(MirrorStore {
            fn fill(digest: &Digest) -> Option<FillLease>;
            fn claim_fill(lease: &FillLease) -> bool;
            fn take_over_fill(digest: &Digest, old_token: &str, owner: &str, token: &str,
                expires_at: i64, now: i64) -> bool;
            fn renew_fill(digest: &Digest, token: &str, committed: u64, size: Option<u64>,
                expires_at: i64) -> bool;
            fn release_fill(digest: &Digest, token: &str) -> ();
            fn cached_tag(repo: &RepoName, tag: &Tag) -> Option<CachedTag>;
            fn put_cached_tag(repo: &RepoName, tag: &Tag, digest: &Digest, fetched_at: i64) -> ();
            fn record_content(content: &CachedContent) -> ();
            fn touch_content(pulls: &[(RepoName, Digest, i64)]) -> ();
            fn expired_content(upstream: &str, before: i64, limit: u32) -> Vec<CachedContent>;
            fn least_recently_pulled(limit: u32) -> Vec<CachedContent>;
            fn cached_blob_bytes() -> u64;
            fn forget_content(repo: &RepoName, digest: &Digest) -> ();
            fn is_referenced(repo: &RepoName, digest: &Digest) -> bool;
            fn claim_sweep(name: &str, owner: &str, expires_at: i64, now: i64) -> bool;
        });

        $cb!(QuotaStore {
            fn quota_limits() -> Vec<QuotaLimit>;
            fn set_quota_limit(limit: &QuotaLimit) -> ();
            fn delete_quota_limit(scope: &str) -> bool;
            fn seed_quota_limits(limits: &[QuotaLimit]) -> ();
            fn scope_usage(scope: &str) -> ScopeUsage;
            fn reserve(reservation: &Reservation, limits: &[(String, u64)]) -> QuotaOutcome;
            fn release(id: &str) -> ();
            fn check_room(reservation: &Reservation, limits: &[(String, u64)]) -> RoomCheck;
            fn commit_blob_charged(repo: &RepoName, blob: &BlobRecord, upload_id: Option<&str>,
                events: &[EventRecord], charge: &QuotaCharge) -> ChargedCommit;
            fn check_blobs(repo: &RepoName, digests: &[Digest], limits: &[(String, u64)]) -> QuotaOutcome;
            fn compact() -> ();
            fn recompute(fix: bool) -> Vec<Drift>;
        });

        $cb!(SignatureStore {
            fn put_signature(repo: &RepoName, digest: &Digest, signature: &StoredSignature)
                -> PutSignatureOutcome;
            fn signatures(repo: &RepoName, digest: &Digest) -> Vec<StoredSignature>;
            fn parents(repo: &RepoName, digest: &Digest) -> Vec<Digest>;
        });

        $cb!(ImportStore {
            fn imported_repositories(source: &str) -> Vec<String>;
            fn mark_imported(source: &str, repository: &str, now: i64) -> ();
            fn forget_imports(source: &str) -> u64;
        });
    };
}
