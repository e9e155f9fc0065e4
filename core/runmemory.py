"""The memory one run adds to its process, told apart from the process's own peak.

In QGIS the process is the whole desktop (or qgis_process): its peak resident
size (``ru_maxrss``) may have been set long before the run, by QGIS itself or an
earlier job, and says nothing of the mosaic. :class:`RunMemory` notes the
resident size when the run starts and the highest one seen while it runs.
"""

import os
import threading

try:
    import resource
except ImportError:  # Windows
    resource = None

MB = 2**20


def peak_rss_mb():
    """Peak resident memory of this process so far (MB), or 0 where unknown."""
    if resource is None:
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
    """Resident memory of this process now (MB), or 0 where unknown (not Linux)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
    except (OSError, ValueError, IndexError):
        return 0.0


class RunMemory:
    """Resident memory before a run and its peak while the run lasts.

    The peak is exact when the run raises the process's own peak (always in the
    CLI); when the process peaked higher before (QGIS), it is the highest of the
    samples taken with :meth:`sample` (once per window).
    """

    def __init__(self):
        self.before = current_rss_mb()
        self._process_peak_before = peak_rss_mb()
        self._peak = self.before
        self._lock = threading.Lock()

    def sample(self):
        """Note the resident size now."""
        rss = current_rss_mb()
        with self._lock:
            self._peak = max(self._peak, rss)

    def peak(self):
        """The run's peak resident size (MB) so far, the process's before it included."""
        self.sample()
        process_peak = peak_rss_mb()
        if process_peak > self._process_peak_before:
            return max(self._peak, process_peak)  # the run set a new process peak
        return self._peak

    def wrap(self, progress):
        """``progress`` that also samples the resident size on every call."""
        def sampled(*args, **kwargs):
            self.sample()
            progress(*args, **kwargs)
        return sampled


def describe(before, run_peak, process_peak):
    """``peak memory of this run: +X MB over the process's N MB before the run; process peak M MB``."""
    if not process_peak:
        return "peak memory unknown on this platform"
    if not before:
        return f"process peak memory {process_peak:.0f} MB"
    return (f"peak memory of this run: +{max(run_peak - before, 0):.0f} MB over the process's "
            f"{before:.0f} MB before the run; process peak {process_peak:.0f} MB")
