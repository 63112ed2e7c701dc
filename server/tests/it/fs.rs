//! The filesystem store: the contract suite, its layout on disk, failures and races.

use std::io;
use std::sync::Arc;

use berth::digest::Checked;
use berth::storage::contract;
use berth::{Body, Digest, ListOptions, PutMode, Storage, StorageError};
use berth_server::fs::FsStore;
use bytes::Bytes;
use futures_util::StreamExt;

async fn open() -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("root")).await.unwrap();
    (dir, store)
}

fn checked(data: Vec<u8>, d: &Digest) -> Body {
    Body::stream(Checked::digest(
        Body::from(data).into_stream(),
        d.clone(),
        None,
    ))
}

async fn read(body: Body) -> Vec<u8> {
    let mut s = body.into_stream();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn contract() {
    let (_dir, store) = open().await;
    contract::run(&store, "fs").await.unwrap();
    // Run twice: what the first run deleted must not disturb the second.
    contract::run(&store, "fs").await.unwrap();
    assert!(files_in(&store.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn contract_gc() {
    let (_dir, store) = open().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    berth::storage::contract_gc::gc(std::sync::Arc::new(store), "fs", now)
        .await
        .unwrap();
}

#[tokio::test]
async fn layout_on_disk() {
    let (_dir, store) = open().await;
    let data = b"some blob".to_vec();
    let d = Digest::sha256(&data);
    store.blob_put(&d, checked(data.clone(), &d)).await.unwrap();
    let path = store
        .root()
        .join("blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex());
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(
        store
            .blob_list(Default::default())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.digest)
            .collect::<Vec<_>>(),
        vec![d.clone()]
    );

    for key in ["catalog/a", "catalog/a/b"] {
        store
            .meta_put(key, Bytes::from(key), PutMode::Create)
            .await
            .unwrap();
    }
    let meta = store.root().join("meta/catalog");
    assert_eq!(files_in(&meta), vec!["a", "a~"]);
    assert_eq!(std::fs::read(meta.join("a/b~")).unwrap(), b"catalog/a/b");
    let all = store
        .meta_list("catalog/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(all, vec!["a", "a/b"]);
    // A deleted leaf takes its empty directories with it.
    store.meta_delete("catalog/a/b", None).await.unwrap();
    assert_eq!(files_in(&meta), vec!["a~"]);

    for bad in ["../x", "a//b", "a/./b", "a~", ""] {
        assert!(
            matches!(store.meta_get(bad).await, Err(StorageError::Other(_))),
            "{bad:?} is refused"
        );
    }
}

#[tokio::test]
async fn one_process_per_root() {
    let (dir, store) = open().await;
    let again = FsStore::open(dir.path().join("root")).await;
    assert!(again.is_err(), "a second store on the same root is refused");
    drop(store);
    FsStore::open(dir.path().join("root")).await.unwrap();
}

#[tokio::test]
async fn failed_put_leaves_nothing() {
    let (_dir, store) = open().await;
    let data = vec![7u8; 3 << 20];
    let d = Digest::sha256(&data);
    let mut wrong = data.clone();
    wrong[2 << 20] = 0;
    let r = store.blob_put(&d, checked(wrong, &d)).await;
    assert!(matches!(r, Err(StorageError::Body(_))));
    let items: Vec<io::Result<Bytes>> = vec![
        Ok(Bytes::from(vec![1u8; 2 << 20])),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
    ];
    let r = store
        .blob_put(&d, Body::stream(futures_util::stream::iter(items)))
        .await;
    assert!(matches!(r, Err(StorageError::Body(_))));
    assert!(matches!(
        store.blob_head(&d).await.map(|i| i.size),
        Err(StorageError::NotFound)
    ));
    assert!(files_in(&store.root().join("tmp")).is_empty());
    assert!(
        store
            .blob_list(Default::default())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.digest)
            .collect::<Vec<_>>()
            .is_empty()
    );
}

#[tokio::test]
async fn append_discards_leftovers_and_finish_renames() {
    let (_dir, store) = open().await;
    let mut state = store.upload_start("up1").await.unwrap();
    let n = store
        .upload_append("up1", &mut state, 0, Body::from(&b"hello "[..]))
        .await
        .unwrap();
    assert_eq!(n, 6);
    // Bytes past the recorded offset, as a crash mid-append would leave them.
    let data = store.root().join("uploads/up1/data");
    std::fs::write(&data, b"hello garbage").unwrap();
    let n = store
        .upload_append("up1", &mut state, 6, Body::from(&b"world"[..]))
        .await
        .unwrap();
    assert_eq!(n, 11);
    assert!(matches!(
        store
            .upload_append("up1", &mut state, 20, Body::from(&b"!"[..]))
            .await,
        Err(StorageError::Precondition)
    ));
    let d = Digest::sha256(b"hello world");
    store.upload_finish("up1", &state, &d, 11).await.unwrap();
    assert!(!store.root().join("uploads/up1").exists());
    let got = read(store.blob_get(&d, None).await.unwrap().body).await;
    assert_eq!(got, b"hello world");
}

#[tokio::test]
async fn reopen_cleans_up_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    {
        let store = FsStore::open(&root).await.unwrap();
        let mut state = store.upload_start("kept").await.unwrap();
        store
            .upload_append("kept", &mut state, 0, Body::from(&b"x"[..]))
            .await
            .unwrap();
        store
            .meta_put("uploads/kept", Bytes::from_static(b"{}"), PutMode::Create)
            .await
            .unwrap();
        store.upload_start("orphan").await.unwrap();
    }
    std::fs::write(root.join("tmp/leftover"), b"half a blob").unwrap();
    let store = FsStore::open(&root).await.unwrap();
    assert!(files_in(&root.join("tmp")).is_empty());
    assert_eq!(files_in(&root.join("uploads")), vec!["kept"]);
    assert_eq!(
        store
            .blob_head(&Digest::sha256(b"x"))
            .await
            .ok()
            .map(|i| i.size),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_end_consistent() {
    let (_dir, store) = open().await;
    let store = Arc::new(store);
    let data: Vec<u8> = (0..(2 << 20)).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256(&data);
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let store = store.clone();
        let data = data.clone();
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            store.blob_put(&d, checked(data, &d)).await.unwrap();
            let tag = format!("v{i}");
            store
                .meta_put("repos/r/_tags/latest", Bytes::from(tag), PutMode::Overwrite)
                .await
                .unwrap();
            // A counter moved by compare-and-set: no increment may be lost.
            for _ in 0..1000 {
                let current = match store.meta_get("counter").await {
                    Ok(s) => Some(s),
                    Err(StorageError::NotFound) => None,
                    Err(e) => panic!("{e}"),
                };
                let (n, mode) = match current {
                    Some(s) => {
                        let n: u64 = std::str::from_utf8(&s.value).unwrap().parse().unwrap();
                        (n, PutMode::Update(s.version))
                    }
                    None => (0, PutMode::Create),
                };
                match store
                    .meta_put("counter", Bytes::from((n + 1).to_string()), mode)
                    .await
                {
                    Ok(_) => return,
                    Err(StorageError::Precondition | StorageError::AlreadyExists) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("no progress in 1000 tries");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        read(store.blob_get(&d, None).await.unwrap().body).await,
        data
    );
    assert_eq!(
        store
            .blob_list(Default::default())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.digest)
            .collect::<Vec<_>>(),
        vec![d]
    );
    let tag = store.meta_get("repos/r/_tags/latest").await.unwrap().value;
    assert!(tag.starts_with(b"v"), "one whole value wins");
    assert_eq!(store.meta_get("counter").await.unwrap().value, "16");
    assert!(files_in(&store.root().join("tmp")).is_empty());
}

/// Deleting the last document of a directory prunes it; a writer creating a document there at
/// the same moment must not fail (the directory vanishes between its mkdir and its rename).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_survive_concurrent_prunes() {
    let (_dir, store) = open().await;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                let key = format!("gc/dying/sha256/k{t}-{i}");
                store
                    .meta_put(&key, Bytes::from_static(b"x"), PutMode::Create)
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e}"));
                store
                    .meta_delete(&key, None)
                    .await
                    .unwrap_or_else(|e| panic!("delete {key}: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let left = store
        .meta_list("gc/", ListOptions::default())
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Listing pages walk the tree in order, entering only what can follow `after` (issue 16):
/// every page size and every starting key give the same keys as one whole listing.
#[tokio::test]
async fn list_pages_over_nested_keys() {
    let (_dir, store) = open().await;
    let keys = [
        "a", "a-b", "a/x", "a/y/z", "a/y-", "b", "b/c/d/e", "b0", "c/d", "c-", "z",
    ];
    for k in keys {
        store
            .meta_put(&format!("p/{k}"), Bytes::new(), PutMode::Overwrite)
            .await
            .unwrap();
    }
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    let all = store.meta_list("p/", ListOptions::default()).await.unwrap();
    assert_eq!(all, want);
    for size in 1..=4 {
        let mut got: Vec<String> = Vec::new();
        loop {
            let page = store
                .meta_list(
                    "p/",
                    ListOptions {
                        after: got.last().map(String::as_str),
                        limit: Some(size),
                    },
                )
                .await
                .unwrap();
            assert!(page.len() <= size);
            if page.is_empty() {
                break;
            }
            got.extend(page);
        }
        assert_eq!(got, want, "pages of {size}");
    }
    // `after` need not be a key: one inside a subtree, one between keys.
    for (after, first) in [
        ("a/xx", "a/y-"),
        ("a/", "a/x"),
        ("b/c", "b/c/d/e"),
        ("bz", "c-"),
    ] {
        let page = store
            .meta_list(
                "p/",
                ListOptions {
                    after: Some(after),
                    limit: Some(1),
                },
            )
            .await
            .unwrap();
        assert_eq!(page, vec![first.to_owned()], "after {after}");
    }
}
