#!/usr/bin/env python3
"""Garbage collection, measured the way an operator meets it.

1. Fill a registry over HTTP: MANIFESTS image manifests, each with its own config and
   LAYERS-1 layers (10,000 blobs and 1,000 manifests by default), in REPOS repositories.
2. Delete half of the manifests by digest, wait out the grace period, and time one
   `berth gc` pass: the blobs, manifests and bytes it frees.
3. Push and pull a large blob with GC passes running back to back beside it
   (--gc-interval 1s), and without GC, alternating, and report the throughput of each.

    python3 bench/gc.py --berth target/release/berth [--storage ARGS...] [--out FILE]

Storage arguments after --storage go to both `berth serve` and `berth gc` (for example
`--storage s3://bucket --s3-endpoint http://127.0.0.1:5700`); without them a temporary
filesystem root is used. Prints a markdown table, and appends it to --out if given.
"""
import argparse
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

GRACE = int(os.environ.get("GC_BENCH_GRACE", "60"))  # a pass must end within half of it (GC.md): room for a loaded machine


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def req(self, method, path, body=None, headers=None, want=(200, 201, 202, 204)):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        if r.status not in want:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
        return r, data

    def blob(self, repo, data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        self.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                 {"Content-Type": "application/octet-stream"})
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                "size": len(data)}


def serve(berth, port, storage, root, interval):
    args = [berth, "serve", "--listen", f"127.0.0.1:{port}", "--log-level", "warn",
            "--gc-grace", f"{GRACE}s", "--gc-interval", interval]
    args += storage if storage else ["--root", root]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            Client(port).req("GET", "/v2/")
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("berth serve did not start")


def stop(p):
    p.terminate()
    p.wait(timeout=60)


def fill(port, manifests, layers, repos, threads):
    """Push the images; return [(repo, manifest digest)]."""
    out, lock = [], threading.Lock()

    def work(first):
        c = Client(port)
        for i in range(first, manifests, threads):
            repo = f"gc/r{i % repos}"
            rnd = os.urandom(16)
            descs = [c.blob(repo, rnd + os.urandom(1024 + (j * 997 + i) % 15360))
                     for j in range(layers)]
            config = dict(descs[0], mediaType="application/vnd.oci.image.config.v1+json")
            m = json.dumps({"schemaVersion": 2,
                            "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": config, "layers": descs[1:]}).encode()
            c.req("PUT", f"/v2/{repo}/manifests/t{i}", m,
                  {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            with lock:
                out.append((repo, "sha256:" + hashlib.sha256(m).hexdigest()))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return out


def gc_pass(berth, storage, root):
    args = [berth, "gc", "--json", "--log-level", "warn", "--gc-grace", f"{GRACE}s"]
    args += storage if storage else ["--root", root]
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True)
    took = time.monotonic() - t0
    try:
        report = json.loads(r.stdout)["gc"]
    except ValueError:
        raise RuntimeError(f"berth gc failed: {r.stderr.strip()}")
    if report.get("aborted"):
        raise RuntimeError(f"the pass stopped: {report['aborted']}")
    return report, took


def du(root):
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return total


def transfer(port, mb):
    """Push then pull an mb MiB blob; return (push MB/s, pull MB/s)."""
    c = Client(port)
    chunk = os.urandom(1 << 20)
    h = hashlib.sha256()
    for _ in range(mb):
        h.update(chunk)
    d = "sha256:" + h.hexdigest()

    def body():
        for _ in range(mb):
            yield chunk

    t0 = time.monotonic()
    c.req("POST", f"/v2/gc/big/blobs/uploads/?digest={d}", body(),
          {"Content-Length": str(mb << 20), "Content-Type": "application/octet-stream"})
    push = mb / (time.monotonic() - t0)
    t0 = time.monotonic()
    c.conn.request("GET", f"/v2/gc/big/blobs/{d}")
    r = c.conn.getresponse()
    got = hashlib.sha256()
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        got.update(b)
    pull = mb / (time.monotonic() - t0)
    assert "sha256:" + got.hexdigest() == d, "pulled bytes differ"
    return push, pull


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth", default="target/release/berth")
    ap.add_argument("--manifests", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--repos", type=int, default=50)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--blob-mb", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--label", default="filesystem")
    ap.add_argument("--out")
    ap.add_argument("--storage", nargs=argparse.REMAINDER, default=[])
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="berth-gc-bench-")
    root = os.path.join(work, "root")
    port = free_port()
    rows = []
    try:
        p = serve(a.berth, port, a.storage, root, "0")
        t0 = time.monotonic()
        images = fill(port, a.manifests, a.layers, a.repos, a.threads)
        fill_s = time.monotonic() - t0
        c = Client(port)
        for repo, d in images[: len(images) // 2]:
            c.req("DELETE", f"/v2/{repo}/manifests/{d}")
        stop(p)
        before = None if a.storage else du(root)
        time.sleep(GRACE + 1)
        report, took = gc_pass(a.berth, a.storage, root)
        after = None if a.storage else du(root)
        blobs = a.manifests * a.layers
        rows.append(("store", f"{blobs} blobs, {a.manifests} manifests in {a.repos} "
                     f"repositories ({fill_s:.1f} s to push)"))
        rows.append(("GC pass", f"{took:.2f} s: {report['blobs_deleted']} blobs, "
                     f"{report['links_deleted']} blob links, {report['manifests_deleted']} manifests, "
                     f"{report['bytes_freed'] / 2**20:.1f} MiB freed"))
        if before is not None:
            rows.append(("bytes on disk", f"{before / 2**20:.1f} MiB before, "
                         f"{after / 2**20:.1f} MiB after"))
        # Throughput beside back-to-back passes (interval 1 s) against none.
        res = {"0": [], "1s": []}
        for rep in range(a.reps):
            for interval in (["0", "1s"] if rep % 2 == 0 else ["1s", "0"]):
                p = serve(a.berth, port, a.storage, root, interval)
                try:
                    res[interval].append(transfer(port, a.blob_mb))
                finally:
                    stop(p)

        def med(xs):
            xs = sorted(xs)
            return xs[len(xs) // 2]

        for interval, name in (("0", "without GC"), ("1s", "GC every 1 s beside it")):
            push = med([x[0] for x in res[interval]])
            pull = med([x[1] for x in res[interval]])
            rows.append((f"{a.blob_mb} MiB push / pull, {name}",
                         f"{push:.0f} / {pull:.0f} MB/s"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    text = f"\n### Garbage collection ({a.label})\n\n| measure | result |\n| --- | --- |\n"
    text += "".join(f"| {k} | {v} |\n" for k, v in rows)
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
