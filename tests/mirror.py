#!/usr/bin/env python3
"""berth serve as a pull-through cache, with real clients, against local upstreams only.

Upstreams: Distribution 2.8 (plain, anonymous), a berth serve with token auth (reached with
credentials from --upstream-auth), and a proxy in front of Distribution that can corrupt blob
bodies. The mirror: berth serve --upstream for each, a short --upstream-ttl.

Checks: skopeo, podman, containerd (ctr with hosts.toml, which sends ?ns=) and the berth client
pull through with identical digests (an image, a two-platform index, an artifact with its
referrers); cached content makes no upstream request; a tag moved upstream is seen after the
TTL and not before; eight concurrent pulls of one cold 100 MiB layer make one upstream GET; a
corrupt upstream body fails and is not cached; ns= and prefixes route, OCI-Namespace answers;
pushes are refused; with the upstream stopped, cached images still pull.

Usage: tests/mirror.py BERTH_BIN   (prints ok / not ok lines and `N passed, N failed`)
  MIRROR_BIG_MIB=N   size of the shared cold layer (default 100)
  MIRROR_KEEP=1      keep the work directory
"""

import base64
import hashlib
import http.client
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BERTH = os.path.abspath(sys.argv[1])
TTL = 3
BIG = int(os.environ.get("MIRROR_BIG_MIB", "100")) << 20
STEP_TIMEOUT = 120

# A short path: podman refuses a --runroot longer than 50 characters.
WORK = tempfile.mkdtemp(prefix="mr.", dir="/tmp")
PROCS = []
PASSED = FAILED = 0


def ok(name):
    global PASSED
    PASSED += 1
    print(f"ok - {name}", flush=True)


def not_ok(name, why):
    global FAILED
    FAILED += 1
    print(f"not ok - {name}: {why}", flush=True)


def check(name, cond, why=""):
    (ok(name) if cond else not_ok(name, why))
    return cond


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, proc, log):
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except urllib.error.HTTPError:
            return True
        except Exception:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    print(f"# {url} did not answer; log {log}:")
    print("".join("#   " + l for l in open(log).readlines()[-10:]))
    return False


def start(name, cmd, url, env=None):
    log = os.path.join(WORK, f"{name}.log")
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                         start_new_session=True)
    PROCS.append(p)
    if not wait_http(url, p, log):
        raise SystemExit(f"not ok - {name} did not start")
    return p, log


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(args, env=None, input=None):
    """Run a client; (exit status, stdout+stderr)."""
    try:
        r = subprocess.run(args, capture_output=True, text=True, env=env, input=input,
                           timeout=STEP_TIMEOUT)
        return r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {STEP_TIMEOUT}s"


def last_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return (lines[-1] if lines else "")[:300]


def request(method, url, headers=None, body=None):
    """(status, headers, body) of one plain-HTTP request."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    path = u.path + (f"?{u.query}" if u.query else "")
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- clients, each with empty caches and configuration of its own --------------------------

for d in ("bic", "home", "tmp", "out", "pt", "net", "vol"):
    os.makedirs(os.path.join(WORK, d), exist_ok=True)
open(os.path.join(WORK, "registries.conf"), "w").write("unqualified-search-registries = []\n")
open(os.path.join(WORK, "policy.json"), "w").write(
    '{"default":[{"type":"insecureAcceptAnything"}]}\n')
open(os.path.join(WORK, "auth.json"), "w").write('{"auths":{}}\n')
open(os.path.join(WORK, "containers.conf"), "w").write("")
open(os.path.join(WORK, "storage.conf"), "w").write(
    f'[storage]\ndriver = "vfs"\ngraphroot = "{WORK}/proot"\nrunroot = "{WORK}/prun"\n')
CENV = dict(os.environ)
CENV.update(HOME=f"{WORK}/home", TMPDIR=f"{WORK}/tmp",
            CONTAINERS_REGISTRIES_CONF=f"{WORK}/registries.conf",
            REGISTRY_AUTH_FILE=f"{WORK}/auth.json", CONTAINERS_CONF=f"{WORK}/containers.conf",
            CONTAINERS_STORAGE_CONF=f"{WORK}/storage.conf")
for k in ("_CONTAINERS_ROOTLESS_UID", "XDG_DATA_HOME", "DOCKER_CONFIG", "BERTH_USERNAME",
          "BERTH_PASSWORD"):
    CENV.pop(k, None)


def skopeo(*args):
    env = dict(CENV, _CONTAINERS_ROOTLESS_UID="65534",
               XDG_DATA_HOME=tempfile.mkdtemp(dir=f"{WORK}/bic"))
    return run(["skopeo", "--policy", f"{WORK}/policy.json", *args], env=env)


def podman(*args):
    cache = tempfile.mkdtemp(dir=f"{WORK}/bic")
    cmd = ["podman", "--root", f"{WORK}/proot", "--runroot", f"{WORK}/prun", "--tmpdir",
           f"{WORK}/pt", "--storage-driver", "vfs", "--cgroup-manager=cgroupfs",
           "--events-backend=file", "--network-config-dir", f"{WORK}/net", "--volumepath",
           f"{WORK}/vol", *args]
    os.makedirs("/var/lib/containers/cache", exist_ok=True)
    wrapped = ["unshare", "--mount", "sh", "-c",
               'mount --bind "$0" /var/lib/containers/cache && exec "$@"', cache, *cmd]
    return run(wrapped, env=CENV)


def berth(*args):
    return run([BERTH, *args], env=CENV)


# --- the upstreams ---------------------------------------------------------------------------

def distribution(port, root):
    cfg = os.path.join(WORK, f"dist-{port}.yml")
    open(cfg, "w").write(
        f"version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
        f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return start(f"dist-{port}", ["docker-registry", "serve", cfg],
                 f"http://127.0.0.1:{port}/v2/", env=env)


def dist_gets(log, path):
    """How many GETs of `path` Distribution's access log shows."""
    needle = f'"GET {path} HTTP/1.1"'
    return sum(1 for l in open(log) if needle in l)


class Proxy(http.server.ThreadingHTTPServer):
    """Forwards to an upstream; counts GETs by path; flips a byte of blob bodies when told."""
    daemon_threads = True

    def __init__(self, upstream):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.upstream = upstream
        self.corrupt = False
        self.gets = {}


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def forward(self, method):
        srv = self.server
        if method == "GET":
            srv.gets[self.path.split("?")[0]] = srv.gets.get(self.path.split("?")[0], 0) + 1
        hdrs = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")}
        status, h, body = request(method, srv.upstream + self.path, headers=hdrs)
        if srv.corrupt and method == "GET" and "/blobs/" in self.path and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(status)
        for k, v in h.items():
            if k not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", h.get("content-length", str(len(body))))
        self.end_headers()
        if method == "GET":
            self.wfile.write(body)

    def do_GET(self):
        self.forward("GET")

    def do_HEAD(self):
        self.forward("HEAD")


def main():
    imgs = os.path.join(WORK, "imgs")
    subprocess.run([sys.executable, os.path.join(HERE, "e2e", "mkimages.py"), imgs],
                   check=True, capture_output=True)
    expected = json.load(open(os.path.join(imgs, "expected.json")))
    multi, multiarch = expected["multi"], expected["multiarch"]
    layout = os.path.join(imgs, "layout")

    d_port = free_port()
    dist, dist_log = distribution(d_port, os.path.join(WORK, "dist"))
    D = f"127.0.0.1:{d_port}"

    # An upstream berth that only alice may read.
    shutil.copy(os.path.join(HERE, "e2e", "auth-e2e.key"), WORK)
    alice = [l for l in open(os.path.join(HERE, "e2e", "auth-policy.toml"))
             if l.startswith("password") ][0]
    open(os.path.join(WORK, "up-policy.toml"), "w").write(
        'default = "authenticated"\nservice = "berth-upstream"\nsigning_key_file = "auth-e2e.key"\n'
        f"[users.alice]\n{alice}")
    b_port = free_port()
    bup, bup_log = start("berth-upstream", [BERTH, "serve", "--listen", f"127.0.0.1:{b_port}",
                                            "--root", f"{WORK}/bup", "--auth",
                                            f"{WORK}/up-policy.toml"],
                         f"http://127.0.0.1:{b_port}/v2/")
    B = f"127.0.0.1:{b_port}"

    proxy = Proxy(f"http://{D}")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    P = f"127.0.0.1:{proxy.server_address[1]}"

    # Content upstream.
    for tag in ("multi", "multiarch"):
        code, out = skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                           f"oci:{layout}:{tag}", f"docker://{D}/lib/app:{tag}")
        if code:
            raise SystemExit(f"not ok - seeding Distribution: {last_line(out)}")
    code, out = skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                       "--dest-creds", "alice:alice-pw", f"oci:{layout}:multi",
                       f"docker://{B}/team/app:multi")
    if code:
        raise SystemExit(f"not ok - seeding berth: {last_line(out)}")
    art_digest = push_artifact(B, multi)

    # The mirror.
    upauth = os.path.join(WORK, "upstream-auth.json")
    cred = base64.b64encode(b"alice:alice-pw").decode()
    json.dump({"auths": {B: {"auth": cred}}}, open(upauth, "w"))
    os.chmod(upauth, 0o600)
    m_port = free_port()
    mirror_cmd = [BERTH, "serve", "--listen", f"127.0.0.1:{m_port}", "--root", f"{WORK}/mirror",
                  "--upstream", f"http://{D}", "--upstream", f"docker.io=http://{D}",
                  "--upstream", f"bup.test=http://{B}", "--upstream", f"bad.test=http://{P}",
                  "--upstream-prefix", "bu=bup.test", "--upstream-prefix", "bad=bad.test",
                  "--upstream-ttl", str(TTL), "--upstream-auth", upauth]
    mirror, mirror_log = start("mirror", mirror_cmd, f"http://127.0.0.1:{m_port}/v2/")
    M = f"127.0.0.1:{m_port}"
    secret = "alice-pw"
    check("the upstream password is never in the mirror's log",
          secret not in open(mirror_log).read() and cred not in open(mirror_log).read())

    # skopeo: the index and the image, every digest as upstream.
    out_dir = os.path.join(WORK, "out", "sk")
    code, out = skopeo("copy", "--all", "--src-tls-verify=false",
                       f"docker://{M}/lib/app:multiarch", f"oci:{out_dir}:multiarch")
    idx = json.load(open(os.path.join(out_dir, "index.json"))) if code == 0 else {}
    got = idx.get("manifests", [{}])[0].get("digest")
    check("skopeo pulls the two-platform index through the mirror with its digest",
          code == 0 and got == multiarch["digest"], f"{got} vs {multiarch['digest']}: {last_line(out)}")
    blobs_ok = all(os.path.exists(os.path.join(out_dir, "blobs", *b.split(":")))
                   for b in multiarch["blobs"])
    check("every blob of the index arrived, digests verified by skopeo", code == 0 and blobs_ok)

    # podman.
    code, out = podman("pull", "--tls-verify=false", f"{M}/lib/app:multi")
    code2, digest = podman("image", "inspect", "--format", "{{.Digest}}", f"{M}/lib/app:multi")
    check("podman pulls the image through the mirror with its digest",
          code == 0 and digest.strip() == multi["digest"], f"{digest.strip()}: {last_line(out)}")

    # containerd: hosts.toml names the mirror for docker.io; ctr sends ?ns=docker.io.
    containerd_check(M, multiarch["digest"])

    # The berth client, through a prefix, from the upstream that needs credentials.
    bdir = os.path.join(WORK, "out", "bc")
    code, out = berth("pull", "--insecure", "--referrers", f"{M}/bu/team/app:multi", bdir)
    idx = json.load(open(os.path.join(bdir, "index.json"))) if code == 0 else {"manifests": []}
    digests = [m_["digest"] for m_ in idx["manifests"]]
    check("the berth client pulls from an authenticated upstream, through a prefix",
          code == 0 and multi["digest"] in digests, f"{digests}: {last_line(out)}")
    check("... with the artifact that refers to it (referrers through the mirror)",
          code == 0 and os.path.exists(os.path.join(bdir, "blobs", *art_digest.split(":"))),
          last_line(out))
    code, out = berth("referrers", "--insecure", f"{M}/bu/team/app:multi")
    check("berth referrers lists the artifact through the mirror", code == 0 and art_digest in out,
          last_line(out))

    # ns and the default.
    s, h, _ = request("GET", f"http://{M}/v2/team/app/manifests/multi?ns=bup.test",
                      {"Accept": "application/vnd.oci.image.manifest.v1+json"})
    check("ns=bup.test goes to that upstream and OCI-Namespace says so",
          s == 200 and h.get("oci-namespace") == "bup.test", f"{s} {h.get('oci-namespace')}")
    s, h, _ = request("GET", f"http://{M}/v2/lib/app/manifests/multi")
    check("a docker-style request (no ns) goes to the default upstream, no OCI-Namespace",
          s == 200 and "oci-namespace" not in h, f"{s} {h}")
    s, _, _ = request("GET", f"http://{M}/v2/lib/app/manifests/multi?ns=bup.test")
    check("ns=bup.test does not fall back to another upstream", s == 404, str(s))

    # Cached content: no upstream request at all.
    before = sum(1 for _ in open(dist_log))
    for b in multiarch["blobs"]:
        s, _, data = request("GET", f"http://{M}/v2/lib/app/blobs/{b}")
        if s != 200 or sha(data) != b:
            break
    s, _, _ = request("GET", f"http://{M}/v2/lib/app/manifests/{multiarch['digest']}")
    after = sum(1 for _ in open(dist_log))
    check("pulls by digest of cached content make no upstream request",
          s == 200 and before == after, f"{after - before} new upstream log lines")

    s, _, body = request("GET", f"http://{M}/metrics")
    counts = {}
    for line in body.decode().splitlines():
        if line.startswith("berth_mirror_requests_total{"):
            counts[line.split('"')[1]] = float(line.split()[-1])
    check("/metrics counts the cache's hits and misses",
          counts.get("hit", 0) > 0 and counts.get("miss", 0) > 0, str(counts))

    ttl_check(D, M, layout, multi["digest"], multiarch["digest"])
    single_fetch_check(D, M, dist_log)
    corrupt_check(D, M, proxy)
    push_refused_check(M, layout)

    # Upstream stopped: what is cached still pulls; a stale tag says so.
    stop(dist)
    time.sleep(TTL + 0.5)
    out_dir = os.path.join(WORK, "out", "down")
    code, out = skopeo("copy", "--all", "--src-tls-verify=false",
                       f"docker://{M}/lib/app:multiarch", f"oci:{out_dir}:x")
    check("with the upstream stopped, a cached index still pulls (skopeo)", code == 0,
          last_line(out))
    s, h, _ = request("GET", f"http://{M}/v2/lib/app/manifests/multi")
    check("... and a tag past its TTL is served with a Warning",
          s == 200 and h.get("warning", "").startswith("299 "), f"{s} {h.get('warning')}")
    s, _, body = request("GET", f"http://{M}/v2/lib/app/manifests/never")
    check("... and what is not cached is 502 UNAVAILABLE, not 500",
          s == 502 and b"UNAVAILABLE" in body, f"{s} {body[:200]}")
    stop(bup)


def push_artifact(B, multi):
    """An SBOM-like artifact whose subject is the image, pushed with the berth client."""
    d = os.path.join(WORK, "art")
    os.makedirs(os.path.join(d, "blobs", "sha256"))
    def blob(data):
        h = hashlib.sha256(data).hexdigest()
        open(os.path.join(d, "blobs", "sha256", h), "wb").write(data)
        return {"digest": "sha256:" + h, "size": len(data)}
    empty = dict(blob(b"{}"), mediaType="application/vnd.oci.empty.v1+json")
    layer = dict(blob(b'{"spdxVersion":"SPDX-2.3"}'), mediaType="application/spdx+json")
    subject = {"mediaType": multi["mediaType"], "digest": multi["digest"], "size": multi["size"]}
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "artifactType": "application/spdx+json", "config": empty,
                      "layers": [layer], "subject": subject}, sort_keys=True).encode()
    m = blob(man)
    json.dump({"schemaVersion": 2, "manifests": [dict(m, mediaType="application/vnd.oci.image.manifest.v1+json",
                                                        annotations={"org.opencontainers.image.ref.name": "sbom"})]},
              open(os.path.join(d, "index.json"), "w"))
    open(os.path.join(d, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
    code, out = berth("push", "--insecure", "-u", "alice", "-p", "alice-pw", f"oci:{d}:sbom",
                      f"{B}/team/app:sbom")
    if code:
        raise SystemExit(f"not ok - pushing the artifact: {last_line(out)}")
    return m["digest"]


def containerd_check(M, want):
    name = "containerd pulls through the mirror with hosts.toml (ns=docker.io) and the digest"
    if not shutil.which("containerd") or not shutil.which("ctr"):
        not_ok(name, "containerd is not installed")
        return
    c = os.path.join(WORK, "ctd")
    os.makedirs(os.path.join(c, "hosts", "docker.io"))
    open(os.path.join(c, "config.toml"), "w").write(
        f'version = 2\nroot = "{c}/root"\nstate = "{c}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{c}/c.sock"\n[ttrpc]\n  address = "{c}/c.sock.ttrpc"\n'
        f'[debug]\n  address = "{c}/d.sock"\n')
    open(os.path.join(c, "hosts", "docker.io", "hosts.toml"), "w").write(
        f'server = "https://registry-1.docker.io"\n[host."http://{M}"]\n'
        '  capabilities = ["pull", "resolve"]\n')
    log = open(os.path.join(WORK, "containerd.log"), "w")
    p = subprocess.Popen(["containerd", "--config", f"{c}/config.toml"], stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    PROCS.append(p)
    for _ in range(100):
        if os.path.exists(f"{c}/c.sock"):
            break
        time.sleep(0.1)
    code, out = run(["ctr", "--address", f"{c}/c.sock", "images", "pull", "--hosts-dir",
                     f"{c}/hosts", "--snapshotter", "native", "docker.io/lib/app:multiarch"])
    code2, ls = run(["ctr", "--address", f"{c}/c.sock", "images", "ls"])
    check(name, code == 0 and want in ls, f"{last_line(out)} / {last_line(ls)}")
    s, _, body = request("GET", f"http://{M}/v2/_catalog")
    check("... kept under docker.io/ (the ns upstream is not the default)",
          b'"docker.io/lib/app"' in body, body[:300])
    stop(p)


def ttl_check(D, M, layout, first, second):
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:multi",
           f"docker://{D}/lib/app:moving")
    digest = lambda: request("HEAD", f"http://{M}/v2/lib/app/manifests/moving")[1].get(
        "docker-content-digest")
    a = digest()
    skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
           f"oci:{layout}:multiarch", f"docker://{D}/lib/app:moving")
    b = digest()
    check("a tag moved upstream is not seen before the TTL", a == first and b == first, f"{a} {b}")
    time.sleep(TTL + 0.5)
    c = digest()
    check("... and is seen after it", c == second, f"{c}")


def single_fetch_check(D, M, dist_log):
    data = secrets.token_bytes(BIG)
    d = push_blob(D, "lib/big", data)
    if not d:
        not_ok("eight concurrent pulls of a cold layer", "seeding it failed")
        return
    results = [None] * 8
    ttfb = [None] * 8
    def pull(i):
        t0 = time.monotonic()
        u = urllib.request.urlopen(f"http://{M}/v2/lib/big/blobs/{d}", timeout=120)
        h = hashlib.sha256()
        first = u.read(65536)
        ttfb[i] = time.monotonic() - t0
        h.update(first)
        while True:
            c = u.read(1 << 20)
            if not c:
                break
            h.update(c)
        results[i] = "sha256:" + h.hexdigest()
    t0 = time.monotonic()
    threads = [threading.Thread(target=pull, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    gets = dist_gets(dist_log, f"/v2/lib/big/blobs/{d}")
    check(f"eight concurrent pulls of one cold {BIG >> 20} MiB layer: all verified",
          results == [d] * 8, str(results))
    check("... from exactly one upstream GET", gets == 1, f"{gets} GETs upstream")
    print(f"# 8 x {BIG >> 20} MiB cold through the mirror: {took:.2f} s, first byte "
          f"{min(ttfb) * 1000:.0f}-{max(ttfb) * 1000:.0f} ms")


def push_blob(D, repo, data):
    """A monolithic push to Distribution; the digest."""
    d = sha(data)
    s, h, _ = request("POST", f"http://{D}/v2/{repo}/blobs/uploads/")
    loc = h["location"]
    loc = loc if loc.startswith("http") else f"http://{D}{loc}"
    loc += ("&" if "?" in loc else "?") + f"digest={d}"
    s, _, _ = request("PUT", loc, {"Content-Type": "application/octet-stream"}, data)
    return d if s == 201 else None


def corrupt_check(D, M, proxy):
    layer = push_blob(D, "lib/cor", secrets.token_bytes(3 << 20))
    proxy.corrupt = True
    url = f"http://{M}/v2/bad/lib/cor/blobs/{layer}"
    try:
        data = urllib.request.urlopen(url, timeout=60).read()
        why = f"the body came complete ({sha(data)})"
        failed = False
    except Exception:  # the connection is cut before the last byte
        why, failed = "", True
    check("a corrupt upstream layer ends the download in an error, before its last byte",
          failed, why)
    proxy.corrupt = False
    path = f"/v2/lib/cor/blobs/{layer}"
    n = proxy.gets.get(path, 0)
    data = urllib.request.urlopen(url, timeout=60).read()
    check("... nothing of it was cached: the next pull fetches again, and gets it right",
          n == 1 and sha(data) == layer and proxy.gets.get(path, 0) == 2, f"{proxy.gets}")


def push_refused_check(M, layout):
    code, out = skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:multi",
                       f"docker://{M}/lib/app:pushed")
    s, _, body = request("POST", f"http://{M}/v2/lib/app/blobs/uploads/")
    check("pushes to a mirrored repository are refused with UNSUPPORTED",
          code != 0 and s == 405 and b"UNSUPPORTED" in body, f"{code} {s} {body[:200]}")


if __name__ == "__main__":
    try:
        main()
    except SystemExit as e:
        if e.code and not isinstance(e.code, int):
            print(e.code)
            FAILED += 1
    finally:
        for p in PROCS:
            stop(p)
        if os.environ.get("MIRROR_KEEP") == "1":
            print(f"# kept {WORK}")
        else:
            shutil.rmtree(WORK, ignore_errors=True)
    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)
