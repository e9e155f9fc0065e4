"""The library face of the core: :func:`mosaic` and :func:`plan`.

Keyword arguments are the contract's parameter names in lower case
(``memory_mb=512``), enum values by name (``method="feather"``,
``compression="zstd"``); see :data:`~.options.PARAMS` for the whole list. Every
value is checked here, once, and turned into one typed :class:`~.options.Options`;
bad values raise :class:`~.errors.OptionError` (a ``ValueError``) naming the
keyword, unreadable inputs :class:`~.errors.InputError` and unwritable outputs
:class:`~.errors.OutputError` (both ``OSError``).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Optional, Union

from .composite import Rule
from .errors import OptionError
from .options import _EXTRA_FIELDS, PARAM_BY_ATTR, Options, choice

PathLike = Union[str, "os.PathLike[str]"]

# Keywords of the API that are not contract parameters of the QGIS algorithm.
_EXTRA = {name for name, _type, _default in _EXTRA_FIELDS}
# Other names accepted for a keyword (the contract's short forms).
_ALIASES = {"dask": "dask_scheduler"}


def _text_list(value, sep):
    """``"1,2"``, ``[1, 2]`` or ``{"K": "V"}`` as the contract's text form."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "|".join(f"{k}={v}" for k, v in value.items())
    return sep.join(str(v) for v in value)


def _paths(inputs):
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    try:
        return [os.fspath(p) for p in inputs]
    except TypeError:
        raise OptionError("inputs", "must be a path or a sequence of paths") from None


def options(inputs: Iterable[PathLike], output: Optional[PathLike] = None,
            **params: Any) -> Options:
    """Check keyword parameters and return the typed :class:`~.options.Options`.

    Raises
    ------
    OptionError
        For an unknown keyword or a value of the wrong kind, naming it.
    """
    values = {"inputs": _paths(inputs),
              "output": None if output is None else os.fspath(output)}
    for key, value in params.items():
        if key in _ALIASES:
            if _ALIASES[key] in params:
                raise OptionError(key, f"give either {key} or {_ALIASES[key]}, not both")
            key = _ALIASES[key]
        param = PARAM_BY_ATTR.get(key)
        if key in ("inputs", "output") or (param is None and key not in _EXTRA):
            raise OptionError(key, "unknown keyword; the keywords are the parameter names in "
                              "lower case (method, memory_mb, compression, ...)")
        if key == "method" and isinstance(value, Rule):
            pass  # a custom rule travels as itself
        elif param is not None and param.kind == "enum":
            value = choice(key, value)
        elif key == "bands":
            value = _text_list(value, ",")
        elif key == "creation_options":
            value = _text_list(value, "|")
        values[key] = value
    return Options(**values)


def mosaic(inputs: Iterable[PathLike], output: PathLike, *,
           progress: Optional[Callable] = None, cancel: Optional[Callable[[], bool]] = None,
           log: Optional[Callable] = None, **params: Any):
    """Mosaic ``inputs`` into the GeoTIFF ``output``, window by window.

    Parameters
    ----------
    inputs : path or sequence of paths
        Rasters in stacking order (later inputs on top for ``method="last"``);
        any path GDAL opens.
    output : path
        A ``.tif`` / ``.tiff`` file; written as ``output.partial`` and renamed
        when complete.
    progress : callable(Progress), optional
        Called once per window, and during overviews and the COG step, with a
        :class:`~.progress.Progress`: ``phase`` ("windows", "overviews", "cog",
        "done"), ``done`` and ``total`` windows, ``fraction`` of the whole run, and
        ``text`` ("window 3/25").
    cancel : callable() -> bool, optional
        Polled between windows; when it returns True the run stops and raises
        :class:`~.errors.Cancelled`, keeping a partial that ``resume=True`` continues.
    log : callable(message, level), optional
        The plan's summary and warnings (level ``"info"`` or ``"warning"``).
    **params
        Any parameter of the contract in lower case: ``method`` (a name of
        :data:`~.composite.RULES`, or a :class:`~.composite.Rule`), ``memory_mb``,
        ``compression``, ``data_type``, ``resampling``, ``target_crs``, ``extent``
        (``(xmin, ymin, xmax, ymax)``), ``bands`` (``[3, 2, 1]``),
        ``creation_options`` (a dict), ``cog``, ``resume``, ``dask_scheduler``
        (also ``dask=``: ``"local:4"`` or ``"tcp://host:8786"``), ...

    Returns
    -------
    Result
        With ``output``, ``width``, ``height``, ``bands``, ``windows``, ``seconds``,
        ``output_bytes``, ``peak_rss_mb`` (the whole process's peak), ``rss_before_mb``
        and ``run_peak_mb`` (this run's own memory) and ``warnings``.

    Raises
    ------
    OptionError, InputError, OutputError, ResumeError, Cancelled
    """
    from . import engine  # the engine pulls in the writer; plan() does not need it
    return engine.run(options(inputs, output, **params), progress=progress, cancel=cancel,
                      log=log)


def plan(inputs: Iterable[PathLike], **params: Any):
    """Plan a mosaic without reading any pixel: the grid, windows, memory budget, warnings.

    Takes the same keywords as :func:`mosaic` (an ``output`` is not needed).

    Returns
    -------
    Plan
        ``plan.grid`` (width, height, geotransform, crs_wkt), ``plan.sources``,
        ``plan.windows``, ``plan.budget``, ``plan.out_dtype``, ``plan.warnings``.
    """
    from .gdalenv import thread_env
    from .plan import make_plan
    opts = options(inputs, params.pop("output", None), **params)
    with thread_env():  # GDAL's messages become our errors, not lines on stderr
        return make_plan(opts)
