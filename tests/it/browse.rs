//! berth's read-only extension for the web page (`/v2/_berth/...`): summaries, tag pages,
//! the last GC report, and the same access control as the API.

use std::sync::Arc;

use berth::auth::password::PasswordHash;
use berth::testing::ManualEnv;
use berth::{Auth, Body, Config, MemoryStore, Registry};
use http::Method;
use serde_json::{Value, json};

use crate::auth::basic;
use crate::core::{OCI_INDEX, OCI_MANIFEST, Reg, desc};

const T0: u64 = 1_700_000_000;

fn names(v: &Value) -> Vec<String> {
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

fn tags(v: &Value) -> Vec<String> {
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tag"].as_str().unwrap().to_owned())
        .collect()
}

/// `app` with tags b (oldest), a, c (newest); `multi` with an index of two platforms.
async fn filled(r: &Reg) {
    r.push_image("app", "b", "one").await;
    r.env.advance(10);
    r.push_image("app", "a", "two").await;
    r.env.advance(10);
    r.push_image("app", "c", "three").await;
    let (amd, amd_bytes) = r.push_image("multi", "amd64", "amd").await;
    let (arm, arm_bytes) = r.push_image("multi", "arm64", "arm").await;
    let mut a = desc(OCI_MANIFEST, &amd, amd_bytes.len() as u64);
    a["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut b = desc(OCI_MANIFEST, &arm, arm_bytes.len() as u64);
    b["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [a, b]});
    r.put_manifest("multi", "latest", OCI_INDEX, &index)
        .await
        .expect(201);
}

#[tokio::test]
async fn repositories_are_summarised_and_paged() {
    let r = Reg::new();
    filled(&r).await;
    r.push_image("other/x", "v1", "x").await;
    let all = r.get("/v2/_berth/repositories").await;
    all.expect(200);
    assert_eq!(all.header("cache-control"), Some("no-store"));
    let all = all.json();
    assert_eq!(names(&all), ["app", "multi", "other/x"]);
    assert_eq!(all["next"], Value::Null);
    let app = &all["repositories"][0];
    assert_eq!(app["tags"], 3);
    assert_eq!(app["lastPush"], T0 + 20);
    assert!(app["size"].as_u64().unwrap() > 0, "{app}");
    assert_eq!(all["repositories"][1]["tags"], 3);

    let first = r.get("/v2/_berth/repositories?n=2").await.json();
    assert_eq!(names(&first), ["app", "multi"]);
    assert_eq!(first["next"], "multi");
    let rest = r.get("/v2/_berth/repositories?n=2&last=multi").await.json();
    assert_eq!(names(&rest), ["other/x"]);
    assert_eq!(rest["next"], Value::Null);

    let found = r.get("/v2/_berth/repositories?q=ult").await.json();
    assert_eq!(names(&found), ["multi"]);
    r.get("/v2/_berth/repositories?n=x")
        .await
        .expect_error(400, "UNSUPPORTED");
}

#[tokio::test]
async fn tags_come_newest_first_or_by_name_with_sizes_and_platforms() {
    let r = Reg::new();
    filled(&r).await;
    let newest = r.get("/v2/app/_berth/tags").await;
    newest.expect(200);
    let newest = newest.json();
    assert_eq!(newest["total"], 3);
    assert_eq!(tags(&newest), ["c", "a", "b"]);
    let c = &newest["tags"][0];
    assert_eq!(c["pushed"], T0 + 20);
    assert_eq!(c["mediaType"], OCI_MANIFEST);
    assert!(c["digest"].as_str().unwrap().starts_with("sha256:"));
    // The manifest's own bytes plus config and layer as its descriptors say.
    let m = r.get("/v2/app/manifests/c").await;
    let doc: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    let parts = doc["config"]["size"].as_u64().unwrap()
        + doc["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>();
    assert_eq!(c["size"], m.body.len() as u64 + parts);

    let by_name = r.get("/v2/app/_berth/tags?sort=name").await.json();
    assert_eq!(tags(&by_name), ["a", "b", "c"]);
    let page = r
        .get("/v2/app/_berth/tags?sort=name&start=1&n=1")
        .await
        .json();
    assert_eq!(tags(&page), ["b"]);
    assert_eq!(page["total"], 3);
    let page = r.get("/v2/app/_berth/tags?start=2&n=5").await.json();
    assert_eq!(tags(&page), ["b"]);

    let multi = r.get("/v2/multi/_berth/tags?sort=name").await.json();
    let latest = &multi["tags"][2];
    assert_eq!(latest["tag"], "latest");
    assert_eq!(latest["mediaType"], OCI_INDEX);
    assert_eq!(
        latest["platforms"],
        json!(["linux/amd64", "linux/arm64/v8"])
    );
    let children: u64 = (0..2)
        .map(|i| multi["tags"][i]["size"].as_u64().unwrap())
        .sum();
    let own = r.get("/v2/multi/manifests/latest").await.body.len() as u64;
    assert_eq!(latest["size"], own + children);

    r.get("/v2/app/_berth/tags?sort=size")
        .await
        .expect_error(400, "UNSUPPORTED");
    r.get("/v2/app/_berth/tags?start=-1")
        .await
        .expect_error(400, "UNSUPPORTED");
    r.get("/v2/nope/_berth/tags")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    r.get("/v2/Bad/_berth/tags")
        .await
        .expect_error(400, "NAME_INVALID");
    r.send(Method::POST, "/v2/app/_berth/tags", &[], Body::Empty)
        .await
        .expect_error(405, "UNSUPPORTED");
}

#[tokio::test]
async fn a_summary_says_what_the_caller_may_do() {
    let r = Reg::new();
    filled(&r).await;
    let s = r.get("/v2/app/_berth/summary").await.json();
    assert_eq!(s["tags"], 3);
    assert_eq!(s["lastPush"], T0 + 20);
    assert_eq!(s["actions"], json!(["pull", "push", "delete"]));
    assert!(s["usage"]["bytes"].as_u64().unwrap() > 0);

    let no_deletes = Reg::with(Config {
        deletes: false,
        ..Config::default()
    });
    no_deletes.push_image("app", "v1", "x").await;
    let s = no_deletes.get("/v2/app/_berth/summary").await.json();
    assert_eq!(s["actions"], json!(["pull", "push"]));
    r.get("/v2/nope/_berth/summary")
        .await
        .expect_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn the_last_gc_pass_shows_without_its_items() {
    let r = Reg::new();
    filled(&r).await;
    assert_eq!(r.get("/v2/_berth/gc").await.json(), json!({"last": null}));
    r.delete("/v2/app/manifests/a").await.expect(202);
    r.env.advance(2 * 24 * 3600);
    r.reg.collect_garbage(false).await.unwrap();
    let last = r.get("/v2/_berth/gc").await.json();
    let last = &last["last"];
    assert!(
        last["summary"].as_str().unwrap().contains("freed"),
        "{last}"
    );
    assert!(last.get("items").is_none());
    assert!(last["itemCount"].as_u64().is_some());
}

fn guarded() -> Reg {
    let hash = |p: &str| PasswordHash::new(p, b"salt-for-tests!!", 1000).to_string();
    let policy = format!(
        r#"service = "registry.test"
catalog = ["alice"]
[users.alice]
password = "{alice}"
[users.bob]
password = "{bob}"
[[rules]]
repos = ["pub/**"]
who = ["anonymous"]
actions = ["pull"]
[[rules]]
repos = ["**"]
who = ["alice"]
actions = ["*"]
[[rules]]
repos = ["team/**"]
who = ["bob"]
actions = ["pull"]
"#,
        alice = hash("alice-pw"),
        bob = hash("bob-pw"),
    );
    let auth = Arc::new(Auth::new(&policy, b"0123456789abcdef0123456789abcdef-secret").unwrap());
    let env = Arc::new(ManualEnv::at(T0));
    let reg = Registry::new(MemoryStore::new(), env.clone(), Config::default()).with_auth(auth);
    Reg { reg, env }
}

#[tokio::test]
async fn the_extension_obeys_the_access_policy() {
    let r = guarded();
    let alice = basic("alice", "alice-pw");
    let bob = basic("bob", "bob-pw");
    let as_alice: &[(&str, &str)] = &[("authorization", &alice)];
    let as_bob: &[(&str, &str)] = &[("authorization", &bob)];
    for name in ["pub/app", "secret/app", "team/app"] {
        let config = r
            .send(
                Method::POST,
                &format!(
                    "/v2/{name}/blobs/uploads/?digest={}",
                    berth::Digest::sha256(b"{}")
                ),
                as_alice,
                bytes::Bytes::from_static(b"{}"),
            )
            .await;
        config.expect(201);
        let d = berth::Digest::sha256(b"{}");
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", &d, 2), "layers": []});
        r.send(
            Method::PUT,
            &format!("/v2/{name}/manifests/v1"),
            &[("authorization", &alice), ("content-type", OCI_MANIFEST)],
            serde_json::to_vec(&m).unwrap(),
        )
        .await
        .expect(201);
    }
    let anon = r.get("/v2/_berth/repositories").await;
    anon.expect(200);
    assert_eq!(names(&anon.json()), ["pub/app"]);
    let mine = r
        .send(
            Method::GET,
            "/v2/_berth/repositories",
            as_alice,
            Body::Empty,
        )
        .await
        .json();
    assert_eq!(names(&mine), ["pub/app", "secret/app", "team/app"]);
    let bobs = r
        .send(Method::GET, "/v2/_berth/repositories", as_bob, Body::Empty)
        .await
        .json();
    assert_eq!(names(&bobs), ["pub/app", "team/app"]);
    // Bad credentials are refused, not treated as anonymous.
    let wrong = basic("alice", "nope");
    r.send(
        Method::GET,
        "/v2/_berth/repositories",
        &[("authorization", &wrong)],
        Body::Empty,
    )
    .await
    .expect_error(401, "UNAUTHORIZED");

    // Per-repository endpoints need pull, exactly as tags/list does.
    for path in [
        "/v2/secret/app/_berth/tags",
        "/v2/secret/app/_berth/summary",
    ] {
        let r1 = r.get(path).await;
        r1.expect_error(401, "UNAUTHORIZED");
        assert!(
            r1.header("www-authenticate")
                .unwrap()
                .contains("scope=\"repository:secret/app:pull\""),
        );
        r.send(Method::GET, path, as_bob, Body::Empty)
            .await
            .expect_error(403, "DENIED");
        r.send(Method::GET, path, as_alice, Body::Empty)
            .await
            .expect(200);
    }
    // A repository that does not exist answers the same as one the caller may not see.
    r.get("/v2/secret/none/_berth/tags")
        .await
        .expect_error(401, "UNAUTHORIZED");
    r.get("/v2/pub/app/_berth/tags").await.expect(200);

    let s = r
        .send(
            Method::GET,
            "/v2/team/app/_berth/summary",
            as_bob,
            Body::Empty,
        )
        .await
        .json();
    assert_eq!(s["actions"], json!(["pull"]));
    let s = r
        .send(
            Method::GET,
            "/v2/team/app/_berth/summary",
            as_alice,
            Body::Empty,
        )
        .await
        .json();
    assert_eq!(s["actions"], json!(["pull", "push", "delete"]));
    assert_eq!(
        r.get("/v2/pub/app/_berth/summary").await.json()["actions"],
        json!(["pull"])
    );

    // The GC report is registry-wide: it needs the catalog.
    r.get("/v2/_berth/gc")
        .await
        .expect_error(401, "UNAUTHORIZED");
    r.send(Method::GET, "/v2/_berth/gc", as_bob, Body::Empty)
        .await
        .expect_error(403, "DENIED");
    r.send(Method::GET, "/v2/_berth/gc", as_alice, Body::Empty)
        .await
        .expect(200);

    // A token lists what it grants, as the API would answer it.
    let tok = r
        .send(
            Method::GET,
            "/token?service=registry.test&scope=repository:team/app:pull",
            as_alice,
            Body::Empty,
        )
        .await
        .json();
    let bearer = format!("Bearer {}", tok["token"].as_str().unwrap());
    let seen = r
        .send(
            Method::GET,
            "/v2/_berth/repositories",
            &[("authorization", &bearer)],
            Body::Empty,
        )
        .await
        .json();
    assert_eq!(names(&seen), ["team/app"]);
}
