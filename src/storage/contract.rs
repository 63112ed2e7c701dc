//! The storage contract: one suite every store runs (`run`), natively in `cargo test` and, for
//! R2, inside the Worker. Each step names the promise it checks.

use std::io;

use bytes::Bytes;
use futures_util::StreamExt;

use super::{ListOptions, PutMode, RangeSpec, Storage, StorageError};
use crate::body::Body;
use crate::digest::{BodyCheck, Checked, Digest};

type Outcome = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Run every check against `store`. `tag` keeps keys of concurrent runs apart; the store should
/// otherwise be empty under `contract/` and `uploads/contract-`.
pub async fn run<S: Storage>(store: &S, tag: &str) -> Outcome {
    metadata(store, tag).await?;
    listing(store, tag).await?;
    blobs(store, tag).await?;
    uploads(store, tag).await?;
    Ok(())
}

fn checked(data: &'static [u8], digest: &Digest) -> Body {
    let stream = Body::Full(Bytes::from_static(data)).into_stream();
    Body::stream(Checked::digest(stream, digest.clone(), None))
}

async fn read(body: Body) -> Result<Vec<u8>, String> {
    let mut s = body.into_stream();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.map_err(|e| format!("reading body: {e}"))?);
    }
    Ok(out)
}

/// A stream that gives some bytes and then fails, like a client that goes away.
fn broken(data: &'static [u8]) -> Body {
    let items: Vec<io::Result<Bytes>> = vec![
        Ok(Bytes::from_static(data)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    Body::stream(futures_util::stream::iter(items))
}

pub async fn metadata<S: Storage>(store: &S, tag: &str) -> Outcome {
    let key = format!("contract/{tag}/meta/doc");
    ensure!(
        matches!(store.meta_get(&key).await, Err(StorageError::NotFound)),
        "get of a missing key is NotFound"
    );
    let v1 = store
        .meta_put(&key, Bytes::from_static(b"one"), PutMode::Create)
        .await
        .map_err(|e| format!("create: {e}"))?;
    let got = store
        .meta_get(&key)
        .await
        .map_err(|e| format!("get: {e}"))?;
    ensure!(got.value == "one", "get returns what was written");
    ensure!(got.version == v1, "get returns the version put returned");
    ensure!(
        matches!(
            store
                .meta_put(&key, Bytes::from_static(b"x"), PutMode::Create)
                .await,
            Err(StorageError::AlreadyExists)
        ),
        "Create over an existing key is AlreadyExists"
    );
    let v2 = store
        .meta_put(
            &key,
            Bytes::from_static(b"two"),
            PutMode::Update(v1.clone()),
        )
        .await
        .map_err(|e| format!("update at the current version: {e}"))?;
    ensure!(v2 != v1, "an update changes the version");
    ensure!(
        matches!(
            store
                .meta_put(&key, Bytes::from_static(b"x"), PutMode::Update(v1))
                .await,
            Err(StorageError::Precondition)
        ),
        "Update at a stale version is Precondition"
    );
    ensure!(
        store.meta_get(&key).await.map(|s| s.value).ok() == Some(Bytes::from_static(b"two")),
        "a failed update changes nothing"
    );
    store
        .meta_put(&key, Bytes::from_static(b"three"), PutMode::Overwrite)
        .await
        .map_err(|e| format!("overwrite: {e}"))?;
    ensure!(
        store.meta_get(&key).await.map(|s| s.value).ok() == Some(Bytes::from_static(b"three")),
        "overwrite replaces"
    );
    // A conditional delete never undoes a newer write.
    let v3 = store
        .meta_get(&key)
        .await
        .map_err(|e| format!("get: {e}"))?
        .version;
    ensure!(
        matches!(
            store.meta_delete(&key, Some(&v2)).await,
            Err(StorageError::Precondition)
        ),
        "a delete at a stale version is Precondition"
    );
    ensure!(
        store.meta_get(&key).await.is_ok(),
        "a refused conditional delete leaves the document"
    );
    store
        .meta_delete(&key, Some(&v3))
        .await
        .map_err(|e| format!("delete at the current version: {e}"))?;
    ensure!(
        matches!(store.meta_get(&key).await, Err(StorageError::NotFound)),
        "a deleted key is gone"
    );
    ensure!(
        matches!(
            store.meta_delete(&key, None).await,
            Err(StorageError::NotFound)
        ),
        "deleting a missing key is NotFound"
    );
    store
        .meta_put(&key, Bytes::from_static(b"four"), PutMode::Create)
        .await
        .map_err(|e| format!("create after delete: {e}"))?;
    store
        .meta_delete(&key, None)
        .await
        .map_err(|e| format!("delete: {e}"))?;
    let missing = format!("contract/{tag}/meta/never");
    ensure!(
        matches!(
            store
                .meta_put(
                    &missing,
                    Bytes::new(),
                    PutMode::Update(super::Version("1".into()))
                )
                .await,
            Err(StorageError::Precondition)
        ),
        "Update of a missing key is Precondition"
    );
    store
        .meta_put(&missing, Bytes::new(), PutMode::Create)
        .await
        .map_err(|e| format!("create an empty value: {e}"))?;
    ensure!(
        store
            .meta_get(&missing)
            .await
            .map(|s| s.value.is_empty())
            .unwrap_or(false),
        "an empty value reads back empty"
    );
    store
        .meta_delete(&missing, None)
        .await
        .map_err(|e| format!("delete: {e}"))?;
    Ok(())
}

pub async fn listing<S: Storage>(store: &S, tag: &str) -> Outcome {
    let prefix = format!("contract/{tag}/list/");
    // Nested keys beside leaf keys, and names whose order depends on bytes below `/`.
    let keys = ["a", "a-b", "a.b", "a/b", "a/b/c", "b", "B", "sha256:00"];
    for k in keys {
        store
            .meta_put(
                &format!("{prefix}{k}"),
                Bytes::from(k.to_owned()),
                PutMode::Overwrite,
            )
            .await
            .map_err(|e| format!("put {k}: {e}"))?;
    }
    store
        .meta_put(
            &format!("contract/{tag}/listx"),
            Bytes::new(),
            PutMode::Overwrite,
        )
        .await
        .map_err(|e| format!("put sibling: {e}"))?;
    let mut want: Vec<&str> = keys.to_vec();
    want.sort();
    let all = store
        .meta_list(&prefix, ListOptions::default())
        .await
        .map_err(|e| format!("list: {e}"))?;
    ensure!(
        all == want,
        "list gives every key under the prefix in byte order: got {all:?}, want {want:?}"
    );
    let page = store
        .meta_list(
            &prefix,
            ListOptions {
                after: Some("a-b"),
                limit: Some(3),
            },
        )
        .await
        .map_err(|e| format!("list after: {e}"))?;
    let at = want.iter().position(|k| *k == "a-b").unwrap_or(0) + 1;
    ensure!(
        page == want[at..at + 3],
        "after is exclusive and limit caps: got {page:?}"
    );
    let none = store
        .meta_list(
            &prefix,
            ListOptions {
                after: None,
                limit: Some(0),
            },
        )
        .await
        .map_err(|e| format!("list limit 0: {e}"))?;
    ensure!(none.is_empty(), "limit 0 lists nothing");
    let empty = store
        .meta_list(&format!("contract/{tag}/nothing/"), ListOptions::default())
        .await
        .map_err(|e| format!("list of an empty prefix: {e}"))?;
    ensure!(empty.is_empty(), "an empty prefix lists nothing");
    for k in keys {
        store
            .meta_delete(&format!("{prefix}{k}"), None)
            .await
            .map_err(|e| format!("delete {k}: {e}"))?;
    }
    store
        .meta_delete(&format!("contract/{tag}/listx"), None)
        .await
        .map_err(|e| format!("delete sibling: {e}"))?;
    let after = store
        .meta_list(&prefix, ListOptions::default())
        .await
        .map_err(|e| format!("list: {e}"))?;
    ensure!(after.is_empty(), "deleted keys are not listed: {after:?}");
    Ok(())
}

pub async fn blobs<S: Storage>(store: &S, tag: &str) -> Outcome {
    let data: &'static [u8] = b"the quick brown fox jumps over the lazy dog";
    let mut salted = data.to_vec();
    salted.extend_from_slice(tag.as_bytes());
    let salted: &'static [u8] = Box::leak(salted.into_boxed_slice());
    let d = Digest::sha256(salted);
    ensure!(
        matches!(
            store.blob_head(&d).await.map(|i| i.size),
            Err(StorageError::NotFound)
        ),
        "a missing blob is NotFound"
    );

    // A body whose bytes do not match the digest must leave nothing behind.
    let wrong = Body::stream(Checked::digest(
        Body::from(&b"not it"[..]).into_stream(),
        d.clone(),
        None,
    ));
    match store.blob_put(&d, wrong).await {
        Err(StorageError::Body(e)) => {
            ensure!(
                matches!(BodyCheck::find(&e), Some(BodyCheck::DigestMismatch { .. })),
                "the stream's own error is passed through: {e}"
            )
        }
        other => {
            return Err(format!(
                "a mismatching body is a Body error, got {:?}",
                other.map(|_| ())
            ));
        }
    }
    ensure!(
        matches!(
            store.blob_head(&d).await.map(|i| i.size),
            Err(StorageError::NotFound)
        ),
        "a mismatching body leaves no blob"
    );
    // A client that goes away mid-body must leave nothing behind.
    ensure!(
        matches!(
            store.blob_put(&d, broken(&salted[..10])).await,
            Err(StorageError::Body(_))
        ),
        "a failing body is a Body error"
    );
    ensure!(
        matches!(
            store.blob_head(&d).await.map(|i| i.size),
            Err(StorageError::NotFound)
        ),
        "a failed body leaves no blob"
    );

    let size = store
        .blob_put(&d, checked(salted, &d))
        .await
        .map_err(|e| format!("put: {e}"))?;
    ensure!(size == salted.len() as u64, "put returns the size");
    ensure!(
        store.blob_head(&d).await.map(|i| i.size).ok() == Some(salted.len() as u64),
        "size after put"
    );
    let again = store
        .blob_put(&d, checked(salted, &d))
        .await
        .map_err(|e| format!("put again: {e}"))?;
    ensure!(again == size, "putting an existing blob again succeeds");
    // Wrong bytes under the digest of a blob that exists are still wrong: a store never takes
    // "already there" as proof that the writer has the bytes.
    let wrong = Body::stream(Checked::digest(
        Body::from(&b"not it either"[..]).into_stream(),
        d.clone(),
        None,
    ));
    ensure!(
        matches!(store.blob_put(&d, wrong).await, Err(StorageError::Body(_))),
        "wrong bytes for an existing digest are a Body error"
    );
    ensure!(
        store.blob_head(&d).await.map(|i| i.size).ok() == Some(size),
        "wrong bytes for an existing digest leave the blob as it was"
    );
    let info = store
        .blob_head(&d)
        .await
        .map_err(|e| format!("head: {e}"))?;
    // The listing after the text just before this digest starts with it.
    let text = d.to_string();
    let listed = store
        .blob_list(ListOptions {
            after: Some(&text[..text.len() - 1]),
            limit: Some(1),
        })
        .await
        .map_err(|e| format!("blob list: {e}"))?;
    ensure!(
        listed.len() == 1 && listed[0].digest == d && listed[0].info == info,
        "blob_list finds the blob with its size and age: {listed:?}"
    );
    let past = store
        .blob_list(ListOptions {
            after: Some(&text),
            limit: Some(1),
        })
        .await
        .map_err(|e| format!("blob list: {e}"))?;
    ensure!(
        past.iter().all(|e| e.digest.to_string() > text),
        "blob_list's after is exclusive"
    );
    let whole = store
        .blob_get(&d, None)
        .await
        .map_err(|e| format!("get: {e}"))?;
    ensure!(whole.size == size, "get reports the whole size");
    ensure!(read(whole.body).await? == salted, "get returns the bytes");
    let part = store
        .blob_get(
            &d,
            Some(RangeSpec::From {
                first: 4,
                last: Some(8),
            }),
        )
        .await
        .map_err(|e| format!("get range: {e}"))?;
    ensure!(part.size == size, "a ranged get reports the whole size");
    ensure!(
        part.range.start == 4 && part.range.end == 9,
        "a ranged get reports its range"
    );
    ensure!(
        read(part.body).await? == salted[4..9],
        "a ranged get returns just the range"
    );
    let tail = store
        .blob_get(&d, Some(RangeSpec::Suffix(1)))
        .await
        .map_err(|e| format!("get last byte: {e}"))?;
    ensure!(
        read(tail.body).await? == salted[salted.len() - 1..],
        "the last byte"
    );
    ensure!(
        matches!(
            store
                .blob_get(
                    &d,
                    Some(RangeSpec::From {
                        first: size,
                        last: None
                    })
                )
                .await,
            Err(StorageError::RangeNotSatisfiable { size: s }) if s == size
        ),
        "a range past the end is RangeNotSatisfiable with the size"
    );

    let empty = Digest::sha256(b"");
    store
        .blob_put(&empty, checked(b"", &empty))
        .await
        .map_err(|e| format!("put empty: {e}"))?;
    ensure!(
        store.blob_head(&empty).await.map(|i| i.size).ok() == Some(0),
        "an empty blob exists with size 0"
    );
    ensure!(
        read(
            store
                .blob_get(&empty, None)
                .await
                .map_err(|e| format!("get empty: {e}"))?
                .body
        )
        .await?
        .is_empty(),
        "an empty blob reads empty"
    );

    store
        .blob_delete(&d)
        .await
        .map_err(|e| format!("delete: {e}"))?;
    ensure!(
        matches!(
            store.blob_head(&d).await.map(|i| i.size),
            Err(StorageError::NotFound)
        ),
        "a deleted blob is gone"
    );
    ensure!(
        matches!(store.blob_get(&d, None).await, Err(StorageError::NotFound)),
        "get of a deleted blob is NotFound"
    );
    Ok(())
}

pub async fn uploads<S: Storage>(store: &S, tag: &str) -> Outcome {
    let id = format!("contract-{tag}");
    let mut state = store
        .upload_start(&id)
        .await
        .map_err(|e| format!("start: {e}"))?;
    let mut expected = Vec::new();
    let mut offset = 0;
    for chunk in [&b"hello, "[..], b"", b"chunked ", b"world"] {
        offset = store
            .upload_append(&id, &mut state, offset, Body::from(chunk))
            .await
            .map_err(|e| format!("append at {offset}: {e}"))?;
        expected.extend_from_slice(chunk);
        ensure!(
            offset == expected.len() as u64,
            "append returns the new length"
        );
    }
    // A failed append leaves the upload as it was; the retry at the same offset wins.
    match store
        .upload_append(&id, &mut state, offset, broken(b"garbage"))
        .await
    {
        Err(StorageError::Body(_)) => {}
        other => {
            return Err(format!(
                "a failing body is a Body error, got {:?}",
                other.map(|_| ())
            ));
        }
    }
    offset = store
        .upload_append(&id, &mut state, offset, Body::from(&b"!"[..]))
        .await
        .map_err(|e| format!("append after a failed one: {e}"))?;
    expected.push(b'!');
    ensure!(
        offset == expected.len() as u64,
        "a retried append starts where the good bytes end"
    );

    let d = Digest::sha256(&expected);
    store
        .upload_finish(&id, &state, &d, offset)
        .await
        .map_err(|e| format!("finish: {e}"))?;
    ensure!(
        store.blob_head(&d).await.map(|i| i.size).ok() == Some(offset),
        "a finished upload is a blob"
    );
    let got = read(
        store
            .blob_get(&d, None)
            .await
            .map_err(|e| format!("get: {e}"))?
            .body,
    )
    .await?;
    ensure!(
        got == expected,
        "the blob holds exactly the appended bytes: {:?}",
        String::from_utf8_lossy(&got)
    );

    // An aborted upload is gone, and aborting twice is fine.
    let id2 = format!("contract-{tag}-abort");
    let mut state2 = store
        .upload_start(&id2)
        .await
        .map_err(|e| format!("start: {e}"))?;
    store
        .upload_append(&id2, &mut state2, 0, Body::from(&b"abc"[..]))
        .await
        .map_err(|e| format!("append: {e}"))?;
    store
        .upload_abort(&id2, &state2)
        .await
        .map_err(|e| format!("abort: {e}"))?;
    store
        .upload_abort(&id2, &state2)
        .await
        .map_err(|e| format!("abort twice: {e}"))?;
    ensure!(
        store
            .upload_append(&id2, &mut state2, 3, Body::from(&b"d"[..]))
            .await
            .is_err(),
        "an aborted upload takes no more bytes"
    );

    // An empty upload makes an empty blob.
    let id3 = format!("contract-{tag}-empty");
    let state3 = store
        .upload_start(&id3)
        .await
        .map_err(|e| format!("start: {e}"))?;
    let empty = Digest::sha256(b"");
    store
        .upload_finish(&id3, &state3, &empty, 0)
        .await
        .map_err(|e| format!("finish empty: {e}"))?;
    ensure!(
        store.blob_head(&empty).await.map(|i| i.size).ok() == Some(0),
        "an empty upload is an empty blob"
    );

    store
        .blob_delete(&d)
        .await
        .map_err(|e| format!("cleanup: {e}"))?;
    Ok(())
}
