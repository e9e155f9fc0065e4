"""The stack reductions on every depth, against numpy, NaN (invalid) samples anywhere.

Shallow stacks (up to ``SMALL_STACK``) are sorted by a sorting network and reduced by
per-layer selects, deeper ones by ``ndarray.sort`` and ``take_along_axis``: both paths
must give numpy's nanmedian / nanpercentile bit for bit, and the same sort.
"""

import itertools

import numpy as np
import pytest

from streaming_mosaic.core.composite import RULES
from streaming_mosaic.core.stack import SMALL_STACK, _network, reduce_stack, sort_stack

DEPTHS = list(range(1, SMALL_STACK + 3))


def random_stack(depth, seed):
    rng = np.random.default_rng(seed)
    stack = rng.integers(0, 6, (depth, 2, 30, 40)).astype(np.float64)  # many ties
    stack[rng.random(stack.shape) < 0.3] = np.nan
    stack[rng.random(stack.shape) < 0.03] = np.inf
    stack[rng.random(stack.shape) < 0.03] = -np.inf
    return stack


@pytest.mark.parametrize("n", range(1, SMALL_STACK + 1))
def test_network_sorts_every_zero_one_input(n):
    # The 0-1 principle: a comparator network sorting all 2**n 0/1 inputs sorts anything.
    for bits in itertools.product((0, 1), repeat=n):
        values = list(bits)
        for i, j in _network(n):
            if values[i] > values[j]:
                values[i], values[j] = values[j], values[i]
        assert values == sorted(values)


@pytest.mark.parametrize("depth", DEPTHS)
def test_sort_stack_equals_ndarray_sort(depth):
    stack = random_stack(depth, depth)
    want = np.sort(stack, axis=0)
    sort_stack(stack)
    np.testing.assert_array_equal(stack, want)


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("method,q", [("median", 50.0), ("percentile", 37.0),
                                      ("percentile", 90.0)])
def test_reductions_equal_numpy(depth, method, q):
    stack = random_stack(depth, 100 + depth)
    count = (~np.isnan(stack)).sum(axis=0).astype(np.uint32)
    with np.errstate(all="ignore"):
        want = (np.nanmedian(stack, axis=0) if method == "median"
                else np.nanpercentile(stack, q, axis=0))
        got = reduce_stack(RULES[method], stack.copy(), count, q)
    valid = count > 0
    np.testing.assert_array_equal(got[valid], want[valid])
