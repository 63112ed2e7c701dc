// Push one large blob in chunks, pull it back, compare digests. Not part of the default run
// (it takes a while): a check that blobs past R2's 5 GiB single-put ceiling work.
//
//   node worker/test/large-blob.mjs URL GIB [CHUNK_MIB [RANGE_MIB]]
//   node worker/test/large-blob.mjs URL --pull NAME@DIGEST [RANGE_MIB]
//
// The bytes are generated (AES-CTR keystream) and hashed on the fly, never held whole. With
// RANGE_MIB the pull is a series of Range GETs of that size: wrangler dev's R2 simulation reads
// a multipart object whole into memory before it answers, which a 10 GiB blob makes slow and
// large (Cloudflare's R2 streams it).
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import http from "node:http";

const MiB = 1 << 20;
const [base, what, ...rest] = process.argv.slice(2);
if (!base || !what) {
  console.error("usage: large-blob.mjs URL GIB [CHUNK_MIB [RANGE_MIB]] | URL --pull NAME@DIGEST [RANGE_MIB]");
  process.exit(2);
}
const at = (path) => new URL(path, base);

/** GET with no timeouts (node's fetch gives up on headers after 300 s). */
function get(path, headers = {}) {
  return new Promise((resolve, reject) => {
    http.get(at(path), { headers }, resolve).on("error", reject);
  });
}

/** One PATCH. A dropped connection is not fatal: ask the upload's status (end-13), and send
 *  the chunk again unless it landed, as a careful client would. */
async function patch(loc, data, offset) {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(at(loc), {
        method: "PATCH",
        body: data,
        headers: {
          "content-type": "application/octet-stream",
          "content-range": `${offset}-${offset + data.length - 1}`,
        },
      });
      if (res.status !== 202) throw new Error(`PATCH at ${offset}: ${res.status} ${await res.text()}`);
      return res;
    } catch (e) {
      if (attempt >= 5 || !(e instanceof TypeError)) throw e;
      const status = await fetch(at(loc));
      const end = Number((status.headers.get("range") ?? "0-").split("-")[1]) + 1;
      console.log(`# PATCH at ${offset} failed (${e.cause?.code ?? e.message}); the upload is at ${end}`);
      if (status.status === 204 && end === offset + data.length) return status;
      if (status.status !== 204 || end !== offset) throw e;
    }
  }
}

async function push(total, chunk) {
  const name = `test/large-${randomBytes(4).toString("hex")}`;
  const cipher = createCipheriv("aes-128-ctr", randomBytes(16), Buffer.alloc(16));
  const zeros = Buffer.alloc(chunk);
  const hash = createHash("sha256");
  const post = await fetch(at(`/v2/${name}/blobs/uploads/`), { method: "POST" });
  if (post.status !== 202) throw new Error(`POST ${post.status}`);
  let loc = post.headers.get("location");
  const t0 = Date.now();
  for (let offset = 0; offset < total; ) {
    const n = Math.min(chunk, total - offset);
    const data = cipher.update(zeros.subarray(0, n));
    hash.update(data);
    const res = await patch(loc, data, offset);
    loc = res.headers.get("location") ?? loc;
    offset += n;
    if (offset % (1024 * MiB) < chunk || offset === total) {
      const s = (Date.now() - t0) / 1000;
      console.log(`# ${(offset / MiB) | 0} MiB in ${s.toFixed(0)} s (${(offset / MiB / s).toFixed(1)} MiB/s)`);
    }
  }
  const digest = "sha256:" + hash.digest("hex");
  const put = await fetch(at(loc + (loc.includes("?") ? "&" : "?") + `digest=${digest}`), { method: "PUT" });
  if (put.status !== 201) throw new Error(`PUT ${put.status} ${await put.text()}`);
  const s = (Date.now() - t0) / 1000;
  console.log(`push ${total / MiB} MiB in ${chunk / MiB} MiB chunks: ${s.toFixed(0)} s, ${(total / MiB / s).toFixed(1)} MiB/s`);
  console.log(`pushed ${name}@${digest}`);
  return { name, digest };
}

async function pull(name, digest, range) {
  const path = `/v2/${name}/blobs/${digest}`;
  const head = await fetch(at(path), { method: "HEAD" });
  if (head.status !== 200) throw new Error(`HEAD ${head.status}`);
  const size = Number(head.headers.get("content-length"));
  const hash = createHash("sha256");
  const t0 = Date.now();
  let n = 0;
  const step = range || size;
  for (let from = 0; from < size || (size === 0 && from === 0); from += step) {
    const to = Math.min(from + step, size) - 1;
    const res = await get(path, range ? { range: `bytes=${from}-${to}` } : {});
    if (res.statusCode !== (range ? 206 : 200)) throw new Error(`GET ${from}: ${res.statusCode}`);
    for await (const c of res) {
      hash.update(c);
      n += c.length;
    }
    if (size === 0) break;
  }
  const s = (Date.now() - t0) / 1000;
  const ok = n === size && "sha256:" + hash.digest("hex") === digest;
  const how = range ? `in ${range / MiB} MiB ranges` : "in one GET";
  console.log(`pull ${n / MiB} MiB ${how}: ${s.toFixed(0)} s, ${(n / MiB / s).toFixed(1)} MiB/s; digest ${ok ? "matches" : "DIFFERS"}`);
  return ok;
}

let name, digest, range;
if (what === "--pull") {
  [name, digest] = rest[0].split("@");
  range = Number(rest[1] ?? 0) * MiB;
} else {
  const total = Math.round(Number(what) * 1024) * MiB;
  ({ name, digest } = await push(total, Number(rest[0] ?? 64) * MiB));
  range = Number(rest[1] ?? 0) * MiB;
}
process.exit((await pull(name, digest, range)) ? 0 : 1);
