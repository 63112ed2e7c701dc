//! Access control in-process: every kind of request × every kind of caller, against the policy
//! below. Allowed requests must get exactly what an open registry with the same content answers;
//! refused ones 401 with the challenge for exactly the access needed, or 403.

use std::sync::Arc;

use berth::auth::jwt::{self, Access, Audience, Claims, Key};
use berth::auth::password::PasswordHash;
use berth::testing::ManualEnv;
use berth::{Auth, Body, Config, Digest, MemoryStore, Registry};
use http::Method;
use serde_json::Value;

use crate::core::{OCI_MANIFEST, Reg, Resp, image_manifest, remember_size};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
const EXT_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8TgNXtghFOyA0jEtZJ3smpwkcIgu
VUaKIlTHRiadopc3iPqexQRGURSNNXC9XqWrVvCVA/CUETPZ8Qr4lSSA6g==
-----END PUBLIC KEY-----";
const EXT_PRIVATE: &str = "80ebc472f840fa3fe49665d673cc274347ab121bb190689c436972e728eefdf2";

fn hash(password: &str) -> String {
    PasswordHash::new(password, b"salt-for-tests!!", 1000).to_string()
}

fn policy(extra: &str) -> String {
    format!(
        r#"service = "registry.test"
catalog = ["alice"]
{extra}
[[keys]]
kid = "ext"
alg = "ES256"
issuer = "elsewhere"
public_key = """{EXT_PEM}"""

[users.alice]
password = "{alice}"
groups = ["dev"]
[users.bob]
password = "{bob}"
[users.ci]
password = "{ci}"
read_only = true
[users.dave]
password = "{dave}"

[[rules]]
repos = ["pub/**"]
who = ["anonymous"]
actions = ["pull"]
[[rules]]
repos = ["pub/**"]
who = ["group:dev"]
actions = ["push"]
[[rules]]
repos = ["team/**"]
who = ["group:dev"]
actions = ["pull", "push", "delete"]
[[rules]]
repos = ["team/**"]
who = ["bob"]
actions = ["pull"]
[[rules]]
repos = ["**"]
who = ["ci"]
actions = ["pull", "push"]
[[rules]]
repos = ["dave/*"]
who = ["dave"]
actions = ["*"]
"#,
        alice = hash("alice-pw"),
        bob = hash("bob-pw"),
        ci = hash("ci-pw"),
        dave = hash("dave-pw"),
    )
}

struct Pair {
    open: Reg,
    guarded: Reg,
    auth: Arc<Auth>,
}

fn guarded(extra: &str) -> (Reg, Arc<Auth>) {
    let auth = Arc::new(Auth::new(&policy(extra), SECRET.as_bytes()).unwrap());
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    let reg =
        Registry::new(MemoryStore::new(), env.clone(), Config::default()).with_auth(auth.clone());
    (Reg { reg, env }, auth)
}

pub fn basic(user: &str, pass: &str) -> String {
    use std::fmt::Write;
    // A small base64 encoder: the test crate has no base64 dependency.
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{pass}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in raw.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = write!(out, "{}", T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Pair {
    async fn new() -> Pair {
        let (guarded, auth) = guarded("");
        let pair = Pair {
            open: Reg::new(),
            guarded,
            auth,
        };
        let alice = basic("alice", "alice-pw");
        for name in ["pub/app", "team/app"] {
            for reg in [&pair.open, &pair.guarded] {
                let auth: &[(&str, &str)] = if std::ptr::eq(reg, &pair.open) {
                    &[]
                } else {
                    &[("authorization", &alice)]
                };
                push_image(reg, name, auth).await;
            }
        }
        pair
    }
}

/// Config, one layer and a manifest tagged v1, with `headers` on every request.
async fn push_image(reg: &Reg, name: &str, headers: &[(&str, &str)]) -> Value {
    let mut digests = Vec::new();
    for data in [b"{}".as_slice(), b"layer".as_slice()] {
        let d = Digest::sha256(data);
        remember_size(&d, data.len() as u64);
        reg.send(
            Method::POST,
            &format!("/v2/{name}/blobs/uploads/?digest={d}"),
            headers,
            data.to_vec(),
        )
        .await
        .expect(201);
        digests.push(d);
    }
    let m = image_manifest(&digests[0], &[&digests[1]], None, None);
    let mut h = headers.to_vec();
    h.push(("content-type", OCI_MANIFEST));
    reg.send(
        Method::PUT,
        &format!("/v2/{name}/manifests/v1"),
        &h,
        serde_json::to_vec(&m).unwrap(),
    )
    .await
    .expect(201);
    m
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Pull,
    Push,
    Delete,
}

impl Act {
    fn name(self) -> &'static str {
        match self {
            Act::Pull => "pull",
            Act::Push => "push",
            Act::Delete => "delete",
        }
    }
}

/// Each kind of repository request: what it needs, and how to send it.
fn requests(name: &str) -> Vec<(Act, Method, String, Vec<u8>)> {
    let layer = Digest::sha256(b"layer");
    let config = Digest::sha256(b"{}");
    let zero = format!("sha256:{}", "0".repeat(64));
    let manifest = serde_json::to_vec(&image_manifest(&config, &[&layer], None, None)).unwrap();
    vec![
        (
            Act::Pull,
            Method::GET,
            format!("/v2/{name}/tags/list"),
            vec![],
        ),
        (
            Act::Pull,
            Method::GET,
            format!("/v2/{name}/manifests/v1"),
            vec![],
        ),
        (
            Act::Pull,
            Method::HEAD,
            format!("/v2/{name}/manifests/v1"),
            vec![],
        ),
        (
            Act::Pull,
            Method::GET,
            format!("/v2/{name}/blobs/{layer}"),
            vec![],
        ),
        (
            Act::Pull,
            Method::HEAD,
            format!("/v2/{name}/blobs/{layer}"),
            vec![],
        ),
        (
            Act::Pull,
            Method::GET,
            format!("/v2/{name}/referrers/{layer}"),
            vec![],
        ),
        (
            Act::Push,
            Method::PUT,
            format!("/v2/{name}/manifests/v2"),
            manifest,
        ),
        (
            Act::Push,
            Method::POST,
            format!("/v2/{name}/blobs/uploads/"),
            vec![],
        ),
        (
            Act::Push,
            Method::GET,
            format!("/v2/{name}/blobs/uploads/nope"),
            vec![],
        ),
        (
            Act::Push,
            Method::PATCH,
            format!("/v2/{name}/blobs/uploads/nope"),
            vec![1],
        ),
        (
            Act::Delete,
            Method::DELETE,
            format!("/v2/{name}/manifests/{zero}"),
            vec![],
        ),
        (
            Act::Delete,
            Method::DELETE,
            format!("/v2/{name}/blobs/{zero}"),
            vec![],
        ),
    ]
}

/// What the policy lets each user do: (user, repository prefix) → actions.
fn allowed(user: Option<&str>, name: &str, act: Act) -> bool {
    use Act::*;
    let public = name.starts_with("pub/");
    match user {
        None => public && act == Pull,
        Some("alice") => act != Delete || !public,
        Some("bob") => act == Pull,
        Some("ci") => act == Pull,
        _ => false,
    }
}

async fn send(reg: &Reg, m: &Method, uri: &str, auth: Option<&str>, body: &[u8]) -> Resp {
    let mut h = vec![("content-type", OCI_MANIFEST)];
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    reg.send(m.clone(), uri, &h, Body::from(body.to_vec()))
        .await
}

#[track_caller]
fn expect_challenge(r: &Resp, scope: Option<&str>, error: Option<&str>) {
    r.expect(401);
    if r.status != 401 || r.body.is_empty() {
        return;
    }
    assert_eq!(r.code(), "UNAUTHORIZED");
    let mut want =
        "Bearer realm=\"http://registry.test:5000/token\",service=\"registry.test\"".to_owned();
    if let Some(s) = scope {
        want.push_str(&format!(",scope=\"{s}\""));
    }
    if let Some(e) = error {
        want.push_str(&format!(",error=\"{e}\""));
    }
    assert_eq!(r.header("www-authenticate"), Some(want.as_str()));
}

const HOST: (&str, &str) = ("host", "registry.test:5000");

#[tokio::test]
async fn basic_and_anonymous_matrix() {
    let pair = Pair::new().await;
    let callers: [(Option<&str>, Option<String>); 4] = [
        (None, None),
        (Some("alice"), Some(basic("alice", "alice-pw"))),
        (Some("bob"), Some(basic("bob", "bob-pw"))),
        (Some("ci"), Some(basic("ci", "ci-pw"))),
    ];
    for name in ["pub/app", "team/app", "team/ghost"] {
        for (act, method, uri, body) in requests(name) {
            for (user, header) in &callers {
                let got = pair
                    .guarded
                    .send(
                        method.clone(),
                        &uri,
                        &[
                            HOST,
                            ("content-type", OCI_MANIFEST),
                            ("authorization", header.as_deref().unwrap_or("")),
                        ][..if header.is_some() { 3 } else { 2 }],
                        Body::from(body.clone()),
                    )
                    .await;
                let what = format!("{user:?} {method} {uri}");
                if allowed(*user, name, act) {
                    let want = send(&pair.open, &method, &uri, None, &body).await;
                    assert_eq!(got.status, want.status, "{what}: as an open registry");
                } else if user.is_none() {
                    let scope = format!("repository:{name}:{}", act.name());
                    assert_eq!(got.status, 401, "{what}");
                    if method != Method::HEAD {
                        expect_challenge(&got, Some(&scope), None);
                    } else {
                        assert!(got.header("www-authenticate").is_some(), "{what}");
                    }
                } else {
                    assert_eq!(got.status, 403, "{what}");
                    if method != Method::HEAD {
                        assert_eq!(got.code(), "DENIED", "{what}");
                    }
                }
            }
        }
    }
    // A repository that exists and one that does not look the same to those who may not pull.
    for header in [None, Some(basic("dave", "dave-pw"))] {
        let a = send(
            &pair.guarded,
            &Method::GET,
            "/v2/team/app/manifests/v1",
            header.as_deref(),
            b"",
        )
        .await;
        let b = send(
            &pair.guarded,
            &Method::GET,
            "/v2/team/ghost/manifests/v1",
            header.as_deref(),
            b"",
        )
        .await;
        assert_eq!(a.status, b.status);
        assert_eq!(a.body, b.body);
    }
}

#[tokio::test]
async fn bad_credentials_and_base() {
    let pair = Pair::new().await;
    let g = &pair.guarded;
    let pull = "/v2/pub/app/manifests/v1";
    // Even where anonymous callers may pull, wrong credentials are refused.
    for bad in [
        basic("alice", "wrong"),
        basic("nobody", "x"),
        "Basic !!!".to_owned(),
        "Bearer not.a.token".to_owned(),
        "Digest x".to_owned(),
        "Basic".to_owned(),
    ] {
        let r = g
            .send(
                Method::GET,
                pull,
                &[HOST, ("authorization", &bad)],
                Body::Empty,
            )
            .await;
        expect_challenge(&r, Some("repository:pub/app:pull"), Some("invalid_token"));
    }
    // /v2/: credentials required, any valid ones do.
    let r = g.send(Method::GET, "/v2/", &[HOST], Body::Empty).await;
    expect_challenge(&r, None, None);
    let dave = basic("dave", "dave-pw");
    g.send(
        Method::GET,
        "/v2/",
        &[("authorization", &dave)],
        Body::Empty,
    )
    .await
    .expect(200);
    g.send(
        Method::GET,
        "/v2/",
        &[("authorization", &basic("", ""))],
        Body::Empty,
    )
    .await
    .expect(200);
    // The catalog has a grant of its own.
    let r = g
        .send(Method::GET, "/v2/_catalog", &[HOST], Body::Empty)
        .await;
    expect_challenge(&r, Some("registry:catalog:*"), None);
    g.send(
        Method::GET,
        "/v2/_catalog",
        &[("authorization", &basic("bob", "bob-pw"))],
        Body::Empty,
    )
    .await
    .expect_error(403, "DENIED");
    let r = g
        .send(
            Method::GET,
            "/v2/_catalog",
            &[("authorization", &basic("alice", "alice-pw"))],
            Body::Empty,
        )
        .await;
    r.expect(200);
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["pub/app", "team/app"])
    );
    // Unknown paths answer 404 to everyone; the scheme and host of the realm follow the request.
    g.get("/nowhere").await.expect(404);
    let r = g
        .send(
            Method::GET,
            "https://r.example/v2/team/app/tags/list",
            &[],
            Body::Empty,
        )
        .await;
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=\"https://r.example/token\"")
    );
}

async fn token(reg: &Reg, query: &str, auth: Option<&str>) -> Resp {
    let mut h = vec![HOST];
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    reg.send(Method::GET, &format!("/token?{query}"), &h, Body::Empty)
        .await
}

fn claims_of(auth: &Auth, token: &str, now: u64) -> Claims {
    let key = Key::Hs256 {
        kid: auth.kid().into(),
        issuer: "berth".into(),
        secret: SECRET.as_bytes().to_vec(),
    };
    jwt::verify(token, &[key], "registry.test", now, 0).unwrap()
}

fn bearer(r: &Resp) -> String {
    r.expect(200);
    format!("Bearer {}", r.json()["token"].as_str().unwrap())
}

#[tokio::test]
async fn token_endpoint() {
    let pair = Pair::new().await;
    let g = &pair.guarded;
    let now = 1_700_000_000;
    let alice = basic("alice", "alice-pw");
    // Partial grant: alice may not delete in pub/, bob may only pull in team/.
    let r = token(
        g,
        "service=registry.test&scope=repository:pub/app:pull,push,delete&scope=repository:team/app:pull",
        Some(&alice),
    )
    .await;
    r.expect(200);
    let j = r.json();
    assert_eq!(j["token"], j["access_token"]);
    assert_eq!(j["expires_in"], 3600);
    assert_eq!(j["issued_at"], "2023-11-14T22:13:20Z");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let c = claims_of(&pair.auth, j["token"].as_str().unwrap(), now);
    assert_eq!(c.sub, "alice");
    assert_eq!(c.aud, Audience::One("registry.test".into()));
    assert_eq!(c.exp, now + 3600);
    let access = |name: &str, actions: &[&str]| Access {
        kind: "repository".into(),
        name: name.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    };
    assert_eq!(
        c.access,
        vec![
            access("pub/app", &["pull", "push"]),
            access("team/app", &["pull"])
        ]
    );

    let r = token(
        g,
        "scope=repository:team/app:pull,push%20registry:catalog:*",
        Some(&basic("bob", "bob-pw")),
    )
    .await;
    let c = claims_of(&pair.auth, r.json()["token"].as_str().unwrap(), now);
    assert_eq!(c.sub, "bob");
    assert_eq!(c.access, vec![access("team/app", &["pull"])]);
    let r = token(g, "scope=registry:catalog:*", Some(&alice)).await;
    let c = claims_of(&pair.auth, r.json()["token"].as_str().unwrap(), now);
    assert_eq!(c.access[0].kind, "registry");

    // Anonymous: what anonymous callers may, and nothing asked for beyond it.
    let r = token(
        g,
        "scope=repository:pub/app:pull,push&scope=repository:team/app:pull",
        None,
    )
    .await;
    let c = claims_of(&pair.auth, r.json()["token"].as_str().unwrap(), now);
    assert_eq!(c.sub, "");
    assert_eq!(c.access, vec![access("pub/app", &["pull"])]);
    // Garbage scopes are ignored, not errors.
    token(
        g,
        "scope=nonsense&scope=repository:BAD:pull&scope=repository:x",
        None,
    )
    .await
    .expect(200);
    // Wrong credentials: 401 with a Basic challenge; another service: 400.
    let r = token(
        g,
        "scope=repository:pub/app:pull",
        Some(&basic("alice", "nope")),
    )
    .await;
    r.expect_error(401, "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"registry.test\"")
    );
    token(g, "service=other", None).await.expect(400);
    // POST (the OAuth2 flow) is not served: 404 sends Docker clients back to GET.
    g.send(Method::POST, "/token", &[], Body::Empty)
        .await
        .expect(404);
}

#[tokio::test]
async fn tokens_as_credentials() {
    let pair = Pair::new().await;
    let g = &pair.guarded;
    let alice = basic("alice", "alice-pw");
    let all = bearer(
        &token(
            g,
            "scope=repository:team/app:pull,push,delete",
            Some(&alice),
        )
        .await,
    );
    let anon = bearer(&token(g, "scope=repository:pub/app:pull", None).await);
    let bob = bearer(
        &token(
            g,
            "scope=repository:team/app:pull,push",
            Some(&basic("bob", "bob-pw")),
        )
        .await,
    );
    let send = |uri: &str, method: Method, token: &str| {
        let (uri, token) = (uri.to_owned(), token.to_owned());
        async move {
            let h = [HOST, ("authorization", token.as_str())];
            g.send(method, &uri, &h, Body::Empty).await
        }
    };
    // Every action the token grants, and /v2/ with any valid token.
    for (act, method, uri, body) in requests("team/app") {
        let r = g
            .send(
                method.clone(),
                &uri,
                &[
                    HOST,
                    ("authorization", &all),
                    ("content-type", OCI_MANIFEST),
                ],
                Body::from(body.clone()),
            )
            .await;
        let want = send_open(&pair.open, &method, &uri, &body).await;
        assert_eq!(r.status, want, "{act:?} {method} {uri}");
    }
    send("/v2/", Method::GET, &anon).await.expect(200);
    send("/v2/pub/app/manifests/v1", Method::GET, &anon)
        .await
        .expect(200);
    // Anonymous token without push: 401, so the client may log in.
    let r = send("/v2/pub/app/blobs/uploads/", Method::POST, &anon).await;
    expect_challenge(&r, Some("repository:pub/app:push"), None);
    // Alice's token lacks pub/app, which she may pull: 401 insufficient_scope, ask again.
    let r = send("/v2/pub/app/tags/list", Method::GET, &all).await;
    expect_challenge(
        &r,
        Some("repository:pub/app:pull"),
        Some("insufficient_scope"),
    );
    // Bob's token (pull only) on push: 403, the policy would not give more.
    send("/v2/team/app/tags/list", Method::GET, &bob)
        .await
        .expect(200);
    send("/v2/team/app/blobs/uploads/", Method::POST, &bob)
        .await
        .expect_error(403, "DENIED");

    // Forged and stale tokens are refused, even for what anonymous callers may do.
    let now = g.env.now.load(std::sync::atomic::Ordering::SeqCst);
    let good = Claims {
        iss: "berth".into(),
        sub: "alice".into(),
        aud: Audience::One("registry.test".into()),
        exp: now + 600,
        nbf: Some(now),
        iat: Some(now),
        jti: None,
        access: vec![Access {
            kind: "repository".into(),
            name: "pub/app".into(),
            actions: vec!["pull".into()],
        }],
    };
    let kid = pair.auth.kid().to_owned();
    let sign = |c: &Claims, kid: &str, secret: &str| {
        format!("Bearer {}", jwt::sign_hs256(kid, secret.as_bytes(), c))
    };
    let uri = "/v2/pub/app/manifests/v1";
    send(uri, Method::GET, &sign(&good, &kid, SECRET))
        .await
        .expect(200);
    let mut aud = good.clone();
    aud.aud = Audience::One("other".into());
    let mut iss = good.clone();
    iss.iss = "elsewhere".into();
    let mut late = good.clone();
    late.exp = now - 61;
    let mut early = good.clone();
    early.nbf = Some(now + 61);
    let forged = sign(&good, &kid, "another-secret-of-enough-length-000000");
    let good_token = sign(&good, &kid, SECRET);
    let mut parts: Vec<&str> = good_token.split('.').collect();
    let more = {
        let mut c = good.clone();
        c.access[0].actions.push("push".into());
        sign(&c, &kid, SECRET)
    };
    let more_payload = more.split('.').nth(1).unwrap().to_owned();
    parts[1] = &more_payload;
    let tampered = parts.join(".");
    for (what, t) in [
        ("wrong audience", sign(&aud, &kid, SECRET)),
        ("wrong issuer", sign(&iss, &kid, SECRET)),
        ("expired", sign(&late, &kid, SECRET)),
        ("not yet valid", sign(&early, &kid, SECRET)),
        ("wrong kid", sign(&good, "berth-000000000000", SECRET)),
        ("forged signature", forged),
        ("tampered payload", tampered),
    ] {
        let r = send(uri, Method::GET, &t).await;
        assert_eq!(r.status, 401, "{what}");
        expect_challenge(&r, Some("repository:pub/app:pull"), Some("invalid_token"));
    }
    // Within the clock skew (60 s) a token still works; past its expiry it does not.
    let mut skewed = good.clone();
    skewed.exp = now - 30;
    send(uri, Method::GET, &sign(&skewed, &kid, SECRET))
        .await
        .expect(200);
    g.env.advance(3600 + 61);
    send("/v2/team/app/tags/list", Method::GET, &all)
        .await
        .expect(401);
}

async fn send_open(reg: &Reg, method: &Method, uri: &str, body: &[u8]) -> http::StatusCode {
    send(reg, method, uri, None, body).await.status
}

#[tokio::test]
async fn external_issuer_es256() {
    let pair = Pair::new().await;
    let g = &pair.guarded;
    let now = g.env.now.load(std::sync::atomic::Ordering::SeqCst);
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&EXT_PRIVATE[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let key = p256::ecdsa::SigningKey::from_slice(&bytes).unwrap();
    let claims = Claims {
        iss: "elsewhere".into(),
        sub: "robot".into(),
        aud: Audience::Many(vec!["x".into(), "registry.test".into()]),
        exp: now + 60,
        nbf: None,
        iat: None,
        jti: None,
        access: vec![Access {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into()],
        }],
    };
    let t = format!("Bearer {}", jwt::sign_es256("ext", &key, &claims));
    let h = [HOST, ("authorization", t.as_str())];
    g.send(Method::GET, "/v2/team/app/manifests/v1", &h, Body::Empty)
        .await
        .expect(200);
    g.send(Method::POST, "/v2/team/app/blobs/uploads/", &h, Body::Empty)
        .await
        .expect_error(403, "DENIED");
    // The external key does not vouch for the built-in issuer's name, nor HS256.
    let mut ours = claims.clone();
    ours.iss = "berth".into();
    let t = format!("Bearer {}", jwt::sign_es256("ext", &key, &ours));
    g.send(
        Method::GET,
        "/v2/team/app/manifests/v1",
        &[("authorization", &t)],
        Body::Empty,
    )
    .await
    .expect(401);
    let t = format!(
        "Bearer {}",
        jwt::sign_hs256("ext", SECRET.as_bytes(), &claims)
    );
    g.send(
        Method::GET,
        "/v2/team/app/manifests/v1",
        &[("authorization", &t)],
        Body::Empty,
    )
    .await
    .expect(401);
}

#[tokio::test]
async fn mounts_need_pull_on_the_source() {
    let pair = Pair::new().await;
    let g = &pair.guarded;
    let dave = basic("dave", "dave-pw");
    let alice = basic("alice", "alice-pw");
    let layer = Digest::sha256(b"layer");
    let h = [("authorization", dave.as_str())];
    // Dave may not pull team/app: no mount, a plain upload session instead (202).
    let r = g
        .send(
            Method::POST,
            &format!("/v2/dave/x/blobs/uploads/?mount={layer}&from=team/app"),
            &h,
            Body::Empty,
        )
        .await;
    r.expect(202);
    // Nor from anywhere (no `from`), nor with the parameter's name percent-encoded.
    g.send(
        Method::POST,
        &format!("/v2/dave/x/blobs/uploads/?mount={layer}"),
        &h,
        Body::Empty,
    )
    .await
    .expect(202);
    g.send(
        Method::POST,
        &format!("/v2/dave/x/blobs/uploads/?m%6Funt={layer}&from=team/app"),
        &h,
        Body::Empty,
    )
    .await
    .expect(202);
    g.send(
        Method::HEAD,
        &format!("/v2/dave/x/blobs/{layer}"),
        &h,
        Body::Empty,
    )
    .await
    .expect(404);
    // Alice may pull team/app and push team/other: mounted (201).
    let h = [("authorization", alice.as_str())];
    g.send(
        Method::POST,
        &format!("/v2/team/other/blobs/uploads/?mount={layer}&from=team/app"),
        &h,
        Body::Empty,
    )
    .await
    .expect(201);
    // Dave mounts between his own repositories.
    push_image(g, "dave/src", &[("authorization", dave.as_str())]).await;
    let h = [("authorization", dave.as_str())];
    g.send(
        Method::POST,
        &format!("/v2/dave/y/blobs/uploads/?mount={layer}&from=dave/src"),
        &h,
        Body::Empty,
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn presets_and_basic_challenge() {
    // Basic only: the challenge names Basic, and Basic logins work.
    let (g, _) = guarded("challenge = \"basic\"\ndefault = \"anonymous-pull\"");
    let r = g
        .send(Method::POST, "/v2/any/blobs/uploads/", &[], Body::Empty)
        .await;
    r.expect_error(401, "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"registry.test\"")
    );
    let dave = basic("dave", "dave-pw");
    g.send(
        Method::POST,
        "/v2/any/blobs/uploads/",
        &[("authorization", &dave)],
        Body::Empty,
    )
    .await
    .expect(202);
    g.get("/v2/any/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    // The read-only user stays read-only under the preset.
    let ci = basic("ci", "ci-pw");
    g.send(
        Method::POST,
        "/v2/any/blobs/uploads/",
        &[("authorization", &ci)],
        Body::Empty,
    )
    .await
    .expect_error(403, "DENIED");
    // Everything authenticated: anonymous callers get nothing.
    let (g, _) = guarded("default = \"authenticated\"");
    g.get("/v2/any/tags/list").await.expect(401);
    g.send(
        Method::GET,
        "/v2/any/tags/list",
        &[("authorization", &dave)],
        Body::Empty,
    )
    .await
    .expect_error(404, "NAME_UNKNOWN");
    // Open: anyone does anything, the catalog included.
    let (g, _) = guarded("default = \"open\"");
    g.send(Method::POST, "/v2/any/blobs/uploads/", &[], Body::Empty)
        .await
        .expect(202);
    g.get("/v2/_catalog").await.expect(200);
}

#[test]
fn bad_policies() {
    let key = SECRET.as_bytes();
    assert!(Auth::new(&policy(""), b"short").is_err());
    for bad in [
        "challenge = \"digest\"",
        "token_path = \"/v2/token\"",
        "realm = \"a\\\"b\"",
        "default = \"maybe\"",
    ] {
        assert!(Auth::new(&policy(bad), key).is_err(), "{bad}");
    }
    assert!(Auth::new(&policy(""), key).is_ok());
}

/// GET `/v2/` as `user:pass` from `peer`, with an adapter's pre-check if given.
async fn login_from(
    reg: &Reg,
    user: &str,
    pass: &str,
    peer: Option<[u8; 4]>,
    verified: Option<berth::auth::Verified>,
) -> http::StatusCode {
    let mut req = http::Request::builder()
        .uri("/v2/")
        .header("authorization", basic(user, pass))
        .body(Body::Empty)
        .unwrap();
    if let Some(p) = peer {
        req.extensions_mut()
            .insert(berth::auth::Peer(std::net::IpAddr::from(p)));
    }
    if let Some(v) = verified {
        req.extensions_mut().insert(v);
    }
    reg.reg.handle(req).await.status()
}

#[tokio::test]
async fn failed_logins_are_throttled_per_user_and_per_address() {
    let (reg, _) = guarded("");
    let (a, b) = (Some([10, 0, 0, 1]), Some([10, 0, 0, 2]));
    // Per user: ten failures for alice from anywhere, then even her right password waits.
    for i in 0..10u8 {
        let from = Some([10, 1, 0, i]);
        assert_eq!(login_from(&reg, "alice", "wrong", from, None).await, 401);
    }
    assert_eq!(login_from(&reg, "alice", "alice-pw", b, None).await, 429);
    assert_eq!(login_from(&reg, "bob", "bob-pw", b, None).await, 200);
    // Per address: ten failures from `a` under any names, then `a` waits, `b` does not.
    for i in 0..10 {
        assert_eq!(
            login_from(&reg, &format!("nobody{i}"), "x", a, None).await,
            401
        );
    }
    assert_eq!(login_from(&reg, "dave", "dave-pw", a, None).await, 429);
    assert_eq!(login_from(&reg, "dave", "dave-pw", b, None).await, 200);
    // The token endpoint too.
    let token = reg
        .send(
            Method::GET,
            "/token?service=registry.test",
            &[("authorization", &basic("alice", "alice-pw"))],
            Body::Empty,
        )
        .await;
    token.expect_error(429, "TOOMANYREQUESTS");
    // A minute later, both may try again.
    reg.env.advance(61);
    assert_eq!(login_from(&reg, "alice", "alice-pw", b, None).await, 200);
    assert_eq!(login_from(&reg, "dave", "dave-pw", a, None).await, 200);
}

#[tokio::test]
async fn an_adapters_pre_check_counts_only_for_its_own_login() {
    let (reg, auth) = guarded("");
    let now = berth::Env::now(&reg.env);
    let headers = |u: &str, p: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", basic(u, p).parse().unwrap());
        h
    };
    let good = auth.verify_basic(&headers("alice", "alice-pw"), None, now);
    let bad = auth.verify_basic(&headers("alice", "nope"), None, now);
    assert!(good.is_some() && bad.is_some());
    assert!(auth.verify_basic(&headers("", ""), None, now).is_none());
    // A pre-check of another login is ignored: the password is hashed again.
    assert_eq!(
        login_from(&reg, "alice", "wrong", None, good.clone()).await,
        401
    );
    assert_eq!(login_from(&reg, "alice", "nope", None, bad).await, 401);
    assert_eq!(login_from(&reg, "alice", "alice-pw", None, good).await, 200);
    // Remembered now: nothing left to hash.
    assert!(
        auth.verify_basic(&headers("alice", "alice-pw"), None, now)
            .is_none()
    );
}

#[tokio::test]
async fn a_remembered_login_is_not_another_users() {
    // alice's password holds a NUL: `alice` + 0 + `b` + 0 + `c` once named both (alice, "b\0c")
    // and ("alice\0b", "c").
    let text = policy("").replacen(
        &format!("password = \"{}\"", hash("alice-pw")),
        &format!("password = \"{}\"", hash("b\0c")),
        1,
    );
    let auth = Arc::new(Auth::new(&text, SECRET.as_bytes()).unwrap());
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    let reg = Reg {
        reg: Registry::new(MemoryStore::new(), env.clone(), Config::default()).with_auth(auth),
        env,
    };
    assert_eq!(login_from(&reg, "alice", "b\0c", None, None).await, 200);
    assert_eq!(login_from(&reg, "alice\0b", "c", None, None).await, 401);
}

#[tokio::test]
async fn an_upload_belongs_to_whoever_started_it() {
    let text = format!(
        "{}\n[[rules]]\nrepos = [\"shared/*\"]\nwho = [\"alice\", \"dave\"]\nactions = [\"pull\", \"push\"]\n",
        policy("")
    );
    let auth = Arc::new(Auth::new(&text, SECRET.as_bytes()).unwrap());
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    let reg = Reg {
        reg: Registry::new(MemoryStore::new(), env.clone(), Config::default()).with_auth(auth),
        env,
    };
    let alice = basic("alice", "alice-pw");
    let ci = basic("dave", "dave-pw");
    let start = reg
        .send(
            Method::POST,
            "/v2/shared/app/blobs/uploads/",
            &[("authorization", &alice)],
            Body::Empty,
        )
        .await;
    start.expect(202);
    let location = start.header("location").unwrap().to_owned();
    // dave may push to shared/app too, but not into alice's upload.
    for m in [Method::PATCH, Method::GET] {
        reg.send(
            m,
            &location,
            &[("authorization", &ci)],
            Body::from(b"x".to_vec()),
        )
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
    let d = Digest::sha256(b"x");
    let sep = if location.contains('?') { '&' } else { '?' };
    reg.send(
        Method::PUT,
        &format!("{location}{sep}digest={d}"),
        &[("authorization", &ci)],
        Body::from(b"x".to_vec()),
    )
    .await
    .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.send(
        Method::PATCH,
        &location,
        &[("authorization", &alice)],
        Body::from(b"x".to_vec()),
    )
    .await
    .expect(202);
}
