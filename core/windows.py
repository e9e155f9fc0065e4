"""The window plan: the output grid cut into block-aligned squares, and which inputs touch each.

Windows are numbered row-major. Together they cover every output pixel exactly
once; edge windows are clipped to the grid. :class:`SourceIndex` answers "which
inputs touch window i" in time proportional to the answer, so 10,000 inputs cost
no more per window than 10.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """One rectangle of the output grid, in pixels: columns x..x+w, rows y..y+h."""

    index: int
    x: int
    y: int
    w: int
    h: int

    @property
    def bounds(self):
        """(x0, y0, x1, y1)."""
        return self.x, self.y, self.x + self.w, self.y + self.h


class WindowPlan:
    """Square windows of side ``chunk`` over a ``width`` x ``height`` grid."""

    def __init__(self, width, height, chunk):
        if width < 1 or height < 1:
            raise ValueError("empty grid")
        if chunk < 1:
            raise ValueError("chunk must be at least 1 pixel")
        self.width, self.height, self.chunk = int(width), int(height), int(chunk)
        self.cols = -(-self.width // self.chunk)
        self.rows = -(-self.height // self.chunk)

    def __len__(self):
        return self.cols * self.rows

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        row, col = divmod(index, self.cols)
        x, y = col * self.chunk, row * self.chunk
        return Window(index, x, y, min(self.chunk, self.width - x), min(self.chunk, self.height - y))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def cells(self, x0, y0, x1, y1):
        """Window indices whose rectangles meet the pixel range [x0:x1, y0:y1]."""
        c0, c1 = max(x0 // self.chunk, 0), min((x1 - 1) // self.chunk, self.cols - 1)
        r0, r1 = max(y0 // self.chunk, 0), min((y1 - 1) // self.chunk, self.rows - 1)
        for row in range(r0, r1 + 1):
            for col in range(c0, c1 + 1):
                yield row * self.cols + col


class SourceIndex:
    """For each window, the inputs whose pixel boxes meet it, in input order.

    Parameters
    ----------
    plan : WindowPlan
    boxes : sequence of (x0, y0, x1, y1) or None
        Grid pixel box of each input (None: the input misses the grid).
    halo : int
        Widen every box by this many pixels (feathering reads a halo).
    """

    def __init__(self, plan, boxes, halo=0):
        self._lists = {}
        for i, box in enumerate(boxes):
            if box is None:
                continue
            x0, y0, x1, y1 = box
            for cell in plan.cells(x0 - halo, y0 - halo, x1 + halo, y1 + halo):
                self._lists.setdefault(cell, []).append(i)

    def sources_for(self, window_index):
        """Indices (into ``boxes``) of the inputs touching a window, in input order."""
        return self._lists.get(window_index, ())

    def deepest(self):
        """The most inputs touching one window (the depth of the deepest stack)."""
        return max((len(ids) for ids in self._lists.values()), default=0)


def row_bands(h, n, top=0, block=0, origin=0):
    """Cut a window of ``h`` rows into ``n`` bands of rows; returns [(r0, r1), ...].

    The local executor renders band k of every window on thread k, so an input block
    that straddles two windows side by side is decoded once, by the thread that
    holds it in its datasets' cache. A cut inside the window would have both threads
    decode the blocks it crosses: each cut is moved to the nearest row where blocks
    of ``block`` rows start (an input whose row 0 is grid row ``origin``; the window
    begins at grid row ``top``) when that is at most a quarter of a band away, so
    the threads' shares stay within a half band of even.

    Parameters
    ----------
    h, n : int
        Rows of the window; bands wanted (fewer when ``h`` has fewer rows).
    top, block, origin : int
        Where the window and the input's block rows lie (``block`` 0: cut evenly).
    """
    n = max(1, min(int(n), int(h)))
    cuts = [0]
    for k in range(1, n):
        cut = round(k * h / n)
        if block > 1:
            phase = (top + cut - origin) % block
            snapped = cut - phase if phase <= block - phase else cut - phase + block
            if abs(snapped - cut) * 4 <= h / n:
                cut = snapped
        cuts.append(min(max(cut, cuts[-1] + 1), h - (n - k)))
    cuts.append(h)
    return list(zip(cuts[:-1], cuts[1:]))
