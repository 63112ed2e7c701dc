#!/usr/bin/env python3
"""Helpers for clients.sh: JSON checks (standard library) and the oras client steps.

Every subcommand prints what it found; on a mismatch it prints the reason on the last
line of stdout and exits 1, so clients.sh can quote it in its `not ok` line.

  layout-digest LAYOUT TAG
      digest of TAG in LAYOUT/index.json
  verify-layout LAYOUT TAG EXPECTED_JSON
      TAG's digest in LAYOUT/index.json is the expected one, every file under blobs/
      hashes to its name, and the manifest, child manifests and blobs are all present
  verify-dir DIR TAG EXPECTED_JSON
      the same for skopeo's `dir:` format (manifest.json plus blobs named by hex digest)
  tags HEADERS BODY REPO {lexical|any-order} TAG...
      a tags/list response names REPO and lists exactly TAG... (in that order if lexical)
  tags-page HEADERS BODY REPO N
      a tags/list?n=N response has N tags and a Link rel="next" header; prints the link
  referrers HEADERS BODY ORAS_JSON [ARTIFACT_TYPE]
      a referrers response is an OCI index listing the oras artifacts (all of them, or
      only those of ARTIFACT_TYPE, with `OCI-Filters-Applied: artifactType`), each with
      digest, size, mediaType, artifactType and annotations
  referrers-empty HEADERS BODY
      a referrers response for a digest nothing refers to: 200, an index, no manifests
  oras-push HOST REPO SUBJECT_DIGEST SUBJECT_SIZE WORKDIR CHUNK_SIZE
      with the PyPI `oras` client: push an artifact with an explicit artifactType and
      a subject (tag `sbom`), push a second one in chunks (tag `signature`, artifactType
      taken from its config media type), pull both back, list tags; writes
      WORKDIR/oras.json with what the registry answered
"""

import hashlib
import json
import os
import sys

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

SBOM_TYPE = "application/vnd.berth.e2e.sbom.v1+json"
SIG_CONFIG_TYPE = "application/vnd.berth.e2e.signature.config.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"


def fail(msg):
    print(msg)
    sys.exit(1)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def load(path):
    with open(path) as f:
        return json.load(f)


def read_headers(path):
    """curl -D output; with redirects or 100-continue keep only the last response."""
    status, headers = None, {}
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.startswith("HTTP/"):
                status, headers = int(line.split()[1]), {}
            elif ":" in line:
                k, v = line.split(":", 1)
                headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, headers


def header(headers, name):
    vals = headers.get(name.lower(), [])
    return vals[0] if vals else None


def cmd_layout_digest(layout, tag):
    for d in load(os.path.join(layout, "index.json"))["manifests"]:
        if d.get("annotations", {}).get(REF_NAME) == tag:
            print(d["digest"])
            return
    fail("no %s in %s/index.json" % (tag, layout))


def wanted_digests(exp):
    return [exp["digest"]] + [c["digest"] for c in exp["children"]] + exp["blobs"]


def cmd_verify_layout(layout, tag, expected_json):
    exp = load(expected_json)[tag]
    problems = []
    found = [d for d in load(os.path.join(layout, "index.json"))["manifests"]
             if d.get("annotations", {}).get(REF_NAME) == tag]
    if len(found) != 1:
        problems.append("index.json has %d entries for %s" % (len(found), tag))
    elif found[0]["digest"] != exp["digest"]:
        problems.append("index.json: %s is %s, expected %s" % (tag, found[0]["digest"], exp["digest"]))
    elif found[0]["mediaType"] != exp["mediaType"]:
        problems.append("index.json: mediaType %s, expected %s" % (found[0]["mediaType"], exp["mediaType"]))
    blob_dir = os.path.join(layout, "blobs", "sha256")
    have = {}
    for name in sorted(os.listdir(blob_dir)):
        actual = sha256_file(os.path.join(blob_dir, name))
        have["sha256:" + name] = actual
        if actual != "sha256:" + name:
            problems.append("blob %s hashes to %s" % (name[:12], actual))
    for d in wanted_digests(exp):
        if d not in have:
            problems.append("missing %s" % d)
    print("%s: %d blobs checked, %d expected" % (tag, len(have), len(wanted_digests(exp))))
    if problems:
        fail("; ".join(problems))


def cmd_verify_dir(path, tag, expected_json):
    exp = load(expected_json)[tag]
    problems = []
    got = sha256_file(os.path.join(path, "manifest.json"))
    if got != exp["digest"]:
        problems.append("manifest.json is %s, expected %s" % (got, exp["digest"]))
    for d in exp["blobs"]:
        p = os.path.join(path, d.split(":", 1)[1])
        if not os.path.exists(p):
            problems.append("missing %s" % d)
        elif sha256_file(p) != d:
            problems.append("blob %s hashes to %s" % (d, sha256_file(p)))
    print("%s: manifest and %d blobs checked" % (tag, len(exp["blobs"])))
    if problems:
        fail("; ".join(problems))


def response(headers_path, body_path):
    if not os.path.exists(headers_path):
        fail("no HTTP response (curl failed)")
    status, headers = read_headers(headers_path)
    raw = b""
    if os.path.exists(body_path):
        with open(body_path, "rb") as f:
            raw = f.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return status, headers, raw, body


def cmd_tags(headers_path, body_path, repo, order, *tags):
    status, headers, raw, body = response(headers_path, body_path)
    if status != 200:
        fail("status %s, body %s" % (status, raw[:300]))
    if not isinstance(body, dict):
        fail("body is not a JSON object: %r" % raw[:300])
    if body.get("name") != repo:
        fail("name is %r, expected %r" % (body.get("name"), repo))
    got = body.get("tags")
    if not isinstance(got, list) or sorted(got) != sorted(tags):
        fail("tags are %r, expected %r" % (got, list(tags)))
    if order == "lexical" and got != list(tags):
        fail("tags are not in lexical order: %r" % got)
    print("tags %s" % body["tags"])


def cmd_tags_page(headers_path, body_path, repo, n):
    status, headers, raw, body = response(headers_path, body_path)
    n = int(n)
    if status != 200 or not isinstance(body, dict):
        fail("status %s, body %r" % (status, raw[:300]))
    if body.get("name") != repo or not isinstance(body.get("tags"), list) or len(body["tags"]) != n:
        fail("expected %d tags of %s, got %r" % (n, repo, raw[:300]))
    link = header(headers, "Link")
    if not link or 'rel="next"' not in link.replace(" ", "") or "<" not in link:
        fail("no Link rel=\"next\" header (got %r)" % link)
    print(link[link.index("<") + 1:link.index(">")])


def cmd_referrers(headers_path, body_path, oras_json, artifact_type=None):
    status, headers, raw, body = response(headers_path, body_path)
    if status != 200:
        fail("status %s, body %r" % (status, raw[:300]))
    ctype = (header(headers, "Content-Type") or "").split(";")[0].strip()
    if ctype != OCI_INDEX:
        fail("Content-Type %r, expected %s" % (ctype, OCI_INDEX))
    if not isinstance(body, dict) or body.get("schemaVersion") != 2 or body.get("mediaType") != OCI_INDEX \
            or not isinstance(body.get("manifests"), list):
        fail("not an OCI image index: %r" % raw[:300])
    pushed = load(oras_json)["artifacts"]
    want = [a for a in pushed.values() if artifact_type is None or a["artifactType"] == artifact_type]
    problems = []
    if artifact_type is not None:
        applied = ",".join(headers.get("oci-filters-applied", []))
        if "artifactType" not in applied:
            problems.append("no OCI-Filters-Applied: artifactType header")
    listed = {d.get("digest"): d for d in body["manifests"]}
    for a in want:
        d = listed.get(a["digest"])
        if d is None:
            problems.append("%s (%s) not listed" % (a["digest"], a["artifactType"]))
            continue
        for key in ("mediaType", "size", "artifactType"):
            if d.get(key) != a[key]:
                problems.append("%s: %s is %r, expected %r" % (a["digest"][:19], key, d.get(key), a[key]))
        for k, v in a["annotations"].items():
            if (d.get("annotations") or {}).get(k) != v:
                problems.append("%s: annotation %s is %r, expected %r"
                                % (a["digest"][:19], k, (d.get("annotations") or {}).get(k), v))
    wanted = {a["digest"] for a in want}
    extra = [d.get("digest") for d in body["manifests"] if d.get("digest") not in wanted]
    if extra:
        problems.append("unexpected entries %s" % extra)
    print("referrers: %d listed: %s" % (len(body["manifests"]),
                                        ", ".join("%s %s" % (d.get("digest", "?")[:19], d.get("artifactType"))
                                                  for d in body["manifests"])))
    if problems:
        fail("; ".join(problems))


def cmd_referrers_empty(headers_path, body_path):
    status, headers, raw, body = response(headers_path, body_path)
    if status != 200:
        fail("status %s, body %r" % (status, raw[:300]))
    ctype = (header(headers, "Content-Type") or "").split(";")[0].strip()
    if ctype != OCI_INDEX:
        fail("Content-Type %r, expected %s" % (ctype, OCI_INDEX))
    if not isinstance(body, dict) or body.get("manifests") != [] or body.get("schemaVersion") != 2:
        fail("expected an index with no manifests, got %r" % raw[:300])
    print("empty referrers index")


def cmd_oras_push(host, repo, subject_digest, subject_size, workdir, chunk_size):
    """Push two artifacts referring to SUBJECT with the oras Python client."""
    import oras.oci
    import oras.provider

    chunk_size = int(chunk_size)

    class Registry(oras.provider.Registry):
        """oras-py 0.2.x has no artifactType option on push; add the field to the manifest
        it builds (image-spec 1.1 `artifactType`), and record the requests it sends."""

        artifact_type = None

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.requests = []

        def upload_manifest(self, manifest, container):
            if self.artifact_type:
                manifest = dict(manifest, artifactType=self.artifact_type)
            return super().upload_manifest(manifest, container)

        def do_request(self, url, method="GET", data=None, headers=None, json=None, stream=False):
            # Skip oras-py's @retry wrapper: it retries any exception and any 500 with 3-83 s
            # sleeps, which would hide a registry error behind a slow pass.
            unretried = oras.provider.Registry.do_request.__wrapped__
            r = unretried(self, url, method, data=data, headers=headers, json=json, stream=stream)
            self.requests.append((method, url.split("?")[0], r.status_code,
                                  len(data) if isinstance(data, (bytes, bytearray)) else None))
            # A trace on stderr: clients.sh shows its tail when a check fails.
            print("%s %s -> %s %s" % (method, url, r.status_code,
                                      r.text[:300] if r.status_code >= 400 and method != "HEAD" else ""),
                  file=sys.stderr)
            return r

    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)  # oras-py requires pushed files under the working directory
    with open("sbom.json", "w") as f:
        json.dump({"spdxVersion": "SPDX-2.3", "name": "berth-e2e-multi",
                   "packages": [{"name": "hello", "versionInfo": "1.0"}]}, f, sort_keys=True)
    # 2.5 MiB of reproducible bytes, pushed in CHUNK_SIZE PATCHes (the last one shorter).
    with open("signature.bin", "wb") as f:
        for i in range(2560):
            f.write(hashlib.sha256(b"sig%d" % i).digest() * 32)

    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=subject_digest, size=int(subject_size))
    results = {"artifacts": {}, "requests": {}}

    def push(name, reg, files, config_type, annotations, **kw):
        target = "%s/%s:%s" % (host, repo, name)
        # A path that does not exist plus a media type: oras-py uploads `{}` as the config.
        r = reg.push(target=target, files=files, subject=subject,
                     manifest_config="/nonexistent-config:%s" % config_type,
                     manifest_annotations=annotations, disable_path_validation=True, quiet=True, **kw)
        digest = r.headers.get("Docker-Content-Digest")
        get = reg.do_request("http://%s/v2/%s/manifests/%s" % (host, repo, name), "GET",
                             headers={"Accept": OCI_MANIFEST})
        raw = get.content
        manifest = json.loads(raw)
        actual = "sha256:" + hashlib.sha256(raw).hexdigest()
        results["artifacts"][name] = {
            "digest": actual,
            "docker_content_digest": digest,
            "put_status": r.status_code,
            "oci_subject": r.headers.get("OCI-Subject"),
            "mediaType": manifest.get("mediaType"),
            "size": len(raw),
            "artifactType": manifest.get("artifactType") or manifest["config"]["mediaType"],
            "annotations": manifest.get("annotations") or {},
            "subject": manifest.get("subject"),
        }
        results["requests"][name] = reg.requests[:]

    sbom_reg = Registry(hostname=host, insecure=True)
    sbom_reg.artifact_type = SBOM_TYPE
    push("sbom", sbom_reg, ["sbom.json:application/spdx+json"], EMPTY_TYPE,
         {"org.opencontainers.image.description": "berth e2e SBOM",
          "org.opencontainers.image.created": "2023-11-14T22:13:20Z"})

    sig_reg = Registry(hostname=host, insecure=True)
    push("signature", sig_reg, ["signature.bin:application/vnd.berth.e2e.signature.v1"], SIG_CONFIG_TYPE,
         {"org.opencontainers.image.description": "berth e2e signature (chunked)"},
         do_chunked=True, chunk_size=chunk_size)

    # Pull both back with the client and compare bytes.
    pulled = {}
    for name, fname in (("sbom", "sbom.json"), ("signature", "signature.bin")):
        out = os.path.join(workdir, "pulled-" + name)
        files = Registry(hostname=host, insecure=True).pull(target="%s/%s:%s" % (host, repo, name), outdir=out)
        same = len(files) == 1 and open(files[0], "rb").read() == open(fname, "rb").read()
        pulled[name] = same
    results["pulled_ok"] = pulled
    results["tags"] = Registry(hostname=host, insecure=True).get_tags("%s/%s" % (host, repo))
    results["signature_patches"] = [(s, n) for m, _, s, n in results["requests"]["signature"] if m == "PATCH"]
    with open(os.path.join(workdir, "oras.json"), "w") as f:
        json.dump(results, f, indent=2)
    for name, a in results["artifacts"].items():
        print("%s %s artifactType=%s put=%s OCI-Subject=%s" % (name, a["digest"], a["artifactType"],
                                                               a["put_status"], a["oci_subject"]))
    print("signature PATCHes (status, bytes): %s" % results["signature_patches"])
    print("pulled back identical: %s; tags: %s" % (pulled, results["tags"]))


def cmd_oras_check(oras_json, what, subject_digest=None):
    """Assertions on oras.json, one per clients.sh check."""
    r = load(oras_json)
    arts = r["artifacts"]
    if what == "pushed":
        problems = []
        for name, a in arts.items():
            if a["put_status"] != 201:
                problems.append("%s: manifest PUT answered %s" % (name, a["put_status"]))
            if a["docker_content_digest"] != a["digest"]:
                problems.append("%s: Docker-Content-Digest %s, content is %s"
                                % (name, a["docker_content_digest"], a["digest"]))
            if not a["subject"] or a["subject"].get("digest") != subject_digest:
                problems.append("%s: stored manifest lost its subject" % name)
        if arts["sbom"]["artifactType"] != SBOM_TYPE:
            problems.append("sbom: artifactType %s" % arts["sbom"]["artifactType"])
        if problems:
            fail("; ".join(problems))
        print("pushed %s" % ", ".join("%s=%s" % (n, a["digest"]) for n, a in arts.items()))
    elif what == "chunked":
        patches = r["signature_patches"]
        if len(patches) < 2:
            fail("expected several PATCH requests, saw %s" % patches)
        if any(s != 202 for s, _ in patches):
            fail("PATCH statuses %s (expected 202)" % patches)
        print("%d PATCHes of %s bytes" % (len(patches), [n for _, n in patches]))
    elif what == "subject-header":
        bad = {n: a["oci_subject"] for n, a in arts.items() if a["oci_subject"] != subject_digest}
        if bad:
            fail("OCI-Subject header on manifest PUT: %s (expected %s)" % (bad, subject_digest))
        print("OCI-Subject: %s" % subject_digest)
    elif what == "pulled":
        if not all(r["pulled_ok"].values()):
            fail("pulled content differs: %s" % r["pulled_ok"])
        print("identical")
    elif what == "tags":
        want = sorted(["sbom", "signature", "v1"])
        if sorted(r["tags"]) != want:
            fail("oras get_tags: %s, expected %s" % (r["tags"], want))
        print(r["tags"])
    else:
        fail("unknown oras-check %s" % what)


def main():
    cmds = {
        "layout-digest": cmd_layout_digest,
        "verify-layout": cmd_verify_layout,
        "verify-dir": cmd_verify_dir,
        "tags": cmd_tags,
        "tags-page": cmd_tags_page,
        "referrers": cmd_referrers,
        "referrers-empty": cmd_referrers_empty,
        "oras-push": cmd_oras_push,
        "oras-check": cmd_oras_check,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit("usage: e2e.py {%s} ..." % ",".join(cmds))
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
