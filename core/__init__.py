"""The streaming mosaic core: GDAL's Python bindings and numpy only, never qgis.

Public entry points: :func:`streaming_mosaic.core.engine.run` (a whole job),
:func:`streaming_mosaic.core.plan.make_plan` (the job's plan, no pixels read)
and :func:`streaming_mosaic.core.render.render_window` (one window, a pure
function of plan and window).
"""

__version__ = "0.1.0"
