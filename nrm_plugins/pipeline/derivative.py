"""Depth derivative dF*/dz_p on the common z grid (DESIGN.md §1.4): resampling and local polynomials.

Two steps, both vectorized over ramps:

:func:`resample`
    Piecewise-linear interpolation of the samples of each ramp (ordered from the far end to the contact,
    z_p falling) onto a uniform grid.  The grid point j takes the segment (i, i+1) of the last sample i
    whose grid position is at most j; there is no per-ramp loop: the segments of all grid points come
    from one scatter of the sample indices onto their grid points (largest index wins) and a running
    maximum by doubling shifts, over the columns the ramps of the batch use.  Deflection noise can make
    z_p step back by a few hundredths of a nm where the layer is stiff; a grid point then never leaves
    its segment (the interpolation weight is clipped to [0, 1]), so the value is always one of the
    neighbouring samples' or between them.  A grid point is NaN where the ramp has no data (above its
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

from .. import native

#: default derivative window (m): full width of the local fit
DEFAULT_WINDOW = 2e-9


def resample(z, values, lo, hi, grid_start: float, step: float, n_grid: int, positions: bool = False, out=None):
    """Interpolate complex ``values`` sampled at ``z`` onto the grid ``grid_start - k*step`` (k = 0..n_grid-1).

    :param z: (ramps, samples) z_p in nm, falling along each row between ``lo`` and ``hi``; the samples
        before ``lo`` must lie above the grid (z > grid_start)
    :param values: (ramps, samples) complex64 values at the samples
    :param lo, hi: (ramps,) int: the samples ``lo <= i < hi`` of each row are used (at least 2)
    :param grid_start: z of the first grid point (nm, the top); the grid falls with k
    :param positions: also return the fractional sample index of every grid point (float32, NaN where
        the result is NaN): a quantity linear in the sample index, ``a + b i``, resamples to
        ``a + b position``
    :param out: optional (ramps, n_grid) complex64 C-contiguous array for the result (compiled kernel only)
    :returns: (ramps, n_grid) complex64, NaN outside each ramp's data (and the positions)

    The compiled kernel (:mod:`nrm_plugins.native`) computes the same, one ramp at a time; this numpy
    version is the reference it is tested against and runs when the kernels are not built.
    """
    if native.available():
        return _resample_native(z, values, lo, hi, grid_start, step, n_grid, positions, out)
    return _resample_numpy(z, values, lo, hi, grid_start, step, n_grid, positions)


def _resample_native(z, values, lo, hi, grid_start, step, n_grid, positions, out=None):
    n, m = z.shape
    if out is None:
        out = np.empty((n, n_grid), np.complex64)
    elif out.shape != (n, n_grid) or out.dtype != np.complex64 or not out.flags.c_contiguous:
        raise ValueError(f"resample: out must be a C-contiguous complex64 array of shape {(n, n_grid)}")
    pos = np.empty((n, n_grid), np.float32) if positions else None
    if n:
        z = native.f32(z)
        values = np.ascontiguousarray(values, np.complex64)
        lo = np.ascontiguousarray(lo, np.int64)
        hi = np.ascontiguousarray(hi, np.int64)
        if native.lib().nrm_resample(n, m, z, values, lo, hi, grid_start, step, n_grid, out, native.ptr(pos)):
            raise MemoryError("resampling: out of memory")
    return (out, pos) if positions else out


def _resample_numpy(z, values, lo, hi, grid_start, step, n_grid, positions=False):
    n, m = z.shape
    lo = np.asarray(lo, np.intp)
    hi = np.asarray(hi, np.intp)
    if n == 0:
        out = np.empty((0, n_grid), np.complex64)
        return (out, out.real.copy()) if positions else out
    c0 = int(lo.min())  # only the columns some ramp uses
    c1 = max(int(hi.max()), c0 + 2)
    width = c1 - c0
    rows = np.arange(n)
    # grid position p of each sample and its grid point ceil(p) in [0, n_grid] (unused NaN samples: 0)
    p = np.subtract(np.float32(grid_start), z[:, c0:c1], dtype=np.float32)
    p *= np.float32(1.0 / step)
    ci = np.fmax(p, np.float32(0.0))
    np.fmin(ci, np.float32(n_grid), out=ci)
    np.ceil(ci, out=ci)
    ci = ci.astype(np.int32)
    span = int(np.max(ci[:, 1:] - ci[:, :-1], initial=1))
    ci_last = ci[rows, hi - 1 - c0]
    np.copyto(ci, np.int32(n_grid), where=np.arange(c0, c1)[None, :] >= hi[:, None])  # discarded column
    ci += (rows * (n_grid + 1)).astype(np.int32)[:, None]
    # the grid point j takes the segment (i, i + 1) of the last sample i < hi with ceil(p_i) <= j: the
    # largest sample index per grid point (one unbuffered scatter), then the running maximum along the
    # grid by doubling shifts (the next sample's grid point is at most `span` ahead of a sample's) ...
    seg = np.full((n, n_grid + 1), -1, np.int32)
    index = np.broadcast_to(np.arange(c0, c1, dtype=np.int32), (n, width))
    np.maximum.at(seg.reshape(-1), ci.reshape(-1), index.reshape(-1))
    seg = seg[:, :n_grid]
    shift = 1
    while shift <= span:
        np.maximum(seg[:, shift:], seg[:, :-shift].copy(), out=seg[:, shift:])
        shift *= 2
    # ... and from the last sample's grid point on, the last sample (where noise made z step back, the
    # shifts alone would leave an earlier sample there)
    jj = np.arange(n_grid, dtype=np.int32)[None, :]
    hi_1 = (hi - 1).astype(np.int32)[:, None]
    np.copyto(seg, hi_1, where=jj >= ci_last[:, None])
    # bracket (i, i+1); beyond the last sample: at most one grid point, extrapolated with the last segment
    p_last = p[rows, hi - 1 - c0][:, None]
    beyond = seg >= hi_1
    nodata = seg < lo.astype(np.int32)[:, None]
    nodata |= beyond & (jj > p_last + np.float32(1.0))
    np.minimum(seg, hi_1 - 1, out=seg)
    np.maximum(seg, c0, out=seg)
    at_p = seg - c0 + (rows * width)[:, None]
    at_v = seg + (rows * m)[:, None]
    pf = p.reshape(-1)
    vf = values.reshape(-1)
    p0 = np.take(pf, at_p)
    v0 = np.take(vf, at_v)
    at_p += 1
    at_v += 1
    dp = np.take(pf, at_p)
    v1 = np.take(vf, at_v)
    dp -= p0
    # a grid point never leaves its segment (noise can make z step back by a few hundredths of a step),
    # except the one extrapolated point beyond the last sample
    t = jj - p0
    t /= np.where(dp > 0, dp, np.float32(np.inf))
    np.minimum(t, np.where(beyond, np.float32(1e9), np.float32(1.0)), out=t)
    np.maximum(t, 0, out=t)
    v1 -= v0
    v1 *= t
    v1 += v0
    v1[nodata] = np.nan
    if not positions:
        return v1
    t += seg
    t[nodata] = np.nan
    return v1, t


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


def local_polynomial(values, step: float, window: float, out=None):
    """Savitzky–Golay derivative along axis 1 of a uniformly sampled, NaN-bounded profile.

    :param values: (ramps, grid) complex64, NaN outside one contiguous run per row
    :param step: grid step (nm)
    :param window: full width of the local fit (nm); h = round(window / (2 step)) points each side
    :param out: optional C-contiguous complex64 array of the same shape for the result (used by the
        compiled kernel; the numpy version returns a new array)
    :returns: (ramps, grid) complex64 derivative per nm, NaN where ``values`` is NaN

    Runs the compiled kernel when it is built (the same definition; this numpy version is its reference).
    """
    h = max(1, int(round(window / (2 * step))))
    if native.available():
        if out is None:
            out = np.empty(values.shape, np.complex64)
        elif out.shape != values.shape or out.dtype != np.complex64 or not out.flags.c_contiguous:
            raise ValueError(f"local_polynomial: out must be a C-contiguous complex64 array of shape {values.shape}")
        if native.lib().nrm_local_polynomial(values.shape[0], values.shape[1],
                                             np.ascontiguousarray(values, np.complex64), h, step, out):
            raise MemoryError("local_polynomial: out of memory")
        return out
    return _local_polynomial_numpy(values, step, h)


def _local_polynomial_numpy(values, step: float, h: int):
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
