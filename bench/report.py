#!/usr/bin/env python3
"""Helpers for bench/run.sh (and bench/worker.sh).

  report.py parse-wrk FILE      -> "rps p50_ms p99_ms errors" from wrk --latency output
  report.py parse-hey FILE      -> the same from hey output (rps counts 2xx answers only)
  report.py report RESULTS META ANALYSIS  -> BENCHMARKS.md on stdout
  report.py report-s3 RESULTS META        -> the S3 section (bench/run.sh --s3)
  report.py report-worker RESULTS META    -> the Worker section (bench/worker.sh)
  report.py splice OUT SECTION NAME       -> SECTION between NAME's markers in OUT

RESULTS holds one sample per line: test, who (berth, dist, limit, loopback), repetition,
metric, value, tab-separated. The table quotes medians; the appendix lists every sample.
"""

import re
import statistics
import sys
from collections import defaultdict


def parse_wrk(path):
    text = open(path).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)

    def ms(label):
        m = re.search(r"^\s+" + label + r"%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    value = float(rps.group(1)) if rps else float("nan")
    if bad and total:
        # wrk's Requests/sec counts error answers too: keep only the good ones.
        seconds = float(total.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}.get(total.group(3), 1.0)
        value = (int(total.group(1)) - int(bad.group(1))) / seconds
    print(f"{value:.1f} {ms('50'):.3f} {ms('99'):.3f} {errors}")


def parse_hey(path):
    text = open(path).read()
    total = re.search(r"Total:\s+([\d.]+) secs", text)
    ok = sum(int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text) if code.startswith("2"))
    all_answers = sum(int(n) for n in re.findall(r"\[\d{3}\]\s+(\d+) responses", text))
    errors_part = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    failed = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", errors_part, re.M))

    def ms(label):
        m = re.search(r"^\s+" + label + r"%+ in ([\d.]+) secs", text, re.M)
        return float(m.group(1)) * 1000 if m else float("nan")

    seconds = float(total.group(1)) if total else float("nan")
    rps = ok / seconds if total and seconds else float("nan")
    print(f"{rps:.1f} {ms('50'):.3f} {ms('99'):.3f} {all_answers - ok + failed}")


def load(path):
    data = defaultdict(list)
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        test, who, _rep, metric, value = parts
        try:
            data[(test, who, metric)].append(float(value))
        except ValueError:
            pass
    return data


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else None


# (key, label, kind, limit key, target): kind is "gbps", "rps", "rss" or "cpu";
# a target is ("limit", fraction), ("dist", factor) or ("max", value in the row's unit).
ROWS = [
    ("push_mono", "Push 1 GiB blob: POST, then PUT with the body", "gbps", ("push_mono", "limit"), ("limit", 0.75)),
    ("push_single", "Push 1 GiB blob: single POST with `?digest=`", "gbps", ("push_mono", "limit"), ("limit", 0.75)),
    ("push_chunked", "Push 1 GiB blob: POST, 16 MiB PATCHes, PUT", "gbps", ("push_mono", "limit"), ("limit", 0.75)),
    ("pull_first", "First GET of a 1 GiB blob right after its push (nginx: after writing the file)", "gbps", ("pull_first", "limit"), ("limit", 0.90)),
    ("pull_null", "Pull 1 GiB blob: GET to /dev/null", "gbps", ("pull_null", "limit"), ("limit", 0.90)),
    ("pull_sha", "Pull 1 GiB blob: GET piped through `openssl dgst -sha256`", "gbps", ("pull_sha", "limit"), ("limit", 0.90)),
    ("skopeo_push", "skopeo push, 5-layer image (fresh blob-info cache)", "gbps", None, None),
    ("skopeo_pull", "skopeo pull, 5-layer image (fresh blob-info cache)", "gbps", None, None),
    ("manifest_get_tag", "Manifest GET by tag", "rps", ("manifest_get_tag", "limit"), ("dist", 20)),
    ("manifest_get_digest", "Manifest GET by digest", "rps", ("manifest_get_tag", "limit"), ("dist", 20)),
    ("manifest_head_tag", "Manifest HEAD by tag (hey)", "rps", None, None),
    ("manifest_head_digest", "Manifest HEAD by digest (hey)", "rps", None, None),
    ("blob_get_2k", "2 kB blob GET", "rps", ("blob_get_2k", "limit"), None),
    ("rss_push", "Peak RSS during the 1 GiB pushes (VmHWM)", "rss", None, ("max", 32)),
    ("rss_pull", "Peak RSS during the 1 GiB pulls (VmHWM)", "rss", None, None),
    ("cpu_push", "CPU seconds per GB pushed (POST + PUT)", "cpu", None, None),
    ("cpu_pull", "CPU seconds per GB pulled (GET to /dev/null)", "cpu", None, None),
]

LIMIT_NAMES = {
    "push_mono": "upload into a sink that only hashes (OpenSSL SHA-256)",
    "pull_first": "nginx sendfile GET of a file just written",
    "pull_null": "nginx sendfile GET",
    "pull_sha": "nginx sendfile GET through `openssl dgst -sha256`",
    "manifest_get_tag": "nginx, the same manifest as a static file",
    "blob_get_2k": "nginx, the same 2 kB file",
}


def fmt_num(x, digits=3):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}".replace(",", "\u202f")
    return f"{x:.{digits}g}"


def fmt_ms(x):
    if x is None or x != x:
        return "?"
    return f"{x:.2f} ms" if x < 1 else f"{x:.1f} ms" if x < 10 else f"{x:.0f} ms"


class Samples:
    """The raw samples of a run, and how one figure reads in a table cell."""

    def __init__(self, results):
        self.data = load(results)

    def of(self, test, who, metric):
        return self.data.get((test, who, metric), [])

    def med(self, test, who, metric):
        return median(self.of(test, who, metric))

    def value(self, key, who, kind):
        if key in ("rss_push", "rss_pull"):
            tests = ("push_mono", "push_single", "push_chunked") if key == "rss_push" else ("pull_first", "pull_null", "pull_sha")
            xs = [x for t in tests for x in self.of(t, who, "rss_kib")]
            return max(xs) / 1024 if xs else None
        if key in ("cpu_push", "cpu_pull"):
            return self.med("push_mono" if key == "cpu_push" else "pull_null", who, "cpu_s_per_gb")
        return self.med(key, who, "gbps" if kind == "gbps" else "rps")

    def cell(self, key, kind, who):
        v = self.value(key, who, kind)
        if v is None:
            if self.of(key, who, "unsupported"):
                return "not supported"
            if self.of(key, who, "fail"):
                return "failed"
            return "—"
        if kind == "gbps":
            return f"{v:.3f} GB/s"
        if kind == "rps":
            p50, p99 = self.med(key, who, "p50_ms"), self.med(key, who, "p99_ms")
            errors = sum(self.of(key, who, "errors"))
            s = f"{fmt_num(v)}/s (p50 {fmt_ms(p50)}, p99 {fmt_ms(p99)})"
            return s + (f", {errors:.0f} errors" if errors else "")
        if kind == "rss":
            return f"{v:.1f} MiB"
        return f"{v:.2f} s"


def report(results, meta_path, analysis_path):
    run = Samples(results)
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(meta_path) if "=" in line)
    med, samples, cell = run.med, run.of, run.cell

    def value(key, who):
        return run.value(key, who, next((r[2] for r in ROWS if r[0] == key), None))

    out = []
    out.append("# Benchmarks: berth beside CNCF Distribution\n")
    out.append(
        "Written by `bench/run.sh` (see the README). Both registries run on 127.0.0.1 with fresh "
        "filesystem storage and their default logging; the machine's limits are measured in the "
        "same run. Each figure is the median of the repetitions, the contenders alternating; "
        "GB = 10^9 bytes. Ratios above 1 favour berth, except for RSS and CPU, where lower is "
        "better.\n"
    )
    out.append(
        f"Run: {meta.get('date', '?')}, mode {meta.get('mode')}, {meta.get('reps')} repetitions, "
        f"load runs of {meta.get('duration')} s at {meta.get('conns')} connections, blob "
        f"{int(meta.get('blob_bytes', 0)) / 2**20:.0f} MiB, image {int(meta.get('image_bytes', 0)) / 1e6:.0f} MB. "
        f"Machine: {meta.get('cpu')} (SHA-NI: {meta.get('sha_ni')}), load average at the end "
        f"{meta.get('load')}. berth {meta.get('berth')}; {meta.get('distribution')}; "
        f"{meta.get('tools')}.\n"
    )
    out.append("| | berth | Distribution 2.8 | berth / Distribution | machine limit | berth / limit | target | |")
    out.append("|---|---|---|---|---|---|---|---|")
    misses = []
    for key, label, kind, limit_key, target in ROWS:
        b, d = value(key, "berth"), value(key, "dist")
        ratio = f"{b / d:.2f}×" if b and d else "—"
        limit = med(*limit_key, "gbps" if kind == "gbps" else "rps") if limit_key else None
        if limit is None:
            limit_cell, frac = "—", "—"
        else:
            unit = "GB/s" if kind == "gbps" else "/s"
            limit_cell = f"{fmt_num(limit)} {unit}".replace(" /s", "/s")
            frac = f"{b / limit:.0%}" if b else "—"
        target_cell, verdict = "—", ""
        if target and b is not None:
            how, x = target
            if how == "limit" and limit:
                target_cell = f"≥ {x:.0%} of limit"
                ok = b >= x * limit
            elif how == "dist" and d:
                target_cell = f"≥ {x}× Distribution"
                ok = b >= x * d
            elif how == "max":
                target_cell = f"≤ {x} MiB"
                ok = b <= x
            else:
                ok = None
            if ok is not None:
                verdict = "met" if ok else "**missed**"
                if not ok:
                    misses.append(label)
        out.append(
            f"| {label} | {cell(key, kind, 'berth')} | {cell(key, kind, 'dist')} | {ratio} | "
            f"{limit_cell} | {frac} | {target_cell} | {verdict} |"
        )
    loop = med("push_mono", "loopback", "gbps")
    out.append("")
    out.append("Machine limits, measured in the same run:")
    for key, name in LIMIT_NAMES.items():
        kind = "gbps" if key.startswith(("push", "pull")) else "rps"
        v = med(key, "limit", kind)
        unit = "GB/s" if kind == "gbps" else "requests/s"
        out.append(f"- {name}: {fmt_num(v)} {unit}")
    if loop:
        out.append(f"- upload into a sink that does not hash (loopback TCP alone): {loop:.3f} GB/s")
    durable = med("push_mono", "durable", "gbps")
    if durable:
        b = value("push_mono", "berth")
        frac = f" (berth's POST + PUT: {b / durable:.0%} of it)" if b else ""
        out.append(
            f"- upload into a sink that hashes, writes to a file beside the registries' data and "
            f"fsyncs it before answering, as a registry must before a 201: {durable:.3f} GB/s{frac}"
        )
    out.append("")
    if misses:
        out.append("Targets missed in this run: " + "; ".join(misses) + ". See the analysis below.\n")
    else:
        out.append("Every target was met in this run.\n")
    try:
        out.append(open(analysis_path).read().rstrip() + "\n")
    except OSError:
        pass
    out.append("## Every sample\n")
    out.append("Per row and contender, the repetitions in order (GB/s, requests/s, KiB, CPU s/GB).\n")
    out.append("| test | who | metric | samples |")
    out.append("|---|---|---|---|")
    for (test, who, metric), xs in sorted(run.data.items()):
        if metric in ("gbps", "rps", "rss_kib", "cpu_s_per_gb", "p99_ms"):
            out.append(f"| {test} | {who} | {metric} | {', '.join(f'{x:.4g}' for x in xs)} |")
    print("\n".join(out))


# S3 mode (bench/run.sh --s3): the limit is the bucket itself; targets are the issue's.
S3_ROWS = [
    ("push_mono", "Push 1 GiB blob: POST, then PUT with the body", "gbps", ("push_mono", "limit"), ("dist", 3)),
    ("push_single", "Push 1 GiB blob: single POST with `?digest=`", "gbps", ("push_mono", "limit"), None),
    ("push_chunked", "Push 1 GiB blob: POST, 16 MiB PATCHes, PUT", "gbps", ("push_mono", "limit"), ("dist", 3)),
    ("pull_null", "Pull 1 GiB blob: GET to /dev/null", "gbps", ("pull_null", "limit"), None),
    ("pull_sha", "Pull 1 GiB blob: GET piped through `openssl dgst -sha256`", "gbps", ("pull_sha", "limit"), None),
    ("skopeo_push", "skopeo push, 5-layer image (fresh blob-info cache)", "gbps", None, None),
    ("skopeo_pull", "skopeo pull, 5-layer image (fresh blob-info cache)", "gbps", None, None),
    ("manifest_get_tag", "Manifest GET by tag", "rps", None, ("dist", 20)),
    ("manifest_get_digest", "Manifest GET by digest", "rps", None, ("dist", 20)),
    ("manifest_head_tag", "Manifest HEAD by tag (hey)", "rps", None, None),
    ("manifest_head_digest", "Manifest HEAD by digest (hey)", "rps", None, None),
    ("blob_get_2k", "2 kB blob GET", "rps", None, None),
    ("rss_push", "Peak RSS during the 1 GiB pushes (VmHWM)", "rss", None, None),
    ("rss_pull", "Peak RSS during the 1 GiB pulls (VmHWM)", "rss", None, None),
    ("cpu_push", "CPU seconds per GB pushed (POST + PUT)", "cpu", None, None),
    ("cpu_pull", "CPU seconds per GB pulled (GET to /dev/null)", "cpu", None, None),
]


def report_s3(results, meta_path):
    run = Samples(results)
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(meta_path) if "=" in line)
    med, samples, value, cell = run.med, run.of, run.value, run.cell

    out = ["## On S3 storage: berth beside Distribution on one SeaweedFS\n"]
    out.append(
        "Written by `bench/run.sh --s3`. Both registries on one SeaweedFS (`weed mini`, one "
        "process: master, volume, filer and S3 gateway) on 127.0.0.1, each in its own bucket; "
        "Distribution with its S3 driver (`regionendpoint`, `forcepathstyle: true`, 16 MiB "
        "chunks, `redirect: disable: true`), berth with `--storage s3://`. The limit column is "
        "the bucket itself: one SigV4-signed curl PUT, and GETs, of the same 1 GiB object. "
        "SeaweedFS shares the 2 cores with the registry it serves, so every figure here is "
        "also SeaweedFS's cost. Medians of the repetitions, contenders alternating; GB = 10^9 "
        "bytes.\n"
    )
    out.append(
        f"Run: {meta.get('date', '?')}, {meta.get('reps')} repetitions, load runs of "
        f"{meta.get('duration')} s at {meta.get('conns')} connections, blob "
        f"{int(meta.get('blob_bytes', 0)) / 2**20:.0f} MiB, image {int(meta.get('image_bytes', 0)) / 1e6:.0f} MB. "
        f"Machine: {meta.get('cpu')}, load average at the end {meta.get('load')}. berth "
        f"{meta.get('berth')}; {meta.get('distribution')}; SeaweedFS {meta.get('seaweedfs', '?')}.\n"
    )
    out.append("| | berth | Distribution 2.8 | berth / Distribution | bucket limit | berth / limit | target | |")
    out.append("|---|---|---|---|---|---|---|---|")
    misses, above_bucket = [], []
    for key, label, kind, limit_key, target in S3_ROWS:
        b, d = value(key, "berth", kind), value(key, "dist", kind)
        ratio = f"{b / d:.2f}×" if b and d else "—"
        limit = med(*limit_key, "gbps") if limit_key else None
        limit_cell = f"{fmt_num(limit)} GB/s" if limit else "—"
        frac = f"{b / limit:.0%}" if limit and b else "—"
        target_cell, verdict = "—", ""
        if target and b is not None and d:
            target_cell = f"≥ {target[1]}× Distribution"
            ok = b >= target[1] * d
            verdict = "met" if ok else "**missed**"
            if not ok:
                misses.append(label)
                if limit and limit < target[1] * d:
                    above_bucket.append(f"{label} ({limit / d:.2f}×)")
        out.append(
            f"| {label} | {cell(key, kind, 'berth')} | {cell(key, kind, 'dist')} | {ratio} | "
            f"{limit_cell} | {frac} | {target_cell} | {verdict} |"
        )
    for key, label in (("pull_null", "GET to /dev/null"), ("pull_sha", "GET through `openssl dgst -sha256`")):
        r = med(key, "redir", "gbps")
        if r is None:
            continue
        limit = med(key, "limit", "gbps")
        rss = max(samples(key, "redir", "rss_kib") or [0]) / 1024
        cpu = med(key, "redir", "cpu_s_per_gb")
        out.append(
            f"| Pull 1 GiB blob, berth `--redirect` (curl -L, bytes from the bucket): {label} | "
            f"{r:.3f} GB/s (berth's peak RSS {rss:.1f} MiB, CPU {cpu:.2f} s/GB) | — | — | "
            f"{fmt_num(limit)} GB/s | {r / limit:.0%} | — | |" if limit else
            f"| Pull 1 GiB blob, berth `--redirect`: {label} | {r:.3f} GB/s | — | — | — | — | — | |"
        )
    out.append("")
    if misses:
        out.append("Targets missed in this run: " + "; ".join(misses) + ".\n")
    else:
        out.append("Every target was met in this run.\n")
    if above_bucket:
        out.append("Where the bucket itself (the limit column) was slower than the target asks of "
                   "berth, so that no registry in front of it could meet the target in this run, "
                   "the bucket's own ratio to Distribution: " + "; ".join(above_bucket) + ".\n")
    rows = []
    for who, name in (("berth", "berth"), ("dist", "Distribution 2.8 (referrers and tags pagination checks off, as in tests/e2e/distribution.sh)")):
        cells = []
        for storage in ("fs", "s3"):
            p, f = med(f"suites_{storage}", who, "passed"), med(f"suites_{storage}", who, "failed")
            cells.append("—" if p is None else f"{p:.0f} passed, {f:.0f} failed")
        if any(c != "—" for c in cells):
            rows.append(f"| {name} | {cells[0]} | {cells[1]} |")
    if rows:
        out.append("The end-to-end client checks (`tests/e2e/suites.sh`: skopeo, podman, oras, curl, "
                   "berth's client), against each registry on a fresh filesystem root and on S3:\n")
        out.append("| | filesystem | S3 (SeaweedFS) |")
        out.append("|---|---|---|")
        out.extend(rows)
        out.append("")
    out.append("<details><summary>Every sample</summary>\n")
    out.append("| test | who | metric | samples |")
    out.append("|---|---|---|---|")
    for (test, who, metric), xs in sorted(run.data.items()):
        if metric in ("gbps", "rps", "rss_kib", "cpu_s_per_gb", "p99_ms", "passed", "failed"):
            out.append(f"| {test} | {who} | {metric} | {', '.join(f'{x:.4g}' for x in xs)} |")
    out.append("\n</details>")
    print("\n".join(out))


MARKERS = {
    "main": ("<!-- main begin: bench/run.sh writes this section -->", "<!-- main end -->"),
    "s3": ("<!-- s3 begin: bench/run.sh --s3 writes this section -->", "<!-- s3 end -->"),
    "worker": ("<!-- worker begin: bench/worker.sh writes this section -->", "<!-- worker end -->"),
    "load": ("<!-- load begin: bench/load.sh writes this section -->", "<!-- load end -->"),
}


def report_worker(results_path, meta_path):
    """bench/worker.sh's section: pushes through the Worker under wrangler dev, and the limit."""
    data = load(results_path)
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(meta_path) if "=" in line)
    blob = meta.get("blob_mb", "?")
    part = meta.get("part_mb") or "?"

    def chunk_mb(who):
        return int(who.split(":", 1)[1])

    whos = sorted({who for (test, who, _m) in data if test == "push"},
                  key=lambda w: (w != "mono", w == "limit", chunk_mb(w) if ":" in w else 0))
    label = {
        "mono": "berth: POST, then PUT with the body (monolithic)",
        "limit": "plain-JS Worker: PUT streamed into R2 (the local limit)",
    }
    mono = median(data.get(("push", "mono", "mibps"), []))
    limit = median(data.get(("push", "limit", "mibps"), []))
    out = [
        "## The Worker under local `wrangler dev`",
        "",
        "Written by `bench/worker.sh`. berth's Worker (worker/build, as deployed) served by "
        "`wrangler dev --local`, R2 simulated on disk, on 127.0.0.1; curl pushes fresh random "
        f"{blob} MiB blobs. The limit is a plain-JS Worker (bench/worker-limit/) that streams a "
        "PUT's body into its own R2 bucket and does nothing else: no hashing, no wasm, no session. "
        "MiB/s counts the whole push (every request of it). workerd and curl share this machine's "
        "2 cores with whatever else runs on it: the figures are noisy, so the range is given with "
        f"the median. The Worker advertises OCI-Chunk-Min-Length {part} MiB, its R2 part size.",
        "",
        f"Run: {meta.get('date', '?')}, {meta.get('reps', '?')} repetitions, contenders "
        f"alternating. Machine: {meta.get('cpu', '?')}, load average at the end "
        f"{meta.get('load', '?')}. berth {meta.get('berth', '?')}; wasm {meta.get('wasm_gz', '?')} "
        f"bytes gzipped; wrangler {meta.get('wrangler', '?')}.",
        "",
        "| push | MiB/s (median) | range | / monolithic | / limit | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for who in whos:
        xs = [x for x in data.get(("push", who, "mibps"), []) if x == x]
        if not xs:
            continue
        m = median(xs)
        name = label.get(who) or f"berth: POST, {chunk_mb(who)} MiB PATCHes, PUT ?digest= (chunked)"
        chunked = who not in ("mono", "limit")
        vs_mono = f"{m / mono:.0%}" if mono and chunked else "—"
        vs_limit = f"{m / limit:.0%}" if limit and who != "limit" else "—"
        # Issue 17: a chunked push at 80% or more of the monolithic one through the same Worker.
        target, verdict = ("≥ 80% of monolithic", "met" if m >= 0.8 * mono else "**missed**") \
            if mono and chunked else ("—", "")
        out.append(f"| {name} | {m:.1f} | {min(xs):.1f}–{max(xs):.1f} | {vs_mono} | {vs_limit} "
                   f"| {target} | {verdict} |")
    out.append("")
    out.append("<details><summary>Every sample (MiB/s)</summary>\n")
    out.append("| push | samples |")
    out.append("|---|---|")
    for who in whos:
        xs = data.get(("push", who, "mibps"), [])
        out.append(f"| {who} | {', '.join(f'{x:.1f}' for x in xs)} |")
    out.append("\n</details>")
    print("\n".join(out))


def splice(out_path, section_path, name="s3"):
    """Replace the section NAME between its markers in OUT; without them, the main section goes
    first and any other last. The rest of OUT (sections other scripts write) stays."""
    begin, end = MARKERS[name]
    new = open(section_path).read().rstrip("\n")
    try:
        text = open(out_path).read()
    except FileNotFoundError:
        text = ""
    section = f"{begin}\n{new}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    elif name == "main":
        text = section + "\n\n" + text.lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    open(out_path, "w").write(text.rstrip("\n") + "\n")


def main():
    cmd = sys.argv[1]
    if cmd == "parse-wrk":
        parse_wrk(sys.argv[2])
    elif cmd == "parse-hey":
        parse_hey(sys.argv[2])
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "report-s3":
        report_s3(sys.argv[2], sys.argv[3])
    elif cmd == "report-worker":
        report_worker(sys.argv[2], sys.argv[3])
    elif cmd == "splice":
        splice(*sys.argv[2:5])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
