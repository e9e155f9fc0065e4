"""The global least-squares fit of radiometric harmonization, in plain numpy.

Every pair of overlapping inputs (i, j) contributes, per band, the sum over its
common valid pixels of ``((g_i x_i + o_i) - (g_j x_j + o_j))**2``, which only
needs the pair's sums: n, sum x_i, sum x_j, sum x_i^2, sum x_j^2, sum x_i x_j.
The normal equations are a sparse, graph-Laplacian-like system over the inputs,
kept as edge lists and solved by block-Jacobi preconditioned conjugate gradients
(no SciPy). The minimum is only defined up to one linear map per connected group
of inputs (scaling every corrected value and adding a constant changes nothing
but the residual's scale), so the group's mean gain is set to 1 and its mean
offset to 0: the KKT solution of "minimise subject to mean gain = 1" is the
solution of ``A theta = e_gain``, scaled.
"""

import numpy as np

# A pair needs this many common valid (coarse) pixels in a band to take part.
MIN_PAIR_PIXELS = 8
# Relative ridge added to the normal equations, so CG never divides by zero.
RIDGE = 1e-10
CG_TOLERANCE = 1e-12
CG_MAX_ITERATIONS = 5000

N, SI, SJ, SII, SJJ, SIJ = range(6)


def components(count, first, second):
    """Connected-component label of each of ``count`` nodes, given edges (first, second)."""
    parent = np.arange(count)

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in zip(first.tolist(), second.tolist()):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(a) for a in range(count)])


def _blocks(stats, linear):
    """Per-edge matrices M_ii, M_jj, M_ij of the pair residual (P, d, d)."""
    n, si, sj = stats[:, N], stats[:, SI], stats[:, SJ]
    if not linear:
        return (stats[:, SII, None, None], stats[:, SJJ, None, None],
                stats[:, SIJ, None, None])
    mii = np.stack([np.stack([stats[:, SII], si], -1), np.stack([si, n], -1)], 1)
    mjj = np.stack([np.stack([stats[:, SJJ], sj], -1), np.stack([sj, n], -1)], 1)
    mij = np.stack([np.stack([stats[:, SIJ], si], -1), np.stack([sj, n], -1)], 1)
    return mii, mjj, mij


def _matvec(theta, first, second, mii, mjj, mij):
    """A @ theta for the pair residuals' normal equations; theta is (nodes, d)."""
    out = np.zeros_like(theta)
    ti, tj = theta[first], theta[second]
    np.add.at(out, first, np.einsum("pab,pb->pa", mii, ti) - np.einsum("pab,pb->pa", mij, tj))
    np.add.at(out, second, np.einsum("pab,pb->pa", mjj, tj) - np.einsum("pba,pb->pa", mij, ti))
    return out


def _pcg(apply, rhs, inverse_diag):
    """Preconditioned conjugate gradients on (nodes, d) vectors; returns (x, iterations)."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = np.einsum("nab,nb->na", inverse_diag, r)
    p = z.copy()
    rz = float(np.vdot(r, z))
    stop = CG_TOLERANCE * max(float(np.vdot(rhs, rhs)), 1e-300)
    for it in range(1, CG_MAX_ITERATIONS + 1):
        q = apply(p)
        alpha = rz / float(np.vdot(p, q))
        x += alpha * p
        r -= alpha * q
        if float(np.vdot(r, r)) <= stop:
            return x, it
        z = np.einsum("nab,nb->na", inverse_diag, r)
        rz_new = float(np.vdot(r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, CG_MAX_ITERATIONS


def solve_band(count, first, second, stats, linear):
    """Gains and offsets of ``count`` inputs for one band.

    Parameters
    ----------
    count : int
        Number of inputs.
    first, second : numpy.ndarray of int
        The pairs (i < j) that overlap.
    stats : numpy.ndarray
        (pairs, 6) float64: n, sum x_i, sum x_j, sum x_i^2, sum x_j^2, sum x_i x_j.
    linear : bool
        Fit an offset too (else gains only).

    Returns
    -------
    gains, offsets : numpy.ndarray
        (count,) each; an input in no pair keeps gain 1, offset 0.
    linked : numpy.ndarray of bool
        Which inputs took part in some pair.
    iterations : int
    """
    keep = stats[:, N] >= MIN_PAIR_PIXELS
    first, second, stats = first[keep], second[keep], stats[keep].astype(np.float64)
    gains, offsets = np.ones(count), np.zeros(count)
    linked = np.zeros(count, bool)
    linked[first] = linked[second] = True
    if not len(first):
        return gains, offsets, linked, 0
    mean, spread = _level(stats)
    work = _standardized(stats, mean, spread, linear)
    work /= work[:, N, None].mean()  # magnitudes near 1: a better-conditioned system
    theta, iterations = _solve_normal(count, first, second, _blocks(work, linear), linked)
    label = components(count, first, second)
    for group in np.unique(label[linked]):
        members = label == group
        scale = theta[members, 0].mean()
        if not np.isfinite(scale) or scale == 0:
            continue
        gains[members] = theta[members, 0] / scale
        if linear:
            # Back from standardized units: g x + o = spread (g x' + o') + mean.
            o = spread * theta[members, 1] / scale + mean - gains[members] * mean
            offsets[members] = o - o.mean()
    return gains, offsets, linked, iterations


def _level(stats):
    """Mean and standard deviation of every pair's pixels, both sides (spread 1 if flat)."""
    n = stats[:, N].sum() * 2
    mean = (stats[:, SI].sum() + stats[:, SJ].sum()) / n
    spread = max((stats[:, SII].sum() + stats[:, SJJ].sum()) / n - mean ** 2, 0.0) ** 0.5
    return mean, (spread if spread > 0 else 1.0)


def _solve_normal(count, first, second, blocks, linked):
    """theta (count, d) solving ``A theta = e_gain`` over the linked inputs by block-Jacobi
    preconditioned CG, with a small ridge; returns (theta, iterations)."""
    mii, mjj, mij = blocks
    d = mii.shape[1]
    diag = np.zeros((count, d, d))
    np.add.at(diag, first, mii)
    np.add.at(diag, second, mjj)
    ridge = RIDGE * max(float(np.einsum("naa->", diag)) / max(linked.sum() * d, 1), 1e-300)
    diag += ridge * np.eye(d)
    diag[~linked] = np.eye(d)
    rhs = np.zeros((count, d))
    rhs[linked, 0] = 1.0

    def apply(vector):
        out = _matvec(vector, first, second, mii, mjj, mij) + ridge * vector
        out[~linked] = 0.0
        return out

    return _pcg(apply, rhs, np.linalg.inv(diag))


def _standardized(stats, mean, spread, linear):
    """Pair sums of (x - mean) / spread (gain only: of x / spread, no shift)."""
    shift = mean if linear else 0.0
    out = np.empty_like(stats)
    n = stats[:, N]
    out[:, N] = n
    out[:, SI] = (stats[:, SI] - n * shift) / spread
    out[:, SJ] = (stats[:, SJ] - n * shift) / spread
    out[:, SII] = (stats[:, SII] - 2 * shift * stats[:, SI] + n * shift ** 2) / spread ** 2
    out[:, SJJ] = (stats[:, SJJ] - 2 * shift * stats[:, SJ] + n * shift ** 2) / spread ** 2
    out[:, SIJ] = (stats[:, SIJ] - shift * (stats[:, SI] + stats[:, SJ])
                   + n * shift ** 2) / spread ** 2
    return out
