//! The contract every blob backend keeps, one async function per case, each given a
//! fresh [`Subject`] (a backend and a view of what it stored). Every byte read back is
//! compared with what was written.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use wharf::blobs::BlobError;
use wharf::types::ChunkRecord;

use crate::support::{pseudo_random, read, read_ok, Subject, PRESIGN_EXPIRY};

const MIB: usize = 1024 * 1024;

fn new_key(s: &Subject) -> String {
    s.backend
        .new_storage_key(&uuid::Uuid::new_v4().simple().to_string())
}

/// The backend's smallest composable chunk, as a length.
fn min_chunk(s: &Subject) -> usize {
    usize::try_from(s.backend.min_chunk_len()).expect("min_chunk_len fits")
}

/// Asserts `result` is the store saying there is no such object.
fn assert_not_found<T>(what: &str, result: Result<T, BlobError>) {
    match result {
        Err(BlobError::NotFound(_)) => {}
        Err(e) => panic!("{what}: expected NotFound, got {e:?}"),
        Ok(_) => panic!("{what}: expected NotFound, got the object"),
    }
}

/// Assembles `chunks` (of `parts`) into upload `key`'s blob and checks its bytes.
async fn assemble_and_check(
    s: &Subject,
    key: &str,
    chunks: &[ChunkRecord],
    whole: &[u8],
) -> String {
    let blob = s
        .backend
        .assemble(key, chunks, whole.len() as u64)
        .await
        .expect("assemble");
    let got = read_ok(s.backend.as_ref(), &blob).await;
    assert_eq!(got.len(), whole.len(), "the blob's length");
    assert!(
        got == whole,
        "the blob's bytes differ from what was written"
    );
    blob
}

/// One chunk, written in pieces, finished, assembled and read back; a writer finished
/// without a byte written yields no chunk.
pub async fn chunk_written_then_read(s: &Subject) {
    let key = new_key(s);
    let data = pseudo_random(MIB + 4321, 1);
    let chunk = s.write_chunk(&key, 0, &data).await;
    let blob = assemble_and_check(s, &key, std::slice::from_ref(&chunk), &data).await;
    if s.backend.writes_in_place() {
        assert_eq!(blob, key, "the filesystem assembles in place");
    } else {
        assert_eq!(
            blob, chunk.key,
            "a single chunk is the blob itself, never copied"
        );
    }

    let empty = s
        .backend
        .chunk_writer(&new_key(s), 0)
        .await
        .expect("chunk writer");
    let finished = empty.finish().await.expect("finish an empty chunk");
    assert!(finished.chunk.is_none(), "no bytes, no chunk");
}

/// Several chunks, each at least the backend's smallest composable chunk (so S3 composes
/// them with `UploadPartCopy`), the last one small; then their release.
pub async fn several_chunks_assembled(s: &Subject) {
    let min = min_chunk(s);
    let sizes = [min + 13, min + 1000, 777];
    let whole = pseudo_random(sizes.iter().sum(), 2);
    let parts = split(&whole, &sizes);
    let key = new_key(s);
    let chunks = s.write_chunks(&key, &parts).await;
    let blob = assemble_and_check(s, &key, &chunks, &whole).await;
    // Ranges across each boundary between chunks.
    let mut boundary = 0;
    for len in &sizes[..sizes.len() - 1] {
        boundary += len;
        let range = (boundary - 10) as u64..(boundary + 10) as u64;
        let got = read(s.backend.as_ref(), &blob, Some(range.clone()))
            .await
            .expect("a range across a chunk boundary");
        assert!(
            got == whole[boundary - 10..boundary + 10],
            "range {range:?}"
        );
    }
    s.backend
        .release_chunks(&chunks, &blob)
        .await
        .expect("release the chunks");
    assert_eq!(
        s.objects().await,
        vec![blob.clone()],
        "only the blob is left"
    );
    assert!(read_ok(s.backend.as_ref(), &blob).await == whole);
}

/// A chunk under the backend's smallest composable size before the last: S3 cannot
/// compose that layout and copies by streaming instead; the bytes are the same.
pub async fn small_chunk_before_the_last_assembled(s: &Subject) {
    let min = min_chunk(s);
    let sizes = [1000, min + 5, 300, 1];
    let whole = pseudo_random(sizes.iter().sum(), 3);
    let parts = split(&whole, &sizes);
    let key = new_key(s);
    let chunks = s.write_chunks(&key, &parts).await;
    let blob = assemble_and_check(s, &key, &chunks, &whole).await;
    s.backend
        .release_chunks(&chunks, &blob)
        .await
        .expect("release the chunks");
    assert_eq!(s.objects().await, vec![blob]);
}

/// Byte ranges at the start, in the middle, at the end (the last bytes, as a suffix
/// range asks for), one byte, and the whole object.
pub async fn ranged_reads(s: &Subject) {
    let len = 300_000usize;
    let data = pseudo_random(len, 4);
    let key = new_key(s);
    let chunks = s
        .write_chunks(&key, &[&data[..100_000], &data[100_000..]])
        .await;
    let blob = assemble_and_check(s, &key, &chunks, &data).await;
    let len = len as u64;
    for range in [
        0..1,
        0..1000,
        1000..2000,
        99_990..100_010,
        123_456..234_567,
        len - 1000..len,
        len - 1..len,
        0..len,
    ] {
        let got = read(s.backend.as_ref(), &blob, Some(range.clone()))
            .await
            .unwrap_or_else(|e| panic!("range {range:?}: {e:?}"));
        let want = &data[range.start as usize..range.end as usize];
        assert_eq!(got.len(), want.len(), "range {range:?}: length");
        assert!(got == want, "range {range:?}: bytes differ");
    }
}

/// An upload of no bytes at all becomes an empty blob.
pub async fn empty_blob(s: &Subject) {
    let key = new_key(s);
    let blob = s.backend.assemble(&key, &[], 0).await.expect("assemble");
    assert_eq!(read_ok(s.backend.as_ref(), &blob).await, Vec::<u8>::new());
}

/// A deleted blob is gone; deleting it again is not an error.
pub async fn delete_then_get_is_not_found(s: &Subject) {
    let key = new_key(s);
    let data = pseudo_random(10_000, 5);
    let chunks = s.write_chunks(&key, &[&data]).await;
    let blob = assemble_and_check(s, &key, &chunks, &data).await;
    s.backend.delete(&blob).await.expect("delete");
    assert_not_found(
        "get after delete",
        read(s.backend.as_ref(), &blob, None).await,
    );
    assert_not_found(
        "ranged get after delete",
        read(s.backend.as_ref(), &blob, Some(0..10)).await,
    );
    s.backend.delete(&blob).await.expect("delete again");
    assert_eq!(s.objects().await, Vec::<String>::new());
}

/// Deleting what was never there is not an error.
pub async fn delete_of_a_missing_object_is_ok(s: &Subject) {
    s.backend
        .delete(&new_key(s))
        .await
        .expect("deleting a missing object is Ok");
}

/// Reading what was never there is `NotFound`, whole or ranged.
pub async fn get_of_a_missing_object_is_not_found(s: &Subject) {
    let key = new_key(s);
    assert_not_found("get", read(s.backend.as_ref(), &key, None).await);
    assert_not_found(
        "ranged get",
        read(s.backend.as_ref(), &key, Some(5..10)).await,
    );
}

/// An interrupted PATCH: its chunk writer aborted, small (still buffered) or large (past
/// the store's part size, a multipart upload begun). The upload stays as it was: written
/// again, it assembles to exactly the new bytes, and on object stores the aborted chunk
/// left no object at all.
pub async fn aborted_chunk_leaves_the_upload_as_it_was(s: &Subject) {
    let key = new_key(s);
    let first = pseudo_random(200_000, 6);
    let chunks = s.write_chunks(&key, &[&first]).await;
    let before = s.objects().await;

    for (seed, len) in [(7, 100_000), (8, 12 * MIB + 5)] {
        let mut writer = s
            .backend
            .chunk_writer(&key, first.len() as u64)
            .await
            .expect("chunk writer");
        let junk = pseudo_random(len, seed);
        for piece in junk.chunks(MIB) {
            writer
                .write(Bytes::copy_from_slice(piece))
                .await
                .expect("write");
        }
        writer.abort().await;
        if !s.backend.writes_in_place() {
            assert_eq!(s.objects().await, before, "an aborted chunk left an object");
        }
    }

    let second = pseudo_random(50_000, 9);
    let mut all = chunks.clone();
    let chunk = s.write_chunk(&key, first.len() as u64, &second).await;
    wharf::types::records::push_chunk(&mut all, chunk);
    let whole = [first.as_slice(), second.as_slice()].concat();
    let blob = assemble_and_check(s, &key, &all, &whole).await;
    s.backend
        .release_chunks(&all, &blob)
        .await
        .expect("release");
    assert_eq!(s.objects().await, vec![blob]);
}

/// An upload given up (cancelled, or purged when stale) leaves nothing behind.
pub async fn discard_upload_removes_everything(s: &Subject) {
    let key = new_key(s);
    let data = pseudo_random(30_000, 10);
    let chunks = s
        .write_chunks(
            &key,
            &[&data[..10_000], &data[10_000..20_000], &data[20_000..]],
        )
        .await;
    assert!(!s.objects().await.is_empty(), "the chunks are stored");
    s.backend
        .discard_upload(&key, &chunks)
        .await
        .expect("discard the upload");
    assert_eq!(s.objects().await, Vec::<String>::new(), "nothing is left");
    for c in &chunks {
        assert_not_found(
            "a discarded chunk",
            read(s.backend.as_ref(), &c.key, None).await,
        );
    }
    // Discarding twice (a purge racing a cancel) is not an error.
    s.backend
        .discard_upload(&key, &chunks)
        .await
        .expect("discard again");
}

/// Releasing a committed upload's chunks keeps the blob: also when the blob is its one
/// chunk (object stores) or its one file (filesystem).
pub async fn release_chunks_keeps_only_the_blob(s: &Subject) {
    let key = new_key(s);
    let data = pseudo_random(40_000, 11);
    let chunks = s.write_chunks(&key, &[&data]).await;
    let blob = assemble_and_check(s, &key, &chunks, &data).await;
    s.backend
        .release_chunks(&chunks, &blob)
        .await
        .expect("release");
    assert_eq!(s.objects().await, vec![blob.clone()]);
    assert!(read_ok(s.backend.as_ref(), &blob).await == data);

    let key = new_key(s);
    let more = pseudo_random(40_000, 12);
    let chunks = s.write_chunks(&key, &[&more[..1], &more[1..]]).await;
    let second = assemble_and_check(s, &key, &chunks, &more).await;
    s.backend
        .release_chunks(&chunks, &second)
        .await
        .expect("release");
    let want: BTreeSet<String> = [blob, second].into();
    assert_eq!(s.objects().await.into_iter().collect::<BTreeSet<_>>(), want);
}

/// Sixteen requests write the same chunk of one upload at once (retries racing each
/// other through a load balancer). The filesystem lets one writer hold the upload at a
/// time and answers the others `Busy`; object stores give each writer an object of its
/// own. Either way, once the losers' chunks are dropped, exactly one object is left and
/// its bytes are intact.
pub async fn concurrent_writers_of_one_upload(s: &Subject) {
    let key = new_key(s);
    let data = Arc::new(pseudo_random(300_000, 13));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (backend, key, data) = (s.backend.clone(), key.clone(), data.clone());
            tokio::spawn(async move {
                let mut writer = backend.chunk_writer(&key, 0).await?;
                for piece in data.chunks(50_000) {
                    writer.write(Bytes::copy_from_slice(piece)).await?;
                    tokio::task::yield_now().await;
                }
                let finished = writer.finish().await?;
                // The filesystem's hold is let go once the chunk is "recorded".
                Ok::<_, BlobError>(finished.chunk.expect("bytes were written"))
            })
        })
        .collect();
    let mut written = Vec::new();
    for t in futures_util::future::join_all(tasks).await {
        match t.expect("task") {
            Ok(chunk) => written.push(chunk),
            Err(BlobError::Busy) => assert!(
                s.backend.writes_in_place(),
                "only a backend writing in place answers Busy"
            ),
            Err(e) => panic!("a writer failed: {e:?}"),
        }
    }
    assert!(!written.is_empty(), "no writer succeeded");
    if !s.backend.writes_in_place() {
        assert_eq!(written.len(), 16, "every writer has an object of its own");
        let distinct: BTreeSet<&str> = written.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(distinct.len(), 16, "two writers shared an object");
    }
    let (winner, losers) = written.split_first().expect("one");
    for c in losers.iter().filter(|c| c.key != winner.key) {
        s.backend
            .delete(&c.key)
            .await
            .expect("drop a loser's chunk");
    }
    let blob = assemble_and_check(s, &key, std::slice::from_ref(winner), &data).await;
    assert_eq!(s.objects().await, vec![blob]);
}

/// Sixteen uploads of the same content (one digest) at once, each of two chunks, each
/// with its own storage key: sixteen intact blobs; the registry keeps one and deletes
/// the others, which leaves exactly that one, intact.
pub async fn concurrent_uploads_of_one_digest(s: &Subject) {
    let data = pseudo_random(120_000, 14);
    let uploads = (0..16).map(|_| async {
        let key = new_key(s);
        let chunks = s
            .write_chunks(&key, &[&data[..60_000], &data[60_000..]])
            .await;
        let blob = s
            .backend
            .assemble(&key, &chunks, data.len() as u64)
            .await
            .expect("assemble");
        (chunks, blob)
    });
    let done = futures_util::future::join_all(uploads).await;
    let blobs: BTreeSet<&str> = done.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(blobs.len(), 16, "two uploads ended in one object");
    for (chunks, blob) in &done {
        assert!(read_ok(s.backend.as_ref(), blob).await == data, "{blob}");
        s.backend
            .release_chunks(chunks, blob)
            .await
            .expect("release");
    }
    let ((_, kept), dropped) = done.split_first().expect("one");
    for (_, blob) in dropped {
        s.backend.delete(blob).await.expect("delete a duplicate");
    }
    assert_eq!(s.objects().await, vec![kept.clone()]);
    assert!(read_ok(s.backend.as_ref(), kept).await == data);
}

/// A compose that fails part-way (a chunk object is gone) is aborted: an error, and no
/// object at the blob's key. On the filesystem, where every chunk of an upload is in
/// its one file, a chunk outside that file is refused, and the upload assembles
/// afterwards with its real chunks.
pub async fn failed_compose_leaves_no_blob(s: &Subject) {
    let key = new_key(s);
    // One real chunk of 5 MiB, then one that was never written.
    let data = pseudo_random(5 * MIB, 73);
    let real = s.write_chunk(&key, 0, &data).await;
    let missing = ChunkRecord {
        key: format!("{key}.5242880.gone"),
        offset: 5 * MIB as u64,
        len: 10,
    };
    let total = 5 * MIB as u64 + 10;
    let err = s
        .backend
        .assemble(&key, &[real.clone(), missing], total)
        .await
        .expect_err("a compose with a missing chunk must fail");
    if s.backend.writes_in_place() {
        assert!(matches!(err, BlobError::Io(_)), "{err:?}");
        assemble_and_check(s, &key, std::slice::from_ref(&real), &data).await;
    } else {
        assert!(
            matches!(
                err,
                BlobError::NotFound(_) | BlobError::Unavailable(_) | BlobError::Refused(_)
            ),
            "{err:?}"
        );
        match s.backend.get(&key, None).await {
            Err(BlobError::NotFound(_)) => {}
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("a half-composed blob is visible"),
        }
        assert_eq!(
            s.objects().await,
            vec![real.key.clone()],
            "only the real chunk"
        );
        s.backend.delete(&real.key).await.unwrap();
    }
}

/// Readiness on a store that is there.
pub async fn check_passes(s: &Subject) {
    s.backend.check().await.expect("check on a good store");
}

/// Readiness on a bucket (container, root directory) that does not exist: an error,
/// and one a retry does not cure.
pub async fn check_fails_on_a_missing_location(s: &Subject) {
    let missing = s
        .at_a_missing_location()
        .await
        .expect("this backend has a location");
    match missing.check().await {
        Ok(()) => panic!("check passed on a missing bucket"),
        Err(e) => {
            assert!(
                !e.is_transient(),
                "a missing bucket is not transient: {e:?}"
            );
            assert!(
                matches!(
                    e,
                    BlobError::Refused(_) | BlobError::NotFound(_) | BlobError::Io(_)
                ),
                "{e:?}"
            );
        }
    }
}

/// The clouds presign a GET that serves the blob (and honours `Range`) without the
/// registry; the others have no such URL and the registry streams.
pub async fn presigned_get(s: &Subject) {
    let key = new_key(s);
    let data = pseudo_random(70_000, 15);
    let chunks = s.write_chunks(&key, &[&data]).await;
    let blob = assemble_and_check(s, &key, &chunks, &data).await;
    let url = s
        .backend
        .presigned_get(&blob, PRESIGN_EXPIRY)
        .await
        .expect("presigned_get");
    match url {
        None => assert!(!s.presigns(), "{} should presign", s.backend.name()),
        Some(url) => {
            assert!(s.presigns(), "{} presigned unexpectedly", s.backend.name());
            assert!(url.query().is_some(), "an unsigned URL: {url}");
            let http = reqwest::Client::new();
            let r = http.get(url.clone()).send().await.expect("GET the URL");
            assert_eq!(r.status().as_u16(), 200, "{url}");
            assert!(r.bytes().await.expect("body").as_ref() == data.as_slice());
            let r = http
                .get(url.clone())
                .header("Range", "bytes=1000-1999")
                .send()
                .await
                .expect("ranged GET of the URL");
            assert_eq!(r.status().as_u16(), 206);
            assert!(r.bytes().await.expect("body").as_ref() == &data[1000..2000]);
        }
    }
}

/// `whole` cut into pieces of `sizes`.
fn split<'a>(whole: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut start = 0;
    for len in sizes {
        parts.push(&whole[start..start + len]);
        start += len;
    }
    parts
}

/// An object another registry wrote under the same root (distribution's
/// `docker/registry/v2/blobs/…/data`, which `wharf import` records as a blob's storage
/// key) is read, ranged, listed and deleted under that key as Wharf's own are: the
/// backend puts its root (`rootdirectory`) in front of any key.
pub async fn foreign_keys_are_read_under_the_root(s: &Subject) {
    let data = pseudo_random(70_000, 19);
    let hex = "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c";
    let key = format!("docker/registry/v2/blobs/sha256/b5/{hex}/data");
    s.put_outside(&key, &data).await;
    assert!(read_ok(s.backend.as_ref(), &key).await == data, "the bytes");
    let part = read(s.backend.as_ref(), &key, Some(1000..1500))
        .await
        .expect("a ranged read");
    assert!(part == data[1000..1500], "the range's bytes");
    let listed: Vec<_> = s
        .backend
        .list("docker/registry/v2/blobs/")
        .await
        .expect("list")
        .try_collect()
        .await
        .expect("the listing");
    assert_eq!(
        listed
            .iter()
            .map(|o| (o.key.as_str(), o.size))
            .collect::<Vec<_>>(),
        vec![(key.as_str(), data.len() as u64)],
        "listed under its key, relative to the root"
    );
    assert!(
        s.backend
            .list("blobs/")
            .await
            .expect("list")
            .try_collect::<Vec<_>>()
            .await
            .expect("the listing")
            .is_empty(),
        "not under Wharf's own blobs/ (the orphan sweep's prefix)"
    );
    s.backend.delete(&key).await.expect("delete");
    assert_not_found(
        "the deleted object",
        read(s.backend.as_ref(), &key, None).await,
    );
}
