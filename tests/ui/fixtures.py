#!/usr/bin/env python3
"""Test content for tests/ui.sh (standard library, and the PyPI oras client for referrers).

  labelled OUT                      an OCI layout at OUT with one image, tag `labelled`, whose
                                    config has labels, env and history holding markup
  referrer HOST REPO DIGEST SIZE USER PASSWORD WORKDIR
                                    push an SBOM artifact referring to DIGEST with oras
  tags HOST REPO REF COUNT USER PASSWORD
                                    tag the manifest REF as t00000... (COUNT tags), 90 per PUT
"""

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import sys
import tarfile

MARKUP = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2"><b>bold</b>'


def blob(root, data):
    d = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(root, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d


def labelled(out):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        data = b"hello from the ui test\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(data), 1700000000
        t.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
        "config": {
            "Entrypoint": ["/bin/hello"], "Cmd": ["--greet", MARKUP],
            "Env": ["PATH=/usr/bin", "NOTE=" + MARKUP],
            "Labels": {"org.opencontainers.image.title": "berth ui test", "evil": MARKUP},
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "COPY hello.txt / " + MARKUP}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blob(out, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": blob(out, layer), "size": len(layer)}],
        "annotations": {"org.opencontainers.image.description": MARKUP},
    }, sort_keys=True).encode()
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(out, manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "labelled"}}]}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


def referrer(host, repo, digest, size, user, password, workdir):
    import oras.oci
    import oras.provider

    class Registry(oras.provider.Registry):
        def upload_manifest(self, manifest, container):
            manifest = dict(manifest, artifactType="application/spdx+json")
            return super().upload_manifest(manifest, container)

    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    with open("sbom.json", "w") as f:
        json.dump({"spdxVersion": "SPDX-2.3", "name": "berth-ui"}, f)
    reg = Registry(hostname=host, insecure=True)
    reg.login(username=user, password=password, tls_verify=False)
    subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json",
                               digest=digest, size=int(size))
    r = reg.push(target="%s/%s:sbom" % (host, repo), files=["sbom.json:application/spdx+json"],
                 subject=subject, manifest_config="/nonexistent:application/vnd.oci.empty.v1+json",
                 disable_path_validation=True, quiet=True)
    print("oras push: %s %s" % (r.status_code, r.headers.get("Docker-Content-Digest")))
    return 0 if r.status_code == 201 else 1


def tags(host, repo, ref, count, user, password):
    auth = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    accept = "application/vnd.oci.image.manifest.v1+json"
    c = http.client.HTTPConnection(host, timeout=120)
    c.request("GET", "/v2/%s/manifests/%s" % (repo, ref), headers={"Authorization": auth, "Accept": accept})
    r = c.getresponse()
    body, ctype = r.read(), r.getheader("Content-Type")
    if r.status != 200:
        print("GET manifest: %s" % r.status)
        return 1
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    names = ["t%05d" % i for i in range(int(count))]
    for i in range(0, len(names), 90):
        q = "&".join("tag=" + n for n in names[i:i + 90])
        c.request("PUT", "/v2/%s/manifests/%s?%s" % (repo, digest, q), body=body,
                  headers={"Authorization": auth, "Content-Type": ctype})
        r = c.getresponse()
        r.read()
        if r.status != 201:
            print("PUT with tags: %s" % r.status)
            return 1
    print("tagged %s %d times" % (digest, len(names)))
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "labelled":
        os.makedirs(args[0], exist_ok=True)
        labelled(args[0])
        sys.exit(0)
    sys.exit({"referrer": referrer, "tags": tags}[cmd](*args))
