"""In-dialog help, generated from the parameter table and a short guide to the rules."""

import os

from qgis.PyQt.QtCore import QUrl

from ..core.options import PARAMS
from .parameters import tr

RULE_GUIDE = (
    ("Last", "the default and what gdalbuildvrt does: later inputs cover earlier ones. "
             "Order the inputs from worst to best."),
    ("First", "earlier inputs stay on top: list the best acquisitions first."),
    ("Minimum / Maximum", "per-pixel extreme, e.g. least cloudy (min of a cloud band) "
                          "or a maximum NDVI composite."),
    ("Mean", "average of the valid inputs, computed in float64 and rounded half to even "
             "for integer outputs; smooths radiometric differences."),
    ("Sum", "sum of valid values in a wide type, clipped (saturated) to the output type."),
    ("Count", "number of valid inputs per pixel (an unsigned integer output): a coverage map."),
    ("Feather", "distance-weighted blend across seams: each input's weight rises from 0 at "
                "the edge of its valid footprint to 1 at FEATHER_DISTANCE pixels inside, so "
                "overlapping acquisitions leave no visible edge. Windows are read with a halo "
                "of FEATHER_DISTANCE pixels."),
)

MEMORY_MODEL = (
    "Memory: MEMORY_MB covers GDAL's block cache (a quarter of it) plus the window buffers of "
    "every worker thread and the finished windows waiting to be written. The window size "
    "(CHUNK_SIZE=0) is the largest multiple of the 512 px output tile that fits; fewer "
    "threads are used when the budget cannot feed them all. Memory does not grow with the "
    "size or number of inputs.")

FAILURES = (
    "The mosaic is written to OUTPUT.partial and renamed to OUTPUT only when complete. "
    "Cancel keeps OUTPUT.partial and OUTPUT.partial.json: run again with the same parameters "
    "and RESUME checked to continue from the last checkpoint, or delete both files.")


def short_help(intro, plan_only=False):
    """HTML help for the algorithm dialog."""
    parts = [f"<p>{tr(intro)}</p>"]
    if not plan_only:
        parts.append(f"<h3>{tr('Which overlap rule?')}</h3><ul>")
        parts += [f"<li><b>{tr(name)}</b>: {tr(text)}</li>" for name, text in RULE_GUIDE]
        parts.append("</ul>")
    parts.append(f"<h3>{tr('Parameters')}</h3><dl>")
    for p in PARAMS:
        if plan_only and not p.in_plan:
            continue
        parts.append(f"<dt><b>{tr(p.label)}</b> ({p.name})</dt><dd>{tr(p.help)}</dd>")
    parts.append("</dl>")
    parts.append(f"<p>{tr(MEMORY_MODEL)}</p>")
    if not plan_only:
        parts.append(f"<p>{tr(FAILURES)}</p>")
    return "".join(parts)


def help_url(anchor):
    """The README shipped with the plugin, at the section for this algorithm."""
    readme = os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")
    return QUrl.fromLocalFile(readme).toString() + f"#{anchor}"
