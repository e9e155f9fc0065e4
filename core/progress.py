"""What a run reports while it works: progress events as data, not text.

The engine calls ``progress(Progress(...))`` once per window and during the
finishing steps; front ends read the fields (a QGIS progress bar, the CLI's
bar, a notebook's callback) and never parse text.
"""

from typing import NamedTuple

# Share of the run's progress given to windows when overviews or a COG follow.
WINDOWS_SHARE = 0.8


class Progress(NamedTuple):
    """One progress event.

    Attributes
    ----------
    phase : str
        ``"windows"`` (rendering and writing), ``"overviews"``, ``"cog"`` or ``"done"``.
    done, total : int
        Windows written so far and in all (``total`` is 0 outside ``"windows"``).
    fraction : float
        Of the whole run, from 0 to 1.
    """

    phase: str
    done: int
    total: int
    fraction: float

    @property
    def text(self):
        """A short label: ``window 3/25``, ``overviews``, ``COG``, ``done``."""
        if self.phase == "windows":
            return f"window {self.done}/{self.total}"
        return {"cog": "COG"}.get(self.phase, self.phase)
