"""The Python interpreter that starts local Dask worker processes.

Dask's ``LocalCluster`` starts its workers with :mod:`multiprocessing` (``spawn``), which
runs ``sys.executable``. In a plain Python that is the running interpreter. Inside QGIS
(the desktop, ``qgis_process``) Python is embedded, and ``sys.executable`` is whatever
``python3`` comes first on ``PATH``, or the QGIS binary itself: a worker started with it
cannot import GDAL's bindings, or is not Python at all, and the cluster never comes up.
The interpreter of the running Python's own installation (``sys.exec_prefix``) is the
right one: the same version, the same ``osgeo`` and numpy.
"""

import multiprocessing
import os
import sys


def own_python():
    """The interpreter of the running Python installation, or None when not found.

    Returns
    -------
    str or None
        ``<exec_prefix>/bin/python3.X`` (POSIX) or ``<exec_prefix>/python.exe`` (Windows).
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if os.name == "nt":
        names = [os.path.join(sys.exec_prefix, "python.exe")]
    else:
        names = [os.path.join(sys.exec_prefix, "bin", f"python{version}"),
                 os.path.join(sys.exec_prefix, "bin", "python3")]
    return next((n for n in names if os.path.isfile(n) and os.access(n, os.X_OK)), None)


def use_own_python():
    """Make ``multiprocessing`` start children with :func:`own_python`, when it differs.

    Process-wide and kept: Dask's nannies start replacement workers later in the run.
    In a plain Python the two are the same file and nothing changes.

    Returns
    -------
    str
        The interpreter children will run.
    """
    current = sys.executable
    own = own_python()
    if own and (not current or not os.path.exists(current)
                or os.path.realpath(current) != os.path.realpath(own)):
        multiprocessing.set_executable(own)
        return own
    return current
