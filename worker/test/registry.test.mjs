// End-to-end checks of the Worker served locally (tests/worker.sh starts it and sets BERTH_URL).
// Sizes: BERTH_BIG_MIB (default 300) for the large chunked and monolithic blobs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";

import {
  MiB, OCI_EMPTY, OCI_MANIFEST, keys, mbps, patch, pushBlob, pushManifest, repo, req,
  sha256, smallImage, startUpload, uploadId, url, withQuery,
} from "./lib.mjs";

const BIG = Number(process.env.BERTH_BIG_MIB ?? 300) * MiB;

test("the storage contract suite passes on R2", async () => {
  const r = await req("GET", "/_berth/contract");
  assert.equal(r.status, 200, r.body.toString());
  assert.equal(r.body.toString().trim(), "ok");
});

test("/v2/ answers", async () => {
  const r = await req("GET", "/v2/", { expect: 200 });
  assert.equal(r.headers.get("docker-distribution-api-version"), "registry/2.0");
});

/** GET a blob, hashing it as it streams; its digest, length and the time it took. */
async function pull(name, digest) {
  const t = Date.now();
  const res = await fetch(url(`/v2/${name}/blobs/${digest}`));
  assert.equal(res.status, 200);
  const h = createHash("sha256");
  let n = 0;
  for await (const chunk of res.body) {
    h.update(chunk);
    n += chunk.length;
  }
  return { digest: "sha256:" + h.digest("hex"), n, ms: Date.now() - t, headers: res.headers };
}

test(`a ${BIG / MiB} MiB chunked upload with uneven chunks completes and reads back`, async (t) => {
  const name = repo("chunked");
  const data = randomBytes(BIG);
  const digest = sha256(data);
  const { loc: first, headers } = await startUpload(name);
  const min = Number(headers.get("oci-chunk-min-length"));
  assert.ok(min >= 5 * MiB, `OCI-Chunk-Min-Length advertised (${min})`);
  // Uneven on purpose: off a part's boundary by a byte or a few, a part and a half, two
  // parts. Only the last chunk may be shorter than the advertised minimum.
  const sizes = [min + 3, 2 * min - 1, min, min + 5 * MiB + 7, 2 * min, min + 1];
  let loc = first, offset = 0, i = 0, chunks = 0;
  const t0 = Date.now();
  while (offset < data.length) {
    const n = Math.min(sizes[i++ % sizes.length], data.length - offset);
    loc = await patch(loc, data.subarray(offset, offset + n), offset);
    offset += n;
    chunks++;
  }
  const status = await req("GET", loc, { expect: 204 });
  assert.equal(status.headers.get("range"), `0-${data.length - 1}`);
  await req("PUT", withQuery(loc, `digest=${digest}`), { expect: 201 });
  const pushMs = Date.now() - t0;
  t.diagnostic(`push ${BIG / MiB} MiB chunked (${chunks} PATCHes): ${mbps(BIG, pushMs)} MiB/s`);
  // Completed in place: a pointer under the digest, the multipart object, nothing pending.
  const id = uploadId(loc);
  assert.deepEqual(await keys(`blobs/${digest.replace(":", "/")}`), [`blobs/${digest.replace(":", "/")}`]);
  assert.deepEqual(await keys(`chunked/${id}`), [`chunked/${id}`]);
  assert.deepEqual(await keys(`upload/${id}/`), []);

  const head = await req("HEAD", `/v2/${name}/blobs/${digest}`, { expect: 200 });
  assert.equal(head.headers.get("content-length"), String(data.length));
  const got = await pull(name, digest);
  assert.equal(got.n, data.length);
  assert.equal(got.digest, digest);
  assert.equal(got.headers.get("cache-control"), "public, max-age=31536000, immutable");
  assert.equal(got.headers.get("etag"), `"${digest}"`);
  t.diagnostic(`pull ${BIG / MiB} MiB chunked: ${mbps(BIG, got.ms)} MiB/s`);

  // Ranges across a part boundary (parts are 16 MiB by default) and at the end.
  const ranges = [[16 * MiB - 5, 16 * MiB + 5], [0, 0], [data.length - 3, data.length - 1]];
  for (const [a, b] of ranges.filter(([, b]) => b < data.length)) {
    const r = await req("GET", `/v2/${name}/blobs/${digest}`, {
      headers: { range: `bytes=${a}-${b}` }, expect: 206,
    });
    assert.equal(r.headers.get("content-range"), `bytes ${a}-${b}/${data.length}`);
    assert.deepEqual(r.body, data.subarray(a, b + 1));
  }
});

test(`a ${BIG / MiB} MiB monolithic upload (POST, then PUT with every byte) reads back`, async (t) => {
  const name = repo("mono");
  const data = randomBytes(BIG);
  const digest = sha256(data);
  const t0 = Date.now();
  const { loc } = await startUpload(name);
  await req("PUT", withQuery(loc, `digest=${digest}`), {
    body: data, headers: { "content-type": "application/octet-stream" }, expect: 201,
  });
  t.diagnostic(`push ${BIG / MiB} MiB monolithic: ${mbps(BIG, Date.now() - t0)} MiB/s`);
  const got = await pull(name, digest);
  assert.equal(got.digest, digest);
  t.diagnostic(`pull ${BIG / MiB} MiB monolithic: ${mbps(BIG, got.ms)} MiB/s`);
  // The session is gone.
  await req("GET", loc, { expect: 404 });
});

test("a single-request monolithic upload (POST ?digest=) reads back", async () => {
  const name = repo("single");
  const data = randomBytes(3 * MiB + 17);
  const digest = await pushBlob(name, data);
  const r = await req("GET", `/v2/${name}/blobs/${digest}`, { expect: 200 });
  assert.deepEqual(r.body, data);
  assert.equal(r.headers.get("docker-content-digest"), digest);
  // Pushing it again is fine.
  await pushBlob(name, data);
});

test("a digest mismatch leaves no blob behind", async () => {
  const name = repo("mismatch");
  const data = randomBytes(2 * MiB);
  const claimed = sha256(Buffer.from("something else"));
  for (const how of ["single", "put", "chunked"]) {
    let r;
    if (how === "single") {
      r = await req("POST", `/v2/${name}/blobs/uploads/?digest=${claimed}`, { body: data });
    } else {
      const { loc } = await startUpload(name);
      if (how === "chunked") {
        const next = await patch(loc, data, 0);
        r = await req("PUT", withQuery(next, `digest=${claimed}`));
      } else {
        r = await req("PUT", withQuery(loc, `digest=${claimed}`), { body: data });
      }
    }
    assert.equal(r.status, 400, `${how}: ${r.body}`);
    assert.equal(JSON.parse(r.body).errors[0].code, "DIGEST_INVALID", how);
    await req("HEAD", `/v2/${name}/blobs/${claimed}`, { expect: 404 });
    assert.deepEqual(await keys(`blobs/${claimed.replace(":", "/")}`), [], how);
    assert.deepEqual(await keys(`blobs/${sha256(data).replace(":", "/")}`), [], how);
  }
});

test("a chunk cut short leaves the upload as it was; the retry completes it", async () => {
  const name = repo("cut");
  const { loc, headers } = await startUpload(name);
  // The first chunk at least the advertised minimum, so that more may follow it.
  const first = Number(headers.get("oci-chunk-min-length")) + MiB;
  const data = randomBytes(first + 15 * MiB);
  let next = await patch(loc, data.subarray(0, first), 0);
  // Announce 15 MiB, send 8 and hang up.
  await new Promise((resolve) => {
    const r = http.request(url(next), {
      method: "PATCH",
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(15 * MiB),
        "content-range": `${first}-${first + 15 * MiB - 1}`,
      },
    });
    r.on("error", () => resolve());
    r.on("response", (res) => { res.resume(); res.on("end", resolve); });
    r.write(data.subarray(first, first + 8 * MiB), () => setTimeout(() => { r.destroy(); resolve(); }, 300));
  });
  // Give the Worker a moment to notice.
  await new Promise((r) => setTimeout(r, 500));
  const status = await req("GET", next, { expect: 204 });
  assert.equal(status.headers.get("range"), `0-${first - 1}`);
  // The rest as a stream of unknown length (chunked transfer encoding).
  const rest = data.subarray(first);
  const res = await fetch(url(next), {
    method: "PATCH",
    duplex: "half",
    headers: { "content-type": "application/octet-stream" },
    body: new ReadableStream({
      start(c) {
        for (let at = 0; at < rest.length; at += 3 * MiB) c.enqueue(rest.subarray(at, at + 3 * MiB));
        c.close();
      },
    }),
  });
  assert.equal(res.status, 202, await res.text());
  next = res.headers.get("location") ?? next;
  const digest = sha256(data);
  await req("PUT", withQuery(next, `digest=${digest}`), { expect: 201 });
  const got = await pull(name, digest);
  assert.equal(got.digest, digest);
  assert.deepEqual(await keys(`upload/${uploadId(next)}/`), [], "no pending objects left");
});

// tests/worker.sh serves this Worker with BERTH_UPLOAD_EXPIRY = BERTH_TEST_UPLOAD_EXPIRY.
const EXPIRY = Number(process.env.BERTH_TEST_UPLOAD_EXPIRY ?? 0);

test("the scheduled purge drops an expired upload with its objects", { skip: !EXPIRY }, async () => {
  const name = repo("purge");
  const { loc } = await startUpload(name);
  await patch(loc, Buffer.from("still here"), 0);
  const id = uploadId(loc);
  const left = async () => [
    ...await keys(`upload/${id}/`),
    ...await keys(`meta/uploads/${id}`),
    ...await keys(`meta/repos/${name}/_uploads/${id}`),
  ];
  assert.ok((await left()).length >= 2, "a session and a pending chunk are stored");
  const cron = () => req("GET", "/cdn-cgi/local/scheduled", { expect: 200 });
  // Not idle long enough to expire: a run leaves it.
  await cron();
  await req("GET", loc, { expect: 204 });
  await new Promise((r) => setTimeout(r, (EXPIRY + 2) * 1000));
  // A run may end before the garbage collection pass reaches the uploads: run it again.
  for (let i = 0; i < 20 && (await left()).length; i++) await cron();
  assert.deepEqual(await left(), [], "the session and its pending objects are gone");
  await req("GET", loc, { expect: 404 });
});

test("chunks shorter than OCI-Chunk-Min-Length are bounded (16 per upload)", async () => {
  const name = repo("short");
  const { loc } = await startUpload(name);
  let next = loc;
  for (let i = 0; i < 16; i++) next = await patch(next, Buffer.from("ab"), 2 * i);
  const r = await req("PATCH", next, {
    body: Buffer.from("more"),
    headers: { "content-type": "application/octet-stream", "content-range": "32-35" },
  });
  assert.equal(r.status, 400, r.body.toString());
  assert.equal(JSON.parse(r.body).errors[0].code, "BLOB_UPLOAD_INVALID");
  // Nothing of the refused chunk was taken: the upload closes with what it holds.
  await req("PUT", withQuery(next, `digest=${sha256(Buffer.from("ab".repeat(16)))}`), { expect: 201 });
});

test("chunks out of order are refused with 416", async () => {
  const name = repo("order");
  const { loc } = await startUpload(name);
  const next = await patch(loc, Buffer.from("hello"), 0);
  const r = await req("PATCH", next, {
    body: Buffer.from("world"),
    headers: { "content-range": "7-11", "content-length": "5" },
  });
  assert.equal(r.status, 416);
  assert.equal(r.headers.get("range"), "0-4");
  await req("DELETE", next, { expect: 204 });
  await req("GET", next, { expect: 404 });
});

test("Range GETs: 206 with Content-Range, 416 past the end", async () => {
  const name = repo("range");
  const data = randomBytes(100_000);
  const digest = await pushBlob(name, data);
  const path = `/v2/${name}/blobs/${digest}`;
  const cases = [
    ["bytes=0-9", 0, 9],
    ["bytes=99990-", 99990, 99999],
    ["bytes=-5", 99995, 99999],
    ["bytes=50000-200000", 50000, 99999],
  ];
  for (const [range, a, b] of cases) {
    const r = await req("GET", path, { headers: { range }, expect: 206 });
    assert.equal(r.headers.get("content-range"), `bytes ${a}-${b}/100000`, range);
    assert.equal(r.headers.get("content-length"), String(b - a + 1), range);
    assert.deepEqual(r.body, data.subarray(a, b + 1), range);
  }
  const r = await req("GET", path, { headers: { range: "bytes=100000-" } });
  assert.equal(r.status, 416);
  assert.equal(r.headers.get("content-range"), "bytes */100000");
  const h = await req("HEAD", path, { headers: { range: "bytes=0-99" }, expect: 206 });
  assert.equal(h.headers.get("content-length"), "100");
});

test("tags list pages with n, last and Link", async () => {
  const name = repo("tags");
  const manifest = await smallImage(name);
  const tags = ["v1", "v10", "v2", "latest", "a", "b-c", "z"];
  for (const tag of tags) await pushManifest(name, tag, manifest);
  const want = [...tags].sort();
  const seen = [];
  let path = `/v2/${name}/tags/list?n=3`;
  for (let pages = 0; path; pages++) {
    assert.ok(pages < 5, "paging ends");
    const r = await req("GET", path, { expect: 200 });
    const body = JSON.parse(r.body);
    assert.equal(body.name, name);
    assert.ok(body.tags.length <= 3);
    seen.push(...body.tags);
    const link = r.headers.get("link");
    path = link ? link.match(/^<([^>]+)>;\s*rel="next"$/)[1] : null;
    if (seen.length < want.length) assert.ok(path, `a Link after ${seen}`);
  }
  assert.deepEqual(seen, want);
  const after = JSON.parse((await req("GET", `/v2/${name}/tags/list?last=latest`, { expect: 200 })).body);
  assert.deepEqual(after.tags, want.filter((t) => t > "latest"));
});

test("referrers list artifacts by subject, filtered by artifactType", async () => {
  const name = repo("refs");
  const subject = await pushManifest(name, "v1", await smallImage(name, "subject"));
  const empty = await pushBlob(name, Buffer.from("{}"));
  const sbom = await pushBlob(name, Buffer.from("an sbom"));
  const artifact = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: "application/vnd.example.sbom",
    config: { mediaType: OCI_EMPTY, digest: empty, size: 2 },
    layers: [{ mediaType: "text/plain", digest: sbom, size: 7 }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: { "org.example": "yes" },
  };
  const body = Buffer.from(JSON.stringify(artifact));
  const r = await req("PUT", `/v2/${name}/manifests/${sha256(body)}`, {
    body, headers: { "content-type": OCI_MANIFEST }, expect: 201,
  });
  assert.equal(r.headers.get("oci-subject"), subject.digest);
  const list = await req("GET", `/v2/${name}/referrers/${subject.digest}`, { expect: 200 });
  const index = JSON.parse(list.body);
  assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0].digest, sha256(body));
  assert.equal(index.manifests[0].artifactType, "application/vnd.example.sbom");
  assert.equal(index.manifests[0].annotations["org.example"], "yes");
  const none = await req("GET", `/v2/${name}/referrers/${subject.digest}?artifactType=x/y`, { expect: 200 });
  assert.equal(JSON.parse(none.body).manifests.length, 0);
});

test("manifests by tag and digest, and deletes", async () => {
  const name = repo("manifests");
  const m = await pushManifest(name, "v1", await smallImage(name));
  const byTag = await req("GET", `/v2/${name}/manifests/v1`, { expect: 200 });
  assert.equal(byTag.headers.get("content-type"), OCI_MANIFEST);
  assert.equal(byTag.headers.get("docker-content-digest"), m.digest);
  assert.equal(sha256(byTag.body), m.digest);
  await req("HEAD", `/v2/${name}/manifests/${m.digest}`, { expect: 200 });
  await req("DELETE", `/v2/${name}/manifests/${m.digest}`, { expect: 202 });
  await req("GET", `/v2/${name}/manifests/${m.digest}`, { expect: 404 });
  const blob = await pushBlob(name, Buffer.from("to delete"));
  await req("DELETE", `/v2/${name}/blobs/${blob}`, { expect: 202 });
  await req("HEAD", `/v2/${name}/blobs/${blob}`, { expect: 404 });
});

test("a blob is mounted from another repository without its bytes", async () => {
  const from = repo("mount-from");
  const to = repo("mount-to");
  const digest = await pushBlob(from, randomBytes(4096));
  const r = await req("POST", `/v2/${to}/blobs/uploads/?mount=${digest}&from=${from}`, { expect: 201 });
  assert.equal(r.headers.get("docker-content-digest"), digest);
  await req("HEAD", `/v2/${to}/blobs/${digest}`, { expect: 200 });
});
