// Garbage collection and the content policy on the Worker, against an instance of its own
// (tests/worker.sh serves the test build with BERTH_GC_GRACE=4, BERTH_GC_INTERVAL=1 and the
// policy in policy.toml here), so that passes may take anything unreferenced in its bucket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { keys, pushBlob, pushManifest, repo, req, smallImage, sha256 } from "../test/lib.mjs";

const GRACE_MS = 4000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const blobKey = (d) => `blobs/${d.replace(":", "/")}`;

/** Trigger the cron until `done()` holds (a pass may take several invocations). */
async function cronUntil(done, what) {
  for (let i = 0; i < 30; i++) {
    const r = await req("GET", "/cdn-cgi/local/scheduled");
    assert.equal(r.status, 200, r.body.toString());
    if (await done()) return;
    await sleep(1100);
  }
  assert.fail(`the cron never got to: ${what}`);
}

test("the garbage collection contract passes on R2", async () => {
  const r = await req("GET", "/_berth/contract-gc");
  assert.equal(r.status, 200, r.body.toString());
});

test("cron passes delete unreferenced blobs past the grace and keep tagged images", async () => {
  const name = repo("gc");
  const image = await smallImage(name, "kept");
  const m = await pushManifest(name, "v1", image);
  const loose = await pushBlob(name, Buffer.from("loose " + name));
  await sleep(GRACE_MS + 1500);
  await cronUntil(async () => (await keys(blobKey(loose))).length === 0, "delete the loose blob");
  await req("HEAD", `/v2/${name}/blobs/${loose}`, { expect: 404 });
  await req("GET", `/v2/${name}/manifests/v1`, { expect: 200 });
  for (const d of [image.config.digest, image.layers[0].digest, m.digest]) {
    assert.deepEqual(await keys(blobKey(d)), [blobKey(d)], `${d} stays`);
    await req("GET", `/v2/${name}/blobs/${d}`, { expect: 200 });
  }
});

test("an immutable tag is not moved or deleted, with a DENIED error that says why", async () => {
  const name = repo("imm").replace("test/", "imm/");
  const first = await pushManifest(name, "v1", await smallImage(name, "one"));
  const other = await smallImage(name, "two");
  const r = await req("PUT", `/v2/${name}/manifests/v1`, {
    body: Buffer.from(JSON.stringify(other)),
    headers: { "content-type": other.mediaType },
    expect: 403,
  });
  const err = JSON.parse(r.body.toString()).errors[0];
  assert.equal(err.code, "DENIED");
  assert.match(err.message, /immutable/);
  assert.ok(err.message.includes(first.digest), err.message);
  await req("DELETE", `/v2/${name}/manifests/v1`, { expect: 403 });
  const got = await req("GET", `/v2/${name}/manifests/v1`, { expect: 200 });
  assert.equal(got.headers.get("docker-content-digest"), first.digest);
});

test("a push past a quota is refused before the bytes are stored", async () => {
  const name = repo("q").replace("test/", "quota/");
  await pushBlob(name, Buffer.alloc(600, 1));
  const big = Buffer.alloc(600, 2);
  const d = sha256(big);
  const r = await req("POST", `/v2/${name}/blobs/uploads/?digest=${d}`, {
    body: big,
    headers: { "content-type": "application/octet-stream" },
    expect: 403,
  });
  const err = JSON.parse(r.body.toString()).errors[0];
  assert.equal(err.code, "DENIED");
  assert.match(err.message, /quota/);
  assert.deepEqual(await keys(blobKey(d)), [], "nothing stored");
});

test("retention keeps the newest tag and drops the older on a cron pass", async () => {
  const name = repo("ret").replace("test/", "ret/");
  await pushManifest(name, "old", await smallImage(name, "old"));
  await sleep(1100);
  await pushManifest(name, "new", await smallImage(name, "new"));
  await cronUntil(async () => {
    const r = await req("GET", `/v2/${name}/tags/list`, { expect: 200 });
    return JSON.parse(r.body.toString()).tags.join() === "new";
  }, "drop the older tag");
  await req("GET", `/v2/${name}/manifests/old`, { expect: 404 });
  await req("GET", `/v2/${name}/manifests/new`, { expect: 200 });
});
