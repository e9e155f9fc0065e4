"""What the plan (dry-run) reports: figures, an HTML page, and input footprints."""

import html
import os

from osgeo import osr

from .memory import MB
from .plan import summary_lines
from .sources import crs_label, srs_from_wkt

# Python + numpy + GDAL loaded, before any buffer (measured on Debian 12).
INTERPRETER_BASELINE_MB = 90


def figures(plan):
    """The plan's headline numbers."""
    low, high = plan.disk_estimate()
    crs = crs_label(plan.grid.crs_wkt)
    return {
        "width": plan.grid.width,
        "height": plan.grid.height,
        "bands": plan.band_count,
        "data_type": plan.out_dtype,
        "crs": crs,
        "pixel_size_x": plan.grid.res[0],
        "pixel_size_y": plan.grid.res[1],
        "windows": len(plan.windows),
        "chunk": plan.budget.chunk,
        "threads": plan.threads,
        "inputs": len(plan.sources),
        "estimated_memory_mb": round(plan.budget.estimated_peak / MB + INTERPRETER_BASELINE_MB),
        "estimated_disk_mb_low": round(low / MB, 1),
        "estimated_disk_mb_high": round(high / MB, 1),
        "uncompressed_mb": round(plan.raw_bytes / MB, 1),
        "warnings": list(plan.warnings),
    }


def footprint_rings(plan, points_per_edge=16):
    """Each input's outline in the target CRS, as a closed list of (x, y).

    Inputs in the target CRS give their four corners; reprojected inputs give
    their edges densified and transformed, so the outline follows the warp.
    """
    target = srs_from_wkt(plan.grid.crs_wkt)
    transforms = {}  # one per input CRS, not per input
    rings = []
    for info, fp in zip(plan.sources, plan.footprints):
        xmin, ymin, xmax, ymax = info.bounds
        if fp.same_crs or target is None:
            ring = [(xmin, ymax), (xmax, ymax), (xmax, ymin), (xmin, ymin), (xmin, ymax)]
        else:
            n = points_per_edge
            edge = ([(xmin + (xmax - xmin) * i / n, ymax) for i in range(n)]
                    + [(xmax, ymax - (ymax - ymin) * i / n) for i in range(n)]
                    + [(xmax - (xmax - xmin) * i / n, ymin) for i in range(n)]
                    + [(xmin, ymin + (ymax - ymin) * i / n) for i in range(n)])
            if info.crs_wkt not in transforms:
                transforms[info.crs_wkt] = osr.CoordinateTransformation(
                    srs_from_wkt(info.crs_wkt), target)
            tr = transforms[info.crs_wkt]
            ring = [tuple(tr.TransformPoint(x, y)[:2]) for x, y in edge]
            ring.append(ring[0])
        rings.append(ring)
    return rings


def input_rows(plan):
    """One dict per input: file, path, CRS, resolution, size, bands, type, nodata."""
    rows = []
    for info, fp in zip(plan.sources, plan.footprints):
        crs = crs_label(info.crs_wkt, none="")
        nodata = info.nodata[0] if info.nodata else None
        rows.append({"file": os.path.basename(info.path), "path": info.path, "crs": crs,
                     "res_x": info.geotransform[1], "res_y": -info.geotransform[5],
                     "width": info.width, "height": info.height, "bands": len(info.bands),
                     "data_type": info.dtype, "nodata": "" if nodata is None else f"{nodata:g}",
                     "reprojected": not fp.same_crs})
    return rows


def html_report(plan, max_rows=1000):
    """A standalone HTML page describing the plan."""
    f = figures(plan)
    esc = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Mosaic plan</title>",
           "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
           "td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}"
           ".warn{color:#a40}</style></head><body>",
           "<h1>Mosaic plan</h1>", "<table>"]
    labels = [("Output size", f"{f['width']} x {f['height']} px, {f['bands']} band(s)"),
              ("Data type", f["data_type"]), ("CRS", f["crs"]),
              ("Pixel size", f"{f['pixel_size_x']:.10g} x {f['pixel_size_y']:.10g}"),
              ("Inputs", f["inputs"]),
              ("Windows", f"{f['windows']} of {f['chunk']} px, {f['threads']} thread(s)"),
              ("Estimated peak memory", f"{f['estimated_memory_mb']} MB"),
              ("Estimated output size", f"{f['estimated_disk_mb_low']:,}-"
                                        f"{f['estimated_disk_mb_high']:,} MB "
                                        f"({f['uncompressed_mb']:,} MB uncompressed)")]
    out += [f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in labels]
    out.append("</table>")
    if f["warnings"]:
        out.append("<h2>Warnings</h2><ul>")
        out += [f"<li class='warn'>{esc(w)}</li>" for w in f["warnings"]]
        out.append("</ul>")
    out.append("<h2>Details</h2><pre>" + esc("\n".join(summary_lines(plan))) + "</pre>")
    rows = input_rows(plan)
    out.append(f"<h2>Inputs ({len(rows)})</h2><table><tr><th>#</th><th>file</th><th>CRS</th>"
               "<th>pixel size</th><th>size</th><th>bands</th><th>type</th><th>nodata</th>"
               "<th>reprojected</th></tr>")
    for i, r in enumerate(rows[:max_rows], 1):
        out.append(f"<tr><td>{i}</td><td title='{esc(r['path'])}'>{esc(r['file'])}</td>"
                   f"<td>{esc(r['crs'])}</td><td>{r['res_x']:.6g} x {r['res_y']:.6g}</td>"
                   f"<td>{r['width']} x {r['height']}</td><td>{r['bands']}</td>"
                   f"<td>{r['data_type']}</td><td>{esc(r['nodata'])}</td>"
                   f"<td>{'yes' if r['reprojected'] else ''}</td></tr>")
    out.append("</table>")
    if len(rows) > max_rows:
        out.append(f"<p>... and {len(rows) - max_rows} more.</p>")
    out.append("</body></html>")
    return "\n".join(out)
