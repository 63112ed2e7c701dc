// The pull-through cache on the Worker (tests/worker.sh, section "mirror"): the deployed build
// mirrors a public `berth serve` (the default upstream, at $UPSTREAM_PUBLIC) with a 2 s tag TTL,
// and a private one behind the token flow as `private.test` under the prefix `priv/`, with
// credentials from BERTH_UPSTREAM_AUTH. tests/worker.sh pushed tests/e2e/mkimages.py's images
// ($MIRROR_IMAGES) to the public upstream as mirror/multi:v1 and mirror/multiarch:v1, and
// `multi` and the Docker image to the private one as team/app:v1 and team/docker:v1. Each upstream logs one `berth::request:` line per
// request it answers, which is how these tests see what the mirror asked. A third upstream,
// `redirect.test` under `redir/` (redirector.mjs), wants Basic credentials and redirects every
// request to another origin that serves the public upstream's content.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { BASE, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, req, sha256 } from "../test/lib.mjs";

const run = promisify(execFile);
const WORK = process.env.MIRROR_WORK;
const IMAGES = process.env.MIRROR_IMAGES;
const UP = process.env.UPSTREAM_PUBLIC;
const UP_LOG = process.env.UPSTREAM_PUBLIC_LOG;
const UP_PGID = Number(process.env.UPSTREAM_PUBLIC_PGID);
const PRIVATE_LOG = process.env.UPSTREAM_PRIVATE_LOG;
const REDIRECTOR_LOG = process.env.REDIRECTOR_LOG;
const WORKER = new URL(BASE).host;
const expected = JSON.parse(readFileSync(join(IMAGES, "expected.json"), "utf8"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The upstream's request lines so far (after a moment, for its log to be written). */
async function upstreamLog(file = UP_LOG) {
  await sleep(300);
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.includes("berth::request:"))
    .map((l) => l.slice(l.indexOf("berth::request:") + 16));
}

/** skopeo, with an empty auth file and cache of its own (tests/worker.sh made the files). */
async function skopeo(...args) {
  const home = join(WORK, "mirror-skopeo");
  const env = {
    ...process.env,
    HOME: home,
    REGISTRY_AUTH_FILE: join(home, "auth.json"),
    CONTAINERS_REGISTRIES_CONF: join(home, "registries.conf"),
    XDG_DATA_HOME: mkdtempSync(join(home, "cache.")),
  };
  try {
    return await run("skopeo", ["--policy", join(home, "policy.json"), ...args], {
      env,
      timeout: 120_000,
    });
  } catch (e) {
    assert.fail(`skopeo ${args.join(" ")}: ${String(e.stderr || e.message).slice(-600)}`);
  }
}

/** Pull NAME:TAG from the Worker into a fresh OCI layout; its manifest digest and blob files. */
async function pullThrough(name, tag) {
  const dir = mkdtempSync(join(WORK, "pulled."));
  await skopeo(
    "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
    `docker://${WORKER}/${name}:${tag}`, `oci:${dir}:${tag}`,
  );
  const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
  const blobs = readdirSync(join(dir, "blobs", "sha256")).map((h) => `sha256:${h}`);
  for (const d of blobs) {
    const bytes = readFileSync(join(dir, "blobs", "sha256", d.slice(7)));
    assert.equal(sha256(bytes), d, `${d} holds the bytes it names`);
  }
  return { digest: index.manifests[0].digest, blobs };
}

/** Every digest an image reaches: its manifest(s) and blobs. */
const reach = (e) => [e.digest, ...e.children.map((c) => c.digest ?? c), ...e.blobs];

/** Push a small image straight to the public upstream; its manifest's digest. */
async function pushUpstream(name, tag, salt) {
  const up = (p) => `http://${UP}${p}`;
  const blob = async (data) => {
    const d = sha256(data);
    const r = await fetch(up(`/v2/${name}/blobs/uploads/?digest=${d}`), {
      method: "POST",
      body: data,
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(r.status, 201, await r.text());
    return { digest: d, size: data.length };
  };
  const config = await blob(Buffer.from(JSON.stringify({ salt })));
  const layer = await blob(Buffer.from(`layer ${salt}`));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, ...config },
    layers: [{ mediaType: OCI_LAYER, ...layer }],
  }));
  const r = await fetch(up(`/v2/${name}/manifests/${tag}`), {
    method: "PUT",
    body: manifest,
    headers: { "content-type": OCI_MANIFEST },
  });
  assert.equal(r.status, 201, await r.text());
  return sha256(manifest);
}

test("an image index pulls through byte-identical: every manifest and blob digest", async () => {
  const want = expected.multiarch;
  const got = await pullThrough("mirror/multiarch", "v1");
  assert.equal(got.digest, want.digest);
  assert.deepEqual(got.blobs.sort(), reach(want).sort());
  // The Worker's own answers name the same digests, and their bytes hash to them.
  for (const d of [...want.children.map((c) => c.digest ?? c), ...want.blobs]) {
    const kind = want.blobs.includes(d) ? "blobs" : "manifests";
    const r = await req("GET", `/v2/mirror/multiarch/${kind}/${d}`, { expect: 200 });
    assert.equal(sha256(r.body), d);
    assert.equal(r.headers.get("docker-content-digest"), d);
  }
});

test("an image with a 2 MiB layer pulls through byte-identical", async () => {
  const want = expected.multi;
  const got = await pullThrough("mirror/multi", "v1");
  assert.equal(got.digest, want.digest);
  assert.deepEqual(got.blobs.sort(), reach(want).sort());
});

test("once cached, pulls by digest ask the upstream nothing", async () => {
  const before = (await upstreamLog()).length;
  const want = expected.multi;
  for (const d of want.blobs) {
    const r = await req("GET", `/v2/mirror/multi/blobs/${d}`, { expect: 200 });
    assert.equal(sha256(r.body), d);
    await req("HEAD", `/v2/mirror/multi/blobs/${d}`, { expect: 200 });
  }
  const m = await req("GET", `/v2/mirror/multi/manifests/${want.digest}`, {
    headers: { accept: want.mediaType },
    expect: 200,
  });
  assert.equal(sha256(m.body), want.digest);
  const after = await upstreamLog();
  assert.deepEqual(after.slice(before), [], "no upstream requests");
});

test("?ns= names the upstream: the answer says OCI-Namespace; an unknown ns does not", async () => {
  const d = expected.multi.digest;
  const named = await req("GET", `/v2/mirror/multi/manifests/${d}?ns=${UP}`, { expect: 200 });
  assert.equal(named.headers.get("oci-namespace"), UP);
  assert.equal(sha256(named.body), d);
  const other = await req("GET", `/v2/mirror/multi/manifests/${d}?ns=quay.io`, { expect: 200 });
  assert.equal(other.headers.get("oci-namespace"), null);
  const plain = await req("GET", `/v2/mirror/multi/manifests/${d}`, { expect: 200 });
  assert.equal(plain.headers.get("oci-namespace"), null);
});

test("the private upstream pulls through with the token flow and BERTH_UPSTREAM_AUTH", async () => {
  const before = (await upstreamLog(PRIVATE_LOG)).length;
  const want = expected.multi;
  const got = await pullThrough("priv/team/app", "v1");
  assert.equal(got.digest, want.digest);
  assert.deepEqual(got.blobs.sort(), reach(want).sort());
  const log = (await upstreamLog(PRIVATE_LOG)).slice(before);
  const text = log.join("\n");
  assert.match(text, /^(HEAD|GET) \/v2\/team\/app\/manifests\/v1 401 /m, "challenged");
  assert.match(text, /^GET \/token 200 /m, "a token from the realm");
  // The blobs are in the store already (the public upstream's mirror/multi has them): the
  // upstream is asked only whether team/app has them too, with the token.
  assert.match(text, /^(HEAD|GET) \/v2\/team\/app\/blobs\/\S+ 200 /m, "blobs with the token");
  // One token for the repository, kept: nothing else was challenged.
  const challenged = log.filter((l) => / 401 /.test(l));
  assert.equal(challenged.length, 1, text);
});

test("a Docker schema 2 image pulls through the private upstream, every blob fetched with a token", async () => {
  const before = (await upstreamLog(PRIVATE_LOG)).length;
  const want = expected.docker;
  const dir = mkdtempSync(join(WORK, "pulled."));
  await skopeo(
    "copy", "--preserve-digests", "--src-tls-verify=false",
    `docker://${WORKER}/priv/team/docker:v1`, `dir:${dir}`,
  );
  const manifest = readFileSync(join(dir, "manifest.json"));
  assert.equal(sha256(manifest), want.digest);
  for (const d of want.blobs) {
    assert.equal(sha256(readFileSync(join(dir, d.slice(7)))), d);
  }
  const log = (await upstreamLog(PRIVATE_LOG)).slice(before);
  for (const d of want.blobs) {
    assert.ok(log.some((l) => l.startsWith(`GET /v2/team/docker/blobs/${d} 200 `)), `${d} fetched`);
  }
  assert.ok(log.filter((l) => / 401 /.test(l)).length <= 1, log.join("\n"));
});

test("a Basic login and a redirect to another origin: followed, without the credentials", async () => {
  const name = `mirror/redirected-${Date.now()}`;
  const digest = await pushUpstream(name, "v1", "redirected");
  const m = await req("GET", `/v2/redir/${name}/manifests/v1`, {
    headers: { accept: OCI_MANIFEST },
    expect: 200,
  });
  assert.equal(sha256(m.body), digest);
  const manifest = JSON.parse(m.body.toString());
  for (const { digest: d } of [manifest.config, ...manifest.layers]) {
    const r = await req("GET", `/v2/redir/${name}/blobs/${d}`, { expect: 200 });
    assert.equal(sha256(r.body), d);
  }
  const log = readFileSync(REDIRECTOR_LOG, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const front = log.filter((l) => l.side === "front" && l.path.includes(name));
  const back = log.filter((l) => l.side === "back" && l.path.includes(name));
  const text = JSON.stringify(log, null, 1);
  assert.ok(front.some((l) => l.auth === "Basic"), `logged in with Basic: ${text}`);
  assert.equal(front.filter((l) => l.auth === null).length, 1, `one challenge: ${text}`);
  assert.ok(back.some((l) => l.method === "GET" && l.path.includes("/blobs/")), text);
  assert.deepEqual(back.filter((l) => l.auth !== null), [], "no credentials to the other origin");
});

test("a tag moved upstream is seen after the TTL (2 s) and not before", async () => {
  const name = `mirror/moving-${Date.now()}`;
  const first = await pushUpstream(name, "latest", "one");
  const a = await req("GET", `/v2/${name}/manifests/latest`, {
    headers: { accept: OCI_MANIFEST },
    expect: 200,
  });
  assert.equal(a.headers.get("docker-content-digest"), first);
  const second = await pushUpstream(name, "latest", "two");
  const stale = await req("GET", `/v2/${name}/manifests/latest`, {
    headers: { accept: OCI_MANIFEST },
    expect: 200,
  });
  assert.equal(stale.headers.get("docker-content-digest"), first, "within the TTL: cached");
  await sleep(2600);
  const fresh = await req("GET", `/v2/${name}/manifests/latest`, {
    headers: { accept: OCI_MANIFEST },
    expect: 200,
  });
  assert.equal(fresh.headers.get("docker-content-digest"), second, "after the TTL: moved");
  assert.equal(sha256(fresh.body), second);
});

test("a push to a mirrored repository is refused with UNSUPPORTED, and never reaches upstream", async () => {
  const before = (await upstreamLog()).length;
  const post = await req("POST", "/v2/mirror/multi/blobs/uploads/");
  assert.equal(JSON.parse(post.body.toString()).errors[0].code, "UNSUPPORTED", String(post.status));
  const put = await req("PUT", "/v2/mirror/multi/manifests/pushed", {
    body: Buffer.from("{}"),
    headers: { "content-type": OCI_MANIFEST },
  });
  assert.equal(JSON.parse(put.body.toString()).errors[0].code, "UNSUPPORTED", String(put.status));
  assert.deepEqual((await upstreamLog()).slice(before), []);
});

test("with the upstream stopped, cached content still pulls (a stale tag with a Warning)", async () => {
  process.kill(-UP_PGID, "SIGTERM");
  for (let i = 0; i < 50; i++) {
    const up = await fetch(`http://${UP}/v2/`).then(() => true, () => false);
    if (!up) break;
    await sleep(100);
  }
  await sleep(2100); // past the TTL: the tag must be revalidated, and cannot be
  const tag = await req("GET", "/v2/mirror/multiarch/manifests/v1", {
    headers: { accept: expected.multiarch.mediaType },
    expect: 200,
  });
  assert.match(tag.headers.get("warning") ?? "", /^299 /);
  const got = await pullThrough("mirror/multiarch", "v1");
  assert.equal(got.digest, expected.multiarch.digest);
  assert.deepEqual(got.blobs.sort(), reach(expected.multiarch).sort());
  // What was never fetched cannot be served: a gateway error, not a hang or a 404.
  const missing = await req("GET", "/v2/mirror/never/manifests/v1");
  assert.equal(missing.status, 502, missing.body.toString());
});
