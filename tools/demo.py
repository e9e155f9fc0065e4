"""make demo: generate a demo tile set and mosaic it through qgis_process.

Prints the output path, wall time and peak memory of the qgis_process run.
The QGIS profile is a throwaway folder under the build folder, never yours.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from links import package_link  # noqa: E402

from synth import tile_set  # noqa: E402


def qgis_env(build):
    """Environment for qgis_process.bin: headless, throwaway profile, this plugin."""
    plugins = package_link(os.path.join(build, "plugins"))
    runtime = os.path.join(build, "xdg")
    tmp = os.path.join(build, "tmp")
    for folder in (runtime, tmp):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=runtime, TMPDIR=tmp,
               QGIS_CUSTOM_CONFIG_PATH=os.path.join(build, "profile"), QGIS_PLUGINPATH=plugins)
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", default="build/demo")
    parser.add_argument("--tiles", type=int, default=3, help="tiles per side")
    parser.add_argument("--size", type=int, default=1500, help="tile side (pixels)")
    args = parser.parse_args()
    build = os.path.abspath(args.build)
    tiles_dir = os.path.join(build, "tiles")
    stamp = os.path.join(tiles_dir, "params.json")
    params = {"tiles": args.tiles, "size": args.size, "version": 2}
    if not os.path.exists(stamp) or json.load(open(stamp)) != params:
        shutil.rmtree(tiles_dir, ignore_errors=True)
        os.makedirs(tiles_dir)
        print(f"generating {args.tiles}x{args.tiles} tiles of {args.size} px in {tiles_dir}")
        tile_set(tiles_dir, seed=1, grid=(args.tiles, args.tiles), size=(args.size, args.size),
                 overlap=args.size // 10, bands=3, dtype="uint16", nodata=0, holes=False,
                 collar=args.size // 50, low=200, high=12000, noise=0.01)
        with open(stamp, "w") as fh:
            json.dump(params, fh)
    tiles = sorted(os.path.join(tiles_dir, f) for f in os.listdir(tiles_dir) if f.endswith(".tif"))

    env = qgis_env(build)
    enable = subprocess.run(["qgis_process.bin", "plugins", "enable", "streaming_mosaic"],
                            env=env, capture_output=True, text=True)
    if enable.returncode != 0 and "already enabled" not in enable.stdout + enable.stderr:
        sys.exit(f"demo: qgis_process cannot enable the plugin:\n{enable.stdout}{enable.stderr}")
    output = os.path.join(build, "mosaic.tif")
    cmd = ["/usr/bin/time", "-f", "%M", "qgis_process.bin", "run", "streamingmosaic:mosaic",
           "--"] + [f"INPUT={t}" for t in tiles] + [f"OUTPUT={output}", "METHOD=0"]
    print("running:", " ".join(cmd[3:6]), "-- INPUT=... OUTPUT=" + output)
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0 or not os.path.exists(output):
        sys.exit(f"demo: the mosaic failed:\n{proc.stdout}{proc.stderr}")
    peak_mb = int(proc.stderr.strip().splitlines()[-1]) / 1024
    for line in proc.stdout.splitlines():
        if line.startswith(("Finished", "9 input", "method", "memory")) or "input(s) ->" in line:
            print("  " + line.strip())
    print(f"\nmosaic: {output}")
    print(f"inputs: {len(tiles)} tiles, {sum(os.path.getsize(t) for t in tiles) / 2**20:.0f} MB")
    print(f"time:   {seconds:.1f} s (qgis_process, including QGIS start-up)")
    print(f"memory: {peak_mb:.0f} MB peak RSS of qgis_process")
    print(f"size:   {os.path.getsize(output) / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
