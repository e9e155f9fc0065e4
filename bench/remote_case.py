#!/usr/bin/python3
"""The ``remote`` case: the first mosaic size read over HTTP from nginx against local reads.

    /usr/bin/python3 bench/run.py --only remote               # the 4k case
    /usr/bin/python3 bench/run.py --only remote --scale ci    # seconds

The inputs of the scale's first mosaic size (bench/data.py; 4k at scale small) are
served by nginx on 127.0.0.1 (a free port, tools/loopback.py) and mosaicked by our CLI
from their ``http://`` URLs and from the local files, interleaved and repeated, with the
same options. Reported: median wall and CPU seconds, peak RSS, the remote/local time
ratio (goal: at most 1.5x), the HTTP requests and bytes of one remote run, and whether
the two outputs are pixel-identical (a difference fails the benchmark). Skipped with a
note when nginx is not installed.
"""

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import data  # noqa: E402
from loopback import Nginx  # noqa: E402

GOAL = 1.5  # remote time / local time


def run_case(bench, size):
    """Measure ``size`` (a dict of bench/run.py's SCALES) local and remote.

    Returns
    -------
    dict or None
        The case's numbers (see :func:`markdown`), None when nginx is missing (a note
        is added to the benchmark).
    """
    if not Nginx.available():
        bench.notes.append("remote case skipped: nginx is not installed "
                           "(tools/ensure-deps.sh bench installs nginx-light)")
        print("  " + bench.notes[-1], flush=True)
        return None
    info = data.mosaic_set(grid=size["grid"], tile=size["tile"], overlap=size["overlap"],
                           noise=bench.args.noise)
    paths = [os.path.join(info["folder"], p) for p in info["inputs"]]
    root = tempfile.mkdtemp(prefix="bench-remote-")
    server = Nginx(root)
    for path in paths:  # served where they are: no copy
        os.symlink(path, os.path.join(server.data, os.path.basename(path)))
    server.start()
    try:
        urls = [server.url(os.path.basename(p)) for p in paths]
        case = {"name": f"remote {size['name']}", "width": info["width"],
                "height": info["height"], "inputs": len(paths),
                "input_bytes": sum(os.path.getsize(p) for p in paths)}
        print(f"case {case['name']}: {len(paths)} inputs from nginx on 127.0.0.1:{server.port} "
              f"and from local files, {size['repeats']} round(s)", flush=True)
        tools = [bench.ours(paths, "lzw", key="sm-local", label="streaming_mosaic, local files"),
                 bench.ours(urls, "lzw", key="sm-http",
                            label="streaming_mosaic, http:// from nginx")]
        _fresh_log(tools[1], server)
        outputs = bench.run_tools(case, tools, size["repeats"], info["folder"], "sm-local",
                                  {"sm-http"})
        requests = server.requests()
        case.update(requests=len(requests), http_bytes=sum(r["bytes"] for r in requests))
        bench.cleanup(outputs)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    rows = {r["key"]: r for r in case["rows"]}
    local, remote = rows["sm-local"]["summary"], rows["sm-http"]["summary"]
    if local and remote:
        case["ratio"] = remote["wall"] / local["wall"]
        case["cpu_ratio"] = remote["cpu_s"] / max(local["cpu_s"], 1e-9)
    return case


def _fresh_log(tool, server):
    """Make each run of ``tool`` start with an empty access log: local runs send no
    request, so the log then holds the last remote run's requests."""
    argv = tool.argv

    def wrapped(out):
        server.clear_log()
        return argv(out)

    tool.argv = wrapped


def markdown(case):
    """The case as a short Markdown section (one table, one line of traffic)."""
    loads = sorted(m["load"] for row in case["rows"] for m in row["runs"])
    load = loads[len(loads) // 2] if loads else float("nan")
    lines = [f"**Remote inputs** ({case['inputs']} inputs, {case['width']}x{case['height']} px, "
             f"served by nginx on 127.0.0.1; median load average {load:.1f})", "",
             "| inputs | time (s) | CPU (s) | peak RSS (MB) | pixels |", "|---|---:|---:|---:|---|"]
    for row in case["rows"]:
        s = row["summary"]
        if not s:
            lines.append(f"| {row['label']} | failed: {row['error']} | | | |")
            continue
        pixels = ("identical to local" if (row.get("compare") or {}).get("identical")
                  else "reference" if row["key"] == "sm-local" else "**differ**")
        lines.append(f"| {row['label']} | {s['wall']:.2f} ({s['wall_min']:.2f}-"
                     f"{s['wall_max']:.2f}) | {s['cpu_s']:.1f} | {s['rss_mb']:.0f} | {pixels} |")
    if "ratio" in case:
        met = "met" if case["ratio"] <= GOAL else "**not met**"
        lines += ["", f"Remote / local: {case['ratio']:.2f}x wall time ({met}: goal "
                  f"{GOAL}x), {case['cpu_ratio']:.2f}x CPU time."]
    if case.get("requests"):
        lines.append(f"One remote run: {case['requests']} HTTP requests, "
                     f"{case['http_bytes'] / 2**20:.1f} MB sent for "
                     f"{case['input_bytes'] / 2**20:.1f} MB of input files.")
    return "\n".join(lines)
