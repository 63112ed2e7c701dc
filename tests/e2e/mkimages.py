#!/usr/bin/env python3
"""Generate deterministic test images as an OCI image layout (standard library only).

Usage: mkimages.py OUT_DIR

Writes into OUT_DIR (created if missing):

  layout/         an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/*`) with
    multi         an OCI image manifest, linux/amd64, three gzip layers of generated tars
    multiarch     an OCI image index: linux/amd64 and linux/arm64, each its own manifest,
                  config and two layers
                  each tagged in index.json with `org.opencontainers.image.ref.name`, so
                  skopeo reads them as `oci:OUT_DIR/layout:multi` and so on.
  docker-dir/     a Docker v2 schema 2 image (Docker media types, two layers) in skopeo's
                  `dir:` transport format (`version`, `manifest.json`, blobs named by hex
                  digest). skopeo 1.9 (containers/image 5.23) ignores index.json entries
                  that are not OCI media types, so an OCI layout cannot carry it; `dir:`
                  passes any manifest type through untouched.
  expected.json   per tag (multi, multiarch, docker): manifest digest, media type and size,
                  the child manifests of an index, and every blob digest the tag reaches.

The summary is also printed on stdout as `tag digest mediaType`.

Nothing is downloaded and nothing depends on the clock: tar headers carry fixed mtimes,
uids and names, gzip headers carry mtime 0 and no file name, JSON is serialised with
sorted keys. The digests are therefore identical on every run with the same zlib (zlib's
deflate output has been stable across its releases; checked with Python 3.11 here).
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"

MTIME = 1700000000  # 2023-11-14T22:13:20Z, fixed
CREATED = "2023-11-14T22:13:20Z"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pseudo_random(seed, size):
    """Incompressible but reproducible bytes: SHA-256 in counter mode."""
    out = bytearray()
    counter = 0
    seed_bytes = seed.encode()
    while len(out) < size:
        out += hashlib.sha256(seed_bytes + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


class Layout:
    def __init__(self, root):
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blob_dir, exist_ok=True)
        self.index = []

    def put(self, data):
        digest = sha256(data)
        path = os.path.join(self.blob_dir, digest.split(":", 1)[1])
        if not os.path.exists(path):
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.rename(path + ".tmp", path)
        return digest

    def descriptor(self, media_type, data, **extra):
        desc = {"mediaType": media_type, "digest": self.put(data), "size": len(data)}
        desc.update(extra)
        return desc

    def tag(self, name, desc):
        d = dict(desc)
        d["annotations"] = dict(d.get("annotations", {}), **{REF_NAME: name})
        self.index.append(d)

    def finish(self):
        with open(os.path.join(self.root, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index}
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(canonical(index))


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def make_tar(entries):
    """entries: list of (path, bytes or None for a directory, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data, mode in entries:
            info = tarfile.TarInfo(path)
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_gzip(data):
    buf = io.BytesIO()
    # mtime=0 and an empty file name keep the gzip header constant.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def make_layer(layout, media_type, entries):
    tar = make_tar(entries)
    blob = make_gzip(tar)
    return layout.descriptor(media_type, blob), sha256(tar)


def image(layout, name, arch, layer_specs, docker=False):
    """Build layers, config and manifest; return the manifest descriptor and bytes."""
    layer_type = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
    layers, diff_ids, history = [], [], []
    for i, entries in enumerate(layer_specs):
        desc, diff_id = make_layer(layout, layer_type, entries)
        layers.append(desc)
        diff_ids.append(diff_id)
        history.append({"created": CREATED, "created_by": "mkimages.py %s layer %d" % (name, i)})
    config = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "author": "berth e2e",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/hello"],
            "Labels": {"org.opencontainers.image.title": name},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    if arch == "arm64":
        config["variant"] = "v8"
    config_desc = layout.descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }
    if not docker:
        manifest["annotations"] = {"org.opencontainers.image.title": name}
    data = canonical(manifest)
    desc = layout.descriptor(manifest["mediaType"], data)
    blobs = [config_desc["digest"]] + [l["digest"] for l in layers]
    return desc, blobs


def rootfs_base(tag):
    return [
        ("bin", None, 0o755),
        ("etc", None, 0o755),
        ("bin/hello", b"#!/bin/sh\necho hello from %s\n" % tag.encode(), 0o755),
        ("etc/os-release", b'NAME="berth e2e"\nID=berth-e2e\nVERSION_ID="%s"\n' % tag.encode(), 0o644),
    ]


def write_dir_transport(out, layout, manifest_desc, blobs):
    """skopeo's `dir:` format, Directory Transport Version 1.1."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "version"), "w") as f:
        f.write("Directory Transport Version: 1.1\n")
    src = lambda d: os.path.join(layout.blob_dir, d.split(":", 1)[1])
    shutil.copyfile(src(manifest_desc["digest"]), os.path.join(out, "manifest.json"))
    for d in blobs:
        shutil.copyfile(src(d), os.path.join(out, d.split(":", 1)[1]))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: mkimages.py OUT_DIR")
    out = sys.argv[1]
    expected_path = os.path.join(out, "expected.json")
    # The Docker image's blobs are built through a scratch layout, then copied to docker-dir.
    layout = Layout(os.path.join(out, "layout"))
    scratch = Layout(os.path.join(out, ".docker-scratch"))
    expected = {}

    # (a) multi-layer OCI image: small text files, a compressible 256 KiB file, and a
    # 2 MiB incompressible file (so the biggest upload is more than one read buffer).
    specs = [
        rootfs_base("multi"),
        [("usr", None, 0o755), ("usr/share", None, 0o755),
         ("usr/share/words.txt", b"".join(b"line %06d of the berth e2e test\n" % i for i in range(8000)), 0o644)],
        [("opt", None, 0o755), ("opt/random.bin", pseudo_random("multi-layer-3", 2 * 1024 * 1024), 0o644)],
    ]
    desc, blobs = image(layout, "multi", "amd64", specs)
    layout.tag("multi", desc)
    expected["multi"] = {"digest": desc["digest"], "mediaType": desc["mediaType"],
                         "size": desc["size"], "blobs": blobs, "children": []}

    # (b) two-platform index, each platform its own manifest, config and layers.
    children, all_blobs = [], []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        specs = [
            rootfs_base("multiarch-" + arch),
            [("lib", None, 0o755), ("lib/arch.bin", pseudo_random("arch-" + arch, 300 * 1024), 0o644)],
        ]
        cdesc, cblobs = image(layout, "multiarch-" + arch, arch, specs)
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        cdesc["platform"] = platform
        children.append(cdesc)
        all_blobs += cblobs
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
             "annotations": {"org.opencontainers.image.title": "multiarch"}}
    desc = layout.descriptor(OCI_INDEX, canonical(index))
    layout.tag("multiarch", desc)
    expected["multiarch"] = {"digest": desc["digest"], "mediaType": OCI_INDEX, "size": desc["size"],
                             "blobs": all_blobs,
                             "children": [{"digest": c["digest"], "mediaType": c["mediaType"],
                                           "platform": c["platform"]} for c in children]}

    # (c) Docker v2 schema 2 image (skopeo passes the media type through from the layout).
    specs = [
        rootfs_base("docker"),
        [("srv", None, 0o755), ("srv/data.bin", pseudo_random("docker-layer-2", 100 * 1024), 0o644)],
    ]
    desc, blobs = image(scratch, "docker", "amd64", specs, docker=True)
    write_dir_transport(os.path.join(out, "docker-dir"), scratch, desc, blobs)
    shutil.rmtree(scratch.root)
    expected["docker"] = {"digest": desc["digest"], "mediaType": desc["mediaType"],
                          "size": desc["size"], "blobs": blobs, "children": []}

    layout.finish()
    with open(expected_path, "w") as f:
        json.dump(expected, f, indent=2, sort_keys=True)
        f.write("\n")
    for tag in ("multi", "multiarch", "docker"):
        print(tag, expected[tag]["digest"], expected[tag]["mediaType"])
        for c in expected[tag]["children"]:
            print("  %s/%s %s" % (c["platform"]["os"], c["platform"]["architecture"], c["digest"]))


if __name__ == "__main__":
    main()
