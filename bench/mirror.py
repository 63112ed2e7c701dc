#!/usr/bin/env python3
"""berth as a pull-through cache, measured the way users meet it (all on 127.0.0.1).

Upstream: Distribution 2.8 (Debian's docker-registry) on a fresh root. For each repetition a
fresh random blob of --mb MiB is pushed to it, then fetched with curl to /dev/null:

  cold   through `berth serve --upstream` (nothing cached: one upstream GET, hashed, written)
  direct straight from Distribution (the same blob, just after)
  warm   through the mirror again (now cached)
  plain  from a `berth serve` without --upstream that holds the same blob (pushed to it)

Prints time to first byte and throughput (medians of --reps) as a Markdown table.

  bench/mirror.py --berth target/release/berth [--mb 256] [--reps 3]
"""

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait(url):
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def push(base, repo, path):
    """Monolithic push with curl (streams the file); the digest."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    d = "sha256:" + h.hexdigest()
    loc = subprocess.run(["curl", "-sS", "-X", "POST", "-D", "-", "-o", "/dev/null",
                          f"{base}/v2/{repo}/blobs/uploads/"], capture_output=True,
                         text=True).stdout
    loc = [l.split(":", 1)[1].strip() for l in loc.splitlines()
           if l.lower().startswith("location:")][0]
    loc = loc if loc.startswith("http") else base + loc
    sep = "&" if "?" in loc else "?"
    subprocess.run(["curl", "-sS", "-f", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
                    "--data-binary", f"@{path}", "-o", "/dev/null", f"{loc}{sep}digest={d}"],
                   check=True)
    return d


def get(url):
    """(seconds to first byte, MB/s) of one GET to /dev/null."""
    out = subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-w",
                          "%{time_starttransfer} %{speed_download}", url],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]) / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth", required=True)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-mirror.")
    procs = []
    try:
        dp = free_port()
        cfg = os.path.join(work, "dist.yml")
        open(cfg, "w").write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                             f"    rootdirectory: {work}/dist\nhttp:\n  addr: 127.0.0.1:{dp}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        procs.append(subprocess.Popen(["docker-registry", "serve", cfg], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        mp, pp = free_port(), free_port()
        procs.append(subprocess.Popen([a.berth, "serve", "--listen", f"127.0.0.1:{mp}", "--root",
                                       f"{work}/mirror", "--upstream", f"http://127.0.0.1:{dp}",
                                       "--log-level", "warn"]))
        procs.append(subprocess.Popen([a.berth, "serve", "--listen", f"127.0.0.1:{pp}", "--root",
                                       f"{work}/plain", "--log-level", "warn"]))
        for p in (dp, mp, pp):
            wait(f"http://127.0.0.1:{p}/v2/")
        rows = {k: [] for k in ("cold", "direct", "warm", "plain")}
        for _ in range(a.reps):
            blob = os.path.join(work, "blob")
            with open(blob, "wb") as f:
                for _ in range(a.mb):
                    f.write(secrets.token_bytes(1 << 20))
            d = push(f"http://127.0.0.1:{dp}", "lib/big", blob)
            push(f"http://127.0.0.1:{pp}", "lib/big", blob)
            os.remove(blob)
            rows["cold"].append(get(f"http://127.0.0.1:{mp}/v2/lib/big/blobs/{d}"))
            rows["direct"].append(get(f"http://127.0.0.1:{dp}/v2/lib/big/blobs/{d}"))
            rows["warm"].append(get(f"http://127.0.0.1:{mp}/v2/lib/big/blobs/{d}"))
            rows["plain"].append(get(f"http://127.0.0.1:{pp}/v2/lib/big/blobs/{d}"))
        print(f"| {a.mb} MiB blob, median of {a.reps} | first byte | throughput |")
        print("| --- | --- | --- |")
        names = {"cold": "cold, through the mirror (fetched from Distribution)",
                 "direct": "straight from Distribution (the upstream)",
                 "warm": "warm, through the mirror (cached)",
                 "plain": "berth serve without --upstream, same blob"}
        for k, v in rows.items():
            ttfb = statistics.median(t for t, _ in v) * 1000
            mbs = statistics.median(s for _, s in v)
            print(f"| {names[k]} | {ttfb:.1f} ms | {mbs:.0f} MB/s |")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
