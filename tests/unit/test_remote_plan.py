"""The plan of remote inputs opens each once, reads its header only and no pixel.

nginx (tests/conftest.py, tools/loopback.py) logs every request with its Range
header. The inputs are a tiled COG (with overviews) and a striped GeoTIFF whose
headers are longer than GDAL's first read (16 KB), so a header read and a pixel
read never share bytes; the byte ranges of their tiles and strips come from the
files' own TIFF metadata (BLOCK_OFFSET_x_y / BLOCK_SIZE_x_y). GDAL reads whole 16 KB
chunks, so a header read may end a little past the header, never further.
"""

import os
import subprocess

import numpy as np
import pytest
from osgeo import gdal

from helpers import PYTHON, srs_wkt
from streaming_mosaic import plan

GUARD_SECONDS = 120  # only to stop a hung child; nothing asserts on time
MAX_HEADER_GETS = 4  # GDAL's first 16 KB, then the rest of a long header, if any
# GDAL reads in 16 KB chunks (CPL_VSIL_CURL_CHUNK_SIZE), two at once when reading on:
# the chunks holding the end of a header may carry the first bytes of pixel data.
READ_AHEAD = 2 * 16384


def padded_raster(path, creation, driver="GTiff", seed=3):
    """A 2-band uint16 raster (1500 x 1400 px, EPSG:32633, nodata 0) with ~22 KB of
    metadata in its header; ``driver`` COG copies a GTiff made first."""
    rng = np.random.default_rng(seed)
    src = path + ".src.tif" if driver == "COG" else path
    ds = gdal.GetDriverByName("GTiff").Create(src, 1500, 1400, 2, gdal.GDT_UInt16,
                                              creation if driver == "GTiff" else [])
    ds.SetGeoTransform((500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0))
    ds.SetProjection(srs_wkt(32633))
    ds.SetMetadataItem("PROCESSING_HISTORY", "header padding " * 1500)
    for b in (1, 2):
        band = ds.GetRasterBand(b)
        band.SetNoDataValue(0)
        band.WriteArray(rng.integers(1, 3000, (1400, 1500)).astype("uint16"))
    ds = None
    if driver == "COG":
        gdal.Translate(path, src, format="COG", creationOptions=creation)
        os.remove(src)
    return path


def data_ranges(path):
    """[(first byte, last byte)] of every tile or strip of every band and overview."""
    ds = gdal.Open(path)
    bands = [ds.GetRasterBand(b) for b in range(1, ds.RasterCount + 1)]
    bands += [b.GetOverview(i) for b in list(bands) for i in range(b.GetOverviewCount())]
    ranges = []
    for band in bands:
        bx, by = band.GetBlockSize()
        for y in range(-(-band.YSize // by)):
            for x in range(-(-band.XSize // bx)):
                offset = int(band.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF"))
                size = int(band.GetMetadataItem(f"BLOCK_SIZE_{x}_{y}", "TIFF"))
                ranges.append((offset, offset + size - 1))
    ds = None
    return ranges


@pytest.fixture(scope="module")
def served(nginx):
    """{URL: data byte ranges} of a tiled COG and a striped GeoTIFF served by nginx."""
    tiled = padded_raster(os.path.join(nginx.data, "tiled_cog.tif"),
                          ["BLOCKSIZE=256", "COMPRESS=LZW", "OVERVIEWS=AUTO"], "COG")
    striped = padded_raster(os.path.join(nginx.data, "striped.tif"), ["COMPRESS=DEFLATE"])
    files = {nginx.url(os.path.basename(p)): data_ranges(p) for p in (tiled, striped)}
    for ranges in files.values():  # the first header read (16 KB) holds no pixel
        assert min(first for first, _ in ranges) > 16384
    return files


def byte_range(header):
    """(first, last) of a ``bytes=a-b`` Range header."""
    first, _, last = header.split("=", 1)[1].partition("-")
    return int(first), int(last)


def pixel_reads(requests, ranges):
    """The GETs that read pixels: without a range, or a range that does not start in the
    header (before the first tile or strip) or runs on past it by more than GDAL's
    read-ahead of whole 16 KB chunks."""
    first_data = min(start for start, _ in ranges)
    found = []
    for r in requests:
        if r["method"] == "HEAD":
            continue
        if r["range"] is None:
            found.append(r)
            continue
        first, last = byte_range(r["range"])
        if first >= first_data or last >= first_data + READ_AHEAD:
            found.append(r)
    return found


def check_header_only(nginx, served):
    """Assert: only the inputs were asked for (no side-car files, no folder listing),
    each with at most one HEAD and a few GETs, none of them touching pixel data."""
    requests = nginx.requests()
    by_uri = {}
    for r in requests:
        by_uri.setdefault(r["uri"], []).append(r)
    paths = {url.split(str(nginx.port), 1)[1]: url for url in served}
    assert set(by_uri) == set(paths), sorted(by_uri)
    for uri, rows in by_uri.items():
        heads = [r for r in rows if r["method"] == "HEAD"]
        gets = [r for r in rows if r["method"] == "GET"]
        assert len(heads) <= 1 and 1 <= len(gets) <= MAX_HEADER_GETS, (uri, rows)
        assert all(r["status"] in (200, 206) for r in rows), rows
        assert pixel_reads(rows, served[paths[uri]]) == [], (uri, rows)


def run_plan_cli(urls, out):
    res = subprocess.run([PYTHON, "-m", "streaming_mosaic", *urls, "-o", str(out),
                          "--plan"], capture_output=True, text=True, timeout=GUARD_SECONDS)
    assert res.returncode == 0, res.stderr
    assert "2 input(s) -> 1500 x 1400 px" in res.stdout


@pytest.mark.parametrize("face", ["api", "cli"])
def test_the_plan_opens_each_remote_input_once_and_reads_no_pixel(nginx, served, face,
                                                                  tmp_path):
    gdal.VSICurlClearCache()
    nginx.clear_log()
    urls = list(served)
    if face == "api":
        job = plan(urls, memory_mb=64)
        assert (job.grid.width, job.grid.height) == (1500, 1400)
        assert [s.files[0][3] for s in job.sources] != ["", ""]  # ETags, from the one HEAD
    else:
        run_plan_cli(urls, tmp_path / "m.tif")
        assert os.listdir(tmp_path) == []
    check_header_only(nginx, served)


def test_the_check_sees_a_pixel_read(nginx, served):
    """The same check fails when a single pixel of either layout is read."""
    for url in served:
        gdal.VSICurlClearCache()
        nginx.clear_log()
        ds = gdal.Open("/vsicurl/" + url)
        band = ds.GetRasterBand(1)
        assert band.ReadRaster(700, 700, 1, 1) is not None
        ds = None
        with pytest.raises(AssertionError):
            check_header_only(nginx, {url: served[url]})
        assert pixel_reads(nginx.requests(), served[url])


def test_the_http_cache_counts_inside_memory_mb(nginx, served):
    """Remote inputs leave less of MEMORY_MB to the rest: GDAL's HTTP block cache
    (CPL_VSIL_CURL_CACHE_SIZE, GDAL's 16 MB unless set) is part of the budget."""
    local = [os.path.join(nginx.data, url.rsplit("/", 1)[1]) for url in served]
    base = plan(local, memory_mb=96).budget
    remote = plan(list(served), memory_mb=96).budget
    assert remote.overhead - base.overhead == 16 * 2**20
    # The rest shrinks to make room (windows come in block steps, so the peaks may
    # not order): the windows are no larger and the whole still fits MEMORY_MB.
    assert remote.chunk <= base.chunk
    assert remote.estimated_peak <= remote.total
    gdal.SetConfigOption("CPL_VSIL_CURL_CACHE_SIZE", str(40 * 2**20))
    try:
        bigger = plan(list(served), memory_mb=96).budget
    finally:
        gdal.SetConfigOption("CPL_VSIL_CURL_CACHE_SIZE", None)
    assert bigger.overhead - base.overhead == 40 * 2**20
