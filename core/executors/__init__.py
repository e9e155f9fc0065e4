"""Where windows are rendered: this process's threads, or a Dask cluster.

An executor takes window numbers (``submit``), hands back each window's result
in submission order (``next``) and says which sink writes those results into
the partial (``open_sink``). The engine's loop (:mod:`..engine`) drives one
executor, the sink and the checkpoint journal, whichever executor it is.
"""

import importlib

from ..errors import ClusterError
from ..options import parse_dask

INSTALL_HINT = ("DASK_SCHEDULER (--dask) needs the Python packages dask and distributed: "
                "install them with 'apt install python3-distributed' or "
                "'pip install \"dask[distributed]\"'")


def check_installed(options):
    """Raise :class:`ClusterError` when DASK_SCHEDULER is set and Dask is not installed.

    Called before anything else, so the run says so first and creates nothing.
    """
    if parse_dask(options.dask_scheduler)[0] is None:
        return
    try:
        importlib.import_module("distributed")
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None


def make(plan):
    """The executor for ``plan``: local threads unless DASK_SCHEDULER is set.

    Raises
    ------
    ClusterError
        Dask is not installed, or the scheduler cannot be reached.
    """
    kind, _arg = parse_dask(plan.options.dask_scheduler)
    if kind is None:
        from .local import LocalExecutor
        return LocalExecutor(plan)
    check_installed(plan.options)
    from .dask import DaskExecutor
    return DaskExecutor(plan)
