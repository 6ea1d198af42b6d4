"""Depth derivative dF*/dz_p on the common z grid (DESIGN.md §1.4): resampling and local polynomials.

Two steps, both vectorized over ramps:

:func:`resample`
    Piecewise-linear interpolation of the samples of each ramp (ordered from the far end to the contact,
    z_p falling) onto a uniform grid.  Each grid point takes the segment of samples around it; there is
    no per-ramp loop: the segment of every grid point comes from one scatter of the samples' grid
    positions and a forward fill by doubling shifts.  Deflection noise can make z_p step back by a few
    hundredths of a nm where the layer is stiff; a grid point then never leaves its segment (the
    interpolation weight is clipped to [0, 1]), so the value is always one of the neighbouring samples'
    or between them.  A grid point is NaN where the ramp has no data (above its
    first or below its last sample); the deepest grid point may be extrapolated by at most one grid step.

:func:`local_polynomial` (the default method, "local-polynomial")
    Savitzky–Golay derivative: the slope of a least-squares quadratic (equivalently, on a uniform grid,
    a straight line) fitted to the ``2h + 1`` grid points within ``±window/2`` of each grid point, as one
    convolution.  Within ``h`` points of either end of a ramp's data the window is one-sided: the
    derivative of the quadratic fitted to the first (last) ``2h + 1`` points.  Bias: a step of the
    modulus at a layer boundary is smoothed over the window (the derivative of a step in the slope is a
    ramp of width ``window``); inside a layer more than ``window/2`` from a boundary the estimate is
    unbiased for a constant modulus and O(window² F''') otherwise.  See docs/pipeline.md for numbers.

All lengths here are in nanometres (float32) for speed; the pipeline converts.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

#: default derivative window (m): full width of the local fit
DEFAULT_WINDOW = 2e-9


def resample(z, values, lo, hi, grid_start: float, step: float, n_grid: int):
    """Interpolate complex ``values`` sampled at ``z`` onto the grid ``grid_start - k*step`` (k = 0..n_grid-1).

    :param z: (ramps, samples) z_p in nm, falling along each row between ``lo`` and ``hi``; the samples
        before ``lo`` must lie above the grid (z > grid_start)
    :param values: (ramps, samples) complex64 values at the samples
    :param lo, hi: (ramps,) int: the samples ``lo <= i < hi`` of each row are used (at least 2)
    :param grid_start: z of the first grid point (nm, the top); the grid falls with k
    :returns: (ramps, n_grid) complex64, NaN outside each ramp's data
    """
    n, m = z.shape
    rows = np.arange(n)
    # grid position of each sample; samples above the grid share position 0
    p = (np.float32(grid_start) - z) * np.float32(1.0 / step)
    np.nan_to_num(p, copy=False, nan=0.0)  # unused samples (NaN) join those above the grid
    ci = np.ceil(np.clip(p, 0, n_grid)).astype(np.int32)
    # the grid point j takes the segment of the last sample with ceil(p) <= j: mark the last sample of
    # every run of equal ceil(p) (the profile ends at hi - 1), scatter, then fill forward
    last = np.empty((n, m), bool)
    np.not_equal(ci[:, :-1], ci[:, 1:], out=last[:, :-1])
    last[:, -1] = False
    last &= np.arange(m)[None, :] < (hi - 1)[:, None]
    last[rows, hi - 1] = True
    f = np.flatnonzero(last)
    r = f // m
    i = (f - r * m).astype(np.int32)
    target = r * (n_grid + 1) + ci.ravel()[f]
    seg = np.full((n, n_grid + 1), -1, np.int32)
    seg.ravel()[target] = i
    seg = seg[:, :n_grid]
    # forward fill by doubling shifts (a segment covers at most `span` grid points)
    span = int(np.max(ci[:, 1:] - ci[:, :-1], initial=1))
    shift = 1
    while shift <= span:
        np.maximum(seg[:, shift:], seg[:, :-shift].copy(), out=seg[:, shift:])
        shift *= 2
    # bracket (i, i+1); beyond the last sample: at most one grid point, extrapolated with the last segment
    hi_1 = (hi - 1)[:, None]
    jg = np.arange(n_grid, dtype=np.float32)[None, :]
    p_last = np.take_along_axis(p, hi_1, 1)
    beyond = seg >= hi_1
    nodata = (seg < lo[:, None]) | (beyond & (jg > p_last + np.float32(1.0)))
    np.minimum(seg, hi_1 - 1, out=seg)
    np.maximum(seg, 0, out=seg)
    flat = seg + (rows * m).astype(np.int32)[:, None]
    flat = flat.ravel()
    pf = p.ravel()
    vf = values.ravel()
    p0 = np.take(pf, flat).reshape(n, n_grid)
    v0 = np.take(vf, flat).reshape(n, n_grid)
    flat += 1
    p1 = np.take(pf, flat).reshape(n, n_grid)
    v1 = np.take(vf, flat).reshape(n, n_grid)
    dp = p1 - p0
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (jg - p0) / dp
    t = np.where(dp > 0, t, np.float32(0.0))
    # noisy z can step back by a few hundredths of a grid step: never leave the segment (except the one
    # extrapolated point beyond the last sample)
    np.minimum(t, np.where(beyond, np.float32(1e9), np.float32(1.0)), out=t)
    np.maximum(t, 0, out=t)
    out = v0 + t * (v1 - v0)
    out[nodata] = np.nan
    return out


def _edge_operators(h: int):
    """Matrices mapping the 2h+1 edge points to the derivative (per grid step) at the first / last h
    points, from the least-squares quadratic through all 2h+1."""
    k = np.arange(2 * h + 1, dtype=np.float64)
    design = np.stack([np.ones_like(k), k, k * k], 1)
    coef = np.linalg.pinv(design)  # (3, 2h+1)
    # derivative at position q: c1 + 2 c2 q
    lower = np.stack([coef[1] + 2 * coef[2] * q for q in range(h)], 0)
    upper = np.stack([coef[1] + 2 * coef[2] * q for q in range(h + 1, 2 * h + 1)], 0)
    return lower, upper


def local_polynomial(values, step: float, window: float):
    """Savitzky–Golay derivative along axis 1 of a uniformly sampled, NaN-bounded profile.

    :param values: (ramps, grid) complex64, NaN outside one contiguous run per row
    :param step: grid step (nm)
    :param window: full width of the local fit (nm); h = round(window / (2 step)) points each side
    :returns: (ramps, grid) complex64 derivative per nm, NaN where ``values`` is NaN
    """
    h = max(1, int(round(window / (2 * step))))
    n, g = values.shape
    ker = np.arange(-h, h + 1, dtype=np.float64)
    ker /= (ker * ker).sum() * step
    re = ndimage.correlate1d(values.real, ker, axis=1, mode="nearest")
    im = ndimage.correlate1d(values.imag, ker, axis=1, mode="nearest")
    out = np.empty((n, g), np.complex64)
    out.real = re
    out.imag = im
    valid = np.isfinite(values.real)
    nv = valid.sum(1)
    if g < 2 * h + 1:
        out[:] = np.nan
        return out
    start = np.argmax(valid, axis=1)
    stop = start + nv  # exclusive
    lower, upper = _edge_operators(h)
    lower = (lower / step).astype(np.float32)
    upper = (upper / step).astype(np.float32)
    usable = nv >= 2 * h + 1
    offs = np.arange(2 * h + 1)
    # lower edge (first h points of the data run)
    i0 = np.clip(start[:, None] + offs[None, :], 0, g - 1)
    win = np.take_along_axis(values, i0, 1)
    d = win @ lower.T.astype(np.complex64)  # (n, h)
    # upper edge (last h points)
    i1 = np.clip(stop[:, None] - (2 * h + 1) + offs[None, :], 0, g - 1)
    win1 = np.take_along_axis(values, i1, 1)
    d1 = win1 @ upper.T.astype(np.complex64)
    rows = np.flatnonzero(usable)
    q = np.arange(h)
    out[rows[:, None], start[rows][:, None] + q[None, :]] = d[rows]
    out[rows[:, None], stop[rows][:, None] - h + q[None, :]] = d1[rows]
    out[~valid] = np.nan
    out[~usable] = np.nan
    return out
