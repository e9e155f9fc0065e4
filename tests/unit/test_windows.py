"""The window plan covers every output pixel exactly once, row-major, and the index is exact."""

import numpy as np
import pytest

from streaming_mosaic.core.windows import SourceIndex, WindowPlan


@pytest.mark.parametrize("width,height", [(1, 1), (513, 257), (1000, 999), (37, 1201)])
@pytest.mark.parametrize("chunk", [1, 7, 256, 1000])
def test_windows_cover_every_pixel_exactly_once(width, height, chunk):
    if width * height // (chunk * chunk) > 200_000:
        pytest.skip("too many windows for a unit test")
    plan = WindowPlan(width, height, chunk)
    hits = np.zeros((height, width), np.uint8)
    previous = (-1, -1)
    for i, win in enumerate(plan):
        assert win.index == i
        assert 1 <= win.w <= chunk and 1 <= win.h <= chunk
        assert (win.y, win.x) > previous  # row-major order
        previous = (win.y, win.x)
        hits[win.y:win.y + win.h, win.x:win.x + win.w] += 1
    assert hits.min() == 1 and hits.max() == 1
    assert len(plan) == -(-width // chunk) * -(-height // chunk)


def test_windows_are_aligned_to_the_chunk_grid():
    plan = WindowPlan(1300, 700, 512)
    assert {(w.x % 512, w.y % 512) for w in plan} == {(0, 0)}
    assert [w.w for w in plan][:3] == [512, 512, 276]


def test_source_index_lists_exactly_the_sources_touching_each_window():
    rng = np.random.default_rng(3)
    plan = WindowPlan(500, 400, 64)
    boxes = []
    for _ in range(200):
        x0, y0 = rng.integers(0, 480), rng.integers(0, 380)
        boxes.append((x0, y0, x0 + rng.integers(1, 120), y0 + rng.integers(1, 120)))
    boxes.append(None)
    index = SourceIndex(plan, boxes, halo=5)
    for win in plan:
        x0, y0, x1, y1 = win.bounds
        expected = [i for i, b in enumerate(boxes) if b is not None
                    and b[0] - 5 < x1 and b[2] + 5 > x0 and b[1] - 5 < y1 and b[3] + 5 > y0]
        assert list(index.sources_for(win.index)) == expected
