#!/usr/bin/env python3
"""A benchmark image as an OCI image layout: LAYERS gzip layers of incompressible data.

Usage: mkimage.py OUT_DIR [TOTAL_MB] [LAYERS]    (defaults: 200 MB, 5 layers)

Writes OUT_DIR/oci-layout, index.json (the manifest tagged `bench`) and blobs/sha256/*, and
prints `<manifest digest> <total bytes of the layers>`. Each layer is a valid tar.gz (one file
of random bytes, gzip level 0 so that generating it is fast) with its diff_id in the config,
so clients that look inside (skopeo computes nothing here, but podman would) accept it.
Nothing depends on earlier runs; random.randbytes is fast enough for a few hundred MB.
"""

import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    out = sys.argv[1]
    total = int(sys.argv[2]) * 1000 * 1000 if len(sys.argv) > 2 else 200 * 1000 * 1000
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        d = sha256(data)
        with open(os.path.join(blobs, d.split(":")[1]), "wb") as f:
            f.write(data)
        return {"digest": d, "size": len(data)}

    layers, diff_ids = [], []
    rng = random.Random()
    for i in range(count):
        payload = rng.randbytes(total // count)
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as t:
            info = tarfile.TarInfo(f"layer{i}/data.bin")
            info.size = len(payload)
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(payload))
        raw = tar.getvalue()
        diff_ids.append(sha256(raw))
        gz = gzip.compress(raw, compresslevel=0, mtime=0)
        layers.append(dict(put(gz), mediaType=OCI_LAYER))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cfg = put(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": dict(cfg, mediaType=OCI_CONFIG),
        "layers": layers,
    }
    mbytes = json.dumps(manifest, sort_keys=True).encode()
    m = put(mbytes)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            dict(
                m,
                mediaType=OCI_MANIFEST,
                annotations={"org.opencontainers.image.ref.name": "bench"},
            )
        ],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(m["digest"], sum(layer["size"] for layer in layers))


if __name__ == "__main__":
    main()
