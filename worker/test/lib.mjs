// Helpers for talking to a registry under test at $BERTH_URL (tests/worker.sh sets it).
import { createHash, randomBytes } from "node:crypto";
import assert from "node:assert/strict";

export const BASE = process.env.BERTH_URL ?? "http://127.0.0.1:8787";
export const MiB = 1 << 20;

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
export const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar";
export const OCI_EMPTY = "application/vnd.oci.empty.v1+json";

export const sha256 = (data) => "sha256:" + createHash("sha256").update(data).digest("hex");

/** A fresh repository name, so runs never see each other's data. */
export const repo = (what) => `test/${what}-${randomBytes(4).toString("hex")}`;

export function url(path) {
  return new URL(path, BASE).href;
}

export async function req(method, path, { body, headers = {}, expect } = {}) {
  const res = await fetch(url(path), { method, body, headers, duplex: "half" });
  const buf = Buffer.from(await res.arrayBuffer());
  if (expect !== undefined && res.status !== expect) {
    assert.fail(`${method} ${path}: ${res.status}, expected ${expect}: ${buf.toString().slice(0, 400)}`);
  }
  return { status: res.status, headers: res.headers, body: buf };
}

/** POST ?digest= with the whole blob: the single-request monolithic upload (end-4b). */
export async function pushBlob(name, data) {
  const digest = sha256(data);
  await req("POST", `/v2/${name}/blobs/uploads/?digest=${digest}`, {
    body: data,
    headers: { "content-type": "application/octet-stream" },
    expect: 201,
  });
  return digest;
}

/** POST for a session; its Location. */
export async function startUpload(name) {
  const r = await req("POST", `/v2/${name}/blobs/uploads/`, { expect: 202 });
  const loc = r.headers.get("location");
  assert.ok(loc, "POST gives a Location");
  return { loc, headers: r.headers };
}

export function withQuery(loc, q) {
  return loc + (loc.includes("?") ? "&" : "?") + q;
}

export async function patch(loc, data, offset) {
  const r = await req("PATCH", loc, {
    body: data,
    headers: {
      "content-type": "application/octet-stream",
      "content-range": `${offset}-${offset + data.length - 1}`,
      "content-length": String(data.length),
    },
    expect: 202,
  });
  assert.equal(r.headers.get("range"), `0-${offset + data.length - 1}`);
  return r.headers.get("location") ?? loc;
}

export async function pushManifest(name, ref, manifest, mediaType = OCI_MANIFEST) {
  const body = Buffer.from(JSON.stringify(manifest));
  await req("PUT", `/v2/${name}/manifests/${ref}`, {
    body,
    headers: { "content-type": mediaType },
    expect: 201,
  });
  return { digest: sha256(body), size: body.length, mediaType };
}

/** A small image: config and one layer pushed, the manifest returned (not pushed). */
export async function smallImage(name, salt = "") {
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", salt }));
  const layer = randomBytes(1000);
  const c = await pushBlob(name, config);
  const l = await pushBlob(name, layer);
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: c, size: config.length },
    layers: [{ mediaType: OCI_LAYER, digest: l, size: layer.length }],
  };
}

export const mbps = (bytes, ms) => (bytes / MiB / (ms / 1000)).toFixed(1);

/** The R2 keys under `prefix` (a route only test runs enable). */
export async function keys(prefix) {
  const r = await req("GET", `/_berth/keys?prefix=${encodeURIComponent(prefix)}`, { expect: 200 });
  return r.body.toString().split("\n").filter(Boolean);
}

/** The upload id in a Location. */
export const uploadId = (loc) => new URL(loc, BASE).pathname.split("/").pop();
