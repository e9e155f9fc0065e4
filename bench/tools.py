"""Baseline mosaickers the benchmark runs as child processes (for a clean peak RSS).

``python3 bench/tools.py naive VRT OUT --co KEY=VALUE ...``
    The obvious streaming approach: read the gdalbuildvrt VRT with rasterio one
    output block (512 x 512) at a time and write it. GDAL_CACHEMAX comes from
    the environment.
``python3 bench/tools.py rio-merge LIST OUT --co KEY=VALUE ...``
    ``rasterio.merge.merge(method="last")`` of the files listed in LIST, the
    whole mosaic in memory, then written in one go.
"""

import argparse
import sys


def _co(pairs):
    return dict(p.split("=", 1) for p in pairs or ())


def naive(vrt, out, co):
    import rasterio

    with rasterio.open(vrt) as src:
        profile = src.profile
        profile.update(driver="GTiff", **{k.lower(): v for k, v in co.items()})
        with rasterio.open(out, "w", **profile) as dst:
            for _, window in dst.block_windows(1):
                dst.write(src.read(window=window), window=window)


def rio_merge(listing, out, co):
    import rasterio
    from rasterio.merge import merge

    with open(listing) as fh:
        paths = [line.strip() for line in fh if line.strip()]
    sources = [rasterio.open(p) for p in paths]
    try:
        array, transform = merge(sources, method="last")
        first = sources[0]
        profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1],
                       count=array.shape[0], dtype=array.dtype, crs=first.crs,
                       transform=transform, nodata=first.nodata)
        profile.update({k.lower(): v for k, v in co.items()})
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(array)
    finally:
        for s in sources:
            s.close()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("tool", choices=["naive", "rio-merge"])
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--co", action="append")
    args = parser.parse_args(argv)
    {"naive": naive, "rio-merge": rio_merge}[args.tool](args.src, args.out, _co(args.co))
    return 0


if __name__ == "__main__":
    sys.exit(main())
