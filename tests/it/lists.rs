//! end-8 (tags) and the catalog, with pagination edges.

use berth::Config;
use serde_json::json;

use crate::core::*;

async fn tagged(r: &Reg, name: &str, tags: &[&str]) {
    let (d, bytes) = r.push_image(name, tags[0], name).await;
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for t in &tags[1..] {
        r.put_manifest(name, &format!("{d}?tag={t}"), OCI_MANIFEST, &m)
            .await
            .expect(201);
    }
}

#[tokio::test]
async fn tags_in_lexical_order_with_pagination() {
    let r = Reg::new();
    let tags = ["v2", "latest", "1.0", "V1", "a-b", "a_b", "a.b", "a"];
    tagged(&r, "app", &tags).await;
    let mut sorted = tags.to_vec();
    sorted.sort();
    let all = r.get("/v2/app/tags/list").await;
    all.expect(200);
    assert_eq!(all.json(), json!({"name": "app", "tags": sorted}));
    assert!(all.header("link").is_none());

    let page = r.get("/v2/app/tags/list?n=3").await;
    page.expect(200);
    assert_eq!(page.json()["tags"], json!(sorted[..3]));
    let link = page.header("link").unwrap().to_owned();
    assert_eq!(
        link,
        format!("</v2/app/tags/list?n=3&last={}>; rel=\"next\"", sorted[2])
    );
    // Follow the links to the end.
    let mut seen: Vec<String> = page.json()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let mut next = Some(link);
    while let Some(l) = next {
        let uri = l
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned();
        let p = r.get(&uri).await;
        p.expect(200);
        seen.extend(
            p.json()["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned()),
        );
        next = p.header("link").map(str::to_owned);
    }
    assert_eq!(seen, sorted);

    let after = r.get("/v2/app/tags/list?last=a").await.json();
    assert_eq!(
        after["tags"],
        json!(sorted[sorted.iter().position(|t| *t == "a").unwrap() + 1..])
    );
    let after_missing = r.get("/v2/app/tags/list?last=b&n=2").await.json();
    assert_eq!(after_missing["tags"], json!(["latest", "v2"]));
    let zero = r.get("/v2/app/tags/list?n=0").await;
    zero.expect(200);
    assert_eq!(zero.json()["tags"], json!([]));
    assert!(zero.header("link").is_none());
    let exact = r.get(&format!("/v2/app/tags/list?n={}", tags.len())).await;
    assert_eq!(exact.json()["tags"], json!(sorted));
    assert!(
        exact.header("link").is_none(),
        "no next page when nothing remains"
    );
    let past_end = r.get("/v2/app/tags/list?last=zzz").await;
    assert_eq!(past_end.json()["tags"], json!([]));
    let huge = r.get("/v2/app/tags/list?n=99999999999999999999").await;
    huge.expect(400);
    let capped = r.get("/v2/app/tags/list?n=18446744073709551615").await;
    assert_eq!(capped.json()["tags"], json!(sorted));
    r.get("/v2/app/tags/list?n=-1").await.expect(400);
    r.get("/v2/app/tags/list?n=abc").await.expect(400);
}

#[tokio::test]
async fn page_size_is_capped() {
    let r = Reg::with(Config {
        max_page_size: 2,
        ..Config::default()
    });
    tagged(&r, "app", &["a", "b", "c"]).await;
    let p = r.get("/v2/app/tags/list").await;
    assert_eq!(p.json()["tags"], json!(["a", "b"]));
    assert_eq!(
        p.header("link"),
        Some("</v2/app/tags/list?n=2&last=b>; rel=\"next\"")
    );
}

#[tokio::test]
async fn unknown_repository() {
    let r = Reg::new();
    r.get("/v2/nothing/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn catalog() {
    let r = Reg::new();
    r.get("/v2/_catalog").await.expect(200);
    assert_eq!(
        r.get("/v2/_catalog").await.json(),
        json!({"repositories": []})
    );
    for name in ["b", "a/b", "a", "a-b", "a/b/c"] {
        tagged(&r, name, &["v1"]).await;
    }
    let all = r.get("/v2/_catalog").await.json();
    assert_eq!(
        all,
        json!({"repositories": ["a", "a-b", "a/b", "a/b/c", "b"]})
    );
    let page = r.get("/v2/_catalog?n=2").await;
    assert_eq!(page.json()["repositories"], json!(["a", "a-b"]));
    assert_eq!(
        page.header("link"),
        Some("</v2/_catalog?n=2&last=a-b>; rel=\"next\"")
    );
    let next = r.get("/v2/_catalog?n=2&last=a-b").await;
    assert_eq!(next.json()["repositories"], json!(["a/b", "a/b/c"]));
    assert_eq!(
        next.header("link"),
        Some("</v2/_catalog?n=2&last=a%2Fb%2Fc>; rel=\"next\"")
    );
    let last = r.get("/v2/_catalog?n=2&last=a%2Fb%2Fc").await;
    assert_eq!(last.json()["repositories"], json!(["b"]));
    assert!(last.header("link").is_none());
}
