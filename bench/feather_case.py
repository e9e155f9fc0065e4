#!/usr/bin/python3
"""The ``feather`` case: METHOD=feather against Orfeo ToolBox's feathering.

    /usr/bin/python3 bench/run.py --only feather

3x3 tiles of 2000 px (3-band uint16, nodata collars and holes, LZW inputs, 200 px
overlaps: a 5600 x 5600 mosaic) blended with FEATHER_DISTANCE 32 at MEMORY_MB, again
with an uncompressed output (as OTB's), and with ``otbcli_Mosaic -comp.feather large
-nodata 0 -ram MEMORY_MB`` (Debian package otb-bin), interleaved, each a child process
under /usr/bin/time: wall and CPU seconds, peak RSS. The target (issue 12): ours <= 0.7x
OTB's time, at <= MEMORY_MB + the interpreter's baseline.
"""

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import data  # noqa: E402
from links import package_link  # noqa: E402
from measure import run_child  # noqa: E402

OTB = shutil.which("otbcli_Mosaic") or "/usr/bin/otbcli_Mosaic"
TARGET = 0.7
RAW = "streaming_mosaic, uncompressed"


def run_case(memory_mb=256, repeats=3, tile=2000, distance=32):
    info = data.mosaic_set(grid=3, tile=tile, overlap=200)
    folder = info["folder"]
    out = os.path.join(data.OUT, "runs", "feather")
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=package_link(os.path.join(out, "pkg")))
    ours, raw = os.path.join(out, "ours.tif"), os.path.join(out, "ours-raw.tif")
    argv = [sys.executable, "-m", "streaming_mosaic", *info["inputs"], "--quiet", "--method",
            "feather", "--feather-distance", str(distance), "--memory-mb", str(memory_mb)]
    tools = {"streaming_mosaic": (argv + ["-o", ours], ours),
             # Like for like: OTB writes its output uncompressed.
             RAW: (argv + ["-o", raw, "--compress", "none"], raw)}
    if os.path.exists(OTB):
        otb = os.path.join(out, "otb.tif")
        tools["OTB Mosaic"] = ([OTB, "-il", *info["inputs"], "-out", otb, "uint16",
                                "-comp.feather", "large", "-nodata", "0", "-ram",
                                str(memory_mb)], otb)
    runs = {name: [] for name in tools}
    for r in range(repeats):
        order = list(tools.items())
        for name, (argv, path) in order[r % len(order):] + order[:r % len(order)]:
            m = run_child(argv, cwd=folder, env=env, output=path)
            runs[name].append(m)
            print(f"    [{r + 1}/{repeats}] {name:<17} {m['wall']:6.2f} s, CPU "
                  f"{m['user'] + m['sys']:6.2f} s, {m['rss_mb']:5.0f} MB, load {m['load']:.1f}",
                  flush=True)
    for _, path in tools.values():
        if os.path.exists(path):
            os.remove(path)
    rows = [_row(name, ms, info, distance, memory_mb) for name, ms in runs.items()]
    if len(rows) == 3:
        for row in rows[:2]:
            row["ratio"] = row["wall"] / rows[2]["wall"]
            row["cpu_ratio"] = row["cpu"] / rows[2]["cpu"]
    return rows


def _row(name, ms, info, distance, memory_mb):
    def median(values):
        values = sorted(values)
        return values[len(values) // 2]
    return dict(name=name, wall=median(m["wall"] for m in ms),
                cpu=median(m["user"] + m["sys"] for m in ms),
                peak_mb=max(m["rss_mb"] for m in ms), load=median(m["load"] for m in ms),
                width=info["width"], inputs=len(info["inputs"]), distance=distance,
                memory_mb=memory_mb)


def markdown(rows):
    first = rows[0]
    lines = [f"| feather, {first['inputs']} inputs -> {first['width']}² px, FEATHER_DISTANCE "
             f"{first['distance']}, MEMORY_MB / -ram {first['memory_mb']} | time s | CPU s | "
             "peak MB | load |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['peak_mb']:.0f} | "
              f"{r['load']:.1f} |" for r in rows]
    if "ratio" in first:
        met = "met" if first["ratio"] <= TARGET else "not met"
        lines.append(f"\nOurs / OTB: {first['ratio']:.2f}x time, {first['cpu_ratio']:.2f}x CPU "
                     f"(target <= {TARGET}x: {met}); {RAW}: {rows[1]['ratio']:.2f}x time, "
                     f"{rows[1]['cpu_ratio']:.2f}x CPU.")
    else:
        lines.append("\notbcli_Mosaic is not installed: no OTB row.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run_case()))
