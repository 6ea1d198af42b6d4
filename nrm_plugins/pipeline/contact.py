"""Contact point of each ramp: the intersection of two robust lines (DESIGN.md §1.3, "two-line").

Far from the surface the deflection is a straight *baseline* (offset, tilt, linear drift); in hard
solid–solid contact the tip follows the sample, a straight *constant-compliance* line.  Their intersection
is the ramp's own solid–solid contact point, ``z_p = 0``.  A soft layer (the SEI) deflects the cantilever
between the two regimes; its points belong to neither line and are left out.

The method is vectorized over ramps and works on *blocks* of ``block`` consecutive samples: one pass over
the data collects, per block, the count, the means and the within-block centred sums of squares and
products of (piezo, deflection).  Every least-squares line over a union of whole blocks is computed
exactly from these (the pooled sums of squares are the within-block sums plus the between-block terms),
so the iterations below cost O(ramps × blocks), not O(ramps × samples).

Algorithm (all ramps at once, a fixed number of iterations, no loop per ramp):

1. Noise: ``sigma`` = median over blocks of the within-block residual standard deviation about a
   straight line (robust to the kink and to outliers; a block mean then has ``sigma / sqrt(count)``).
2. Hard contact: the slope of the last three blocks must lie within ``contact_slope_range`` (in m of
   deflection per m of piezo, -1 for a perfect InvOLS) or the ramp is flagged "no hard contact".  The
   contact region is the run of blocks at the end of the ramp whose local slope (least squares over two
   consecutive blocks) stays within ``contact_slope_tolerance`` (relative) or 4 standard deviations of
   that slope; it ends where two consecutive local slopes are off (the kink to the layer), plus one block
   of margin.  Smooth curvature of the contact part (Hertz indentation of the electrode, piezo creep)
   stays inside the region and the line is fitted to all of it, as the ideal construction does.
3. Free baseline.  Straight baselines: the first half of the blocks before the contact region gives a
   first line; then, up to eight times (until nothing changes): the free region ends at the first run of
   three blocks all more than ``region_threshold`` standard deviations off the line (the *first
   deflection rise*; three, so that noise alone ends it with a probability of about 10⁻⁸ per block), less
   a margin of ``baseline_margin`` of its length (at least one block) so that the gradual start of a soft
   layer does not tilt the line; outliers are left out.  Curved baselines (optical interference, drag,
   non-linear drift; :func:`_free_region`): a line over that whole free part would be a chord, and its
   misfit ends the region early; there the baseline is the *local* line over ``baseline_window`` of
   piezo travel before the rise, found with sliding local lines and a threshold scaled by their own misfit.
   A ramp counts as curved when that misfit scale exceeds :data:`CURVED_BASELINE` or when the global line
   stopped more than one local window before the local lines saw the rise.
4. Intersection of the two lines, with its 1-sigma uncertainty from the two fits' covariances.

Hard-contact points are thus selected by their position along the ramp (after the kink), never by their
depth.  Flags: see :data:`FLAGS`.
"""
from __future__ import annotations

import numpy as np

from .. import native

#: bit flags of a ramp (the pipeline turns them into the ``flag`` text)
NO_BASELINE = 1
NO_CONTACT = 2
STARTS_IN_CONTACT = 4
FLAGS = {NO_BASELINE: "no free baseline", NO_CONTACT: "no hard contact", STARTS_IN_CONTACT: "starts in contact"}

MIN_FREE_BLOCKS = 4
MIN_CONTACT_BLOCKS = 3
MIN_BASELINE_BLOCKS = 6
#: misfit scale of the local baseline lines (1 for a straight, noisy baseline) above which the baseline
#: counts as curved and the local line is used instead of the line over the whole free part
CURVED_BASELINE = 2.0


def block_sums(x, y, weight=None, block: int = 8) -> dict:
    """Per-block count, means and within-block centred sums of (x, y), float32.

    :param x, y: (ramps, samples) float arrays, finite wherever ``weight`` > 0 (and everywhere when
        ``weight`` is None).
    :param weight: optional (ramps, samples) 0/1 array of usable samples.
    :returns: dict of (ramps, blocks) float32 arrays ``c, xm, ym, sxx, sxy, syy``.
    """
    n, m = x.shape
    nb = -(-m // block)
    pad = nb * block - m
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    if pad:
        x = np.pad(x, ((0, 0), (0, pad)), mode="edge")
        y = np.pad(y, ((0, 0), (0, pad)), mode="edge")
        w = np.ones((n, m), np.float32) if weight is None else np.asarray(weight, np.float32)
        weight = np.pad(w, ((0, 0), (0, pad)))
    xr = x.reshape(n, nb, block)
    yr = y.reshape(n, nb, block)
    ones = np.ones(block, np.float32)
    if weight is None:
        c = np.full((n, nb), np.float32(block))
        xm = (xr @ ones) * np.float32(1.0 / block)
        ym = (yr @ ones) * np.float32(1.0 / block)
        xc = xr - xm[:, :, None]  # centred in each block: float32 sums of squares stay exact enough
        yc = yr - ym[:, :, None]
        sxx = (xc * xc) @ ones
        sxy = (xc * yc) @ ones
        syy = (yc * yc) @ ones
    else:
        wr = np.asarray(weight, np.float32).reshape(n, nb, block)
        c = wr @ ones
        with np.errstate(invalid="ignore", divide="ignore"):
            xm = ((wr * xr) @ ones) / c
            ym = ((wr * yr) @ ones) / c
        xc = xr - np.nan_to_num(xm)[:, :, None]
        yc = yr - np.nan_to_num(ym)[:, :, None]
        wx = wr * xc
        sxx = (wx * xc) @ ones
        sxy = (wx * yc) @ ones
        syy = ((wr * yc) * yc) @ ones
    return {"c": c, "xm": xm, "ym": ym, "sxx": sxx, "sxy": sxy, "syy": syy}


class _Lines:
    """Exact least-squares lines over unions of whole blocks from pooled moments (vectorized)."""

    def __init__(self, bs, usable):
        c = np.where(usable, bs["c"], 0).astype(np.float32)
        # per-row reference so that the raw moments stay small
        with np.errstate(invalid="ignore", divide="ignore"):
            self.xref = (np.where(usable, bs["xm"], 0) * c).sum(1) / c.sum(1)
            self.yref = (np.where(usable, bs["ym"], 0) * c).sum(1) / c.sum(1)
        self.xref = np.nan_to_num(self.xref).astype(np.float32)
        self.yref = np.nan_to_num(self.yref).astype(np.float32)
        xm = np.where(usable, bs["xm"] - self.xref[:, None], 0).astype(np.float32)
        ym = np.where(usable, bs["ym"] - self.yref[:, None], 0).astype(np.float32)
        sxx = np.where(usable, bs["sxx"], 0)
        sxy = np.where(usable, bs["sxy"], 0)
        syy = np.where(usable, bs["syy"], 0)
        self.xm, self.ym, self.c = xm, ym, c
        c64, xm64, ym64 = c.astype(np.float64), xm.astype(np.float64), ym.astype(np.float64)
        self.moments = np.stack([c64, c64 * xm64, c64 * ym64, c64 * xm64 * xm64 + sxx, c64 * xm64 * ym64 + sxy])
        self.syy = c64 * ym64 * ym64 + syy

    def rows(self, index) -> "_Lines":
        """The same blocks restricted to the ramps ``index`` (an integer array)."""
        sub = object.__new__(_Lines)
        sub.xref, sub.yref = self.xref[index], self.yref[index]
        sub.xm, sub.ym, sub.c = self.xm[index], self.ym[index], self.c[index]
        sub.moments, sub.syy = self.moments[:, index], self.syy[index]
        return sub

    def fit(self, include, final: bool = False) -> dict:
        """Line ``y = a + s (x - x0)`` (row-referenced) over the samples of the included blocks."""
        inc = include.astype(np.float64)
        n, sx, sy, sxx, sxy = np.einsum("ij,kij->ki", inc, self.moments)
        with np.errstate(invalid="ignore", divide="ignore"):
            x0 = sx / n
            y0 = sy / n
            cxx = sxx - sx * x0
            cxy = sxy - sx * y0
            s = cxy / cxx
            out = {"s": s, "x0": x0, "a": y0, "n": n, "sxx": cxx}
            if final:
                syy = np.einsum("ij,ij->i", inc, self.syy)
                cyy = syy - sy * y0
                out["var"] = np.maximum(cyy - s * cxy, 0.0) / (n - 2)
        return out

    def outliers(self, line, sigma2, inv_c, thresholds):
        """Blocks farther than each threshold (in standard deviations of the block mean plus the line's
        prediction uncertainty, which grows with the distance from the fitted blocks) from ``line``."""
        dx = self.xm - line["x0"].astype(np.float32)[:, None]
        r = self.ym - (line["a"].astype(np.float32)[:, None] + line["s"].astype(np.float32)[:, None] * dx)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = sigma2[:, None] * (inv_c + (1.0 / line["n"]).astype(np.float32)[:, None]
                                     + dx * dx * (1.0 / line["sxx"]).astype(np.float32)[:, None])
        r2 = r * r
        return [r2 > np.float32(t * t) * var for t in thresholds]

    def to_absolute(self, line):
        """(slope, offset) of ``y = offset + slope * x`` in the input coordinates."""
        s = line["s"]
        off = self.yref + line["a"] - s * (self.xref + line["x0"])
        return s, off


def _row_quantile(a, q: float):
    """The ``q`` quantile of the non-NaN values of each row of ``a`` (linear interpolation, as
    ``numpy.nanquantile``; NaN for a row without values), by one sort of all rows (``nanquantile`` along an
    axis loops over the rows in Python)."""
    count = (~np.isnan(a)).sum(1)
    srt = np.sort(np.where(np.isnan(a), np.inf, a), axis=1)  # the values first, in order
    pos = q * (count - 1)
    i0 = np.clip(np.floor(pos).astype(np.intp), 0, a.shape[1] - 1)
    i1 = np.clip(i0 + 1, 0, np.maximum(count - 1, 0))
    v0 = np.take_along_axis(srt, i0[:, None], 1)[:, 0]
    v1 = np.take_along_axis(srt, i1[:, None], 1)[:, 0]
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, v0 + (pos - i0) * (v1 - v0), np.nan)


def _free_region(L, vb, sig2, inv_c, first, kc, window, threshold, region_threshold, baseline_margin):
    """Blocks of the local baseline line and the first deflection rise (block index), all ramps at once.

    For every candidate end ``e`` of the free region, the line through the (up to) ``window`` usable blocks
    before ``e`` predicts the blocks ``e, e+1, e+2``; the first rise is the first ``e`` whose three blocks
    all lie on the same side of that line by more than ``region_threshold`` standard deviations (block noise
    plus the line's prediction uncertainty), times the ramp's *misfit scale*: the robust spread (1.4826 ×
    median |standardized residual|) of the third-block predictions over the far half of the candidates, at
    least 1.  A straight, noisy baseline has a misfit scale of ≈ 1; a curved one (optical interference,
    hydrodynamic drag near the surface) raises it, so smooth curvature over the baseline does not end the
    free region early, while the layer's rise, which keeps growing, still does.  The baseline is then the
    line through the ``window`` blocks before the rise less a margin (``baseline_margin`` of the window, at
    least one block), without blocks more than ``threshold`` (scaled the same way) off it.  Being local, the
    line is the tangent of a curved baseline near the layer, not a chord across the whole free travel.
    """
    n, nb = vb.shape
    m5 = L.moments
    cm = np.zeros((5, n, nb + 1))
    np.cumsum(m5, axis=2, out=cm[:, :, 1:])
    cb = np.zeros((n, nb + 1), np.int64)
    np.cumsum(vb, axis=1, out=cb[:, 1:])
    e = np.arange(nb + 1)[None, :]
    a = np.minimum(np.maximum(first[:, None], e - window[:, None]), e)  # window [a, e)
    flat_a = (a + (np.arange(n) * (nb + 1))[:, None]).reshape(-1)
    sums = cm - np.take(cm.reshape(5, -1), flat_a, axis=1).reshape(cm.shape)
    nwin = cb - np.take_along_axis(cb, a, axis=1)
    cnt, sx, sy, sxx, sxy = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        x0 = sx / cnt
        y0 = sy / cnt
        cxx = sxx - sx * x0
        slope = (sxy - sx * y0) / cxx
    xm = L.xm.astype(np.float64)
    ym = L.ym.astype(np.float64)

    def standardized(t):
        """Residual of block e+t from the line over [a_e, e), standardized, for e = 0..nb-1-t."""
        j = slice(t, nb)
        k = slice(0, nb - t)
        dx = xm[:, j] - x0[:, k]
        r = ym[:, j] - (y0[:, k] + slope[:, k] * dx)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = sig2[:, None] * (inv_c[:, j] + 1.0 / cnt[:, k] + dx * dx / cxx[:, k])
            zt = r / np.sqrt(var)
        out = np.full((n, nb), np.nan)
        ok = vb[:, j] & (nwin[:, k] >= 3)
        out[:, :nb - t] = np.where(ok, zt, np.nan)
        return out

    z0, z1, z2 = standardized(0), standardized(1), standardized(2)
    bidx = np.arange(nb)[None, :]
    cand = (bidx >= (first + MIN_FREE_BLOCKS)[:, None]) & (bidx <= kc[:, None]) & (nwin[:, :nb] >= MIN_FREE_BLOCKS)
    far = cand & (bidx <= ((first + kc) // 2)[:, None])
    resid = np.where(far, np.abs(z2), np.nan)
    none = ~np.isfinite(resid).any(1)
    resid[none, 0] = 0.0  # rows without far candidates: scale 1 (no all-NaN quantile)
    # the upper quartile over the far half of the candidates (|N(0,1)|: 1.150): it covers the phases of a
    # curved baseline where its curvature is largest; the layer (the last candidates) stays out of it
    scale = _row_quantile(resid, 0.75) / 1.150
    scale = np.where(np.isfinite(scale) & ~none, np.maximum(scale, 1.0), 1.0)
    with np.errstate(invalid="ignore"):
        same = ((z0 > 0) & (z1 > 0) & (z2 > 0)) | ((z0 < 0) & (z1 < 0) & (z2 < 0))
        q = np.fmin(np.fmin(np.abs(z0), np.abs(z1)), np.abs(z2))
        rise = cand & same & (q > (region_threshold * scale)[:, None])
    free_end = np.where(rise.any(1), np.argmax(rise, axis=1), kc)
    free_end = np.minimum(free_end, kc)
    length = np.minimum(free_end - first, window)
    margin = np.maximum(1, np.ceil(baseline_margin * length)).astype(np.int64)
    end_b = np.maximum(free_end - margin, first + 2)
    start_b = np.maximum(first, end_b - window)
    inc = vb & (bidx >= start_b[:, None]) & (bidx < end_b[:, None])
    # outlier blocks (spikes) off the line of the same blocks
    rows = np.arange(n)
    eb = np.minimum(end_b, nb)
    dx = xm - x0[rows, eb][:, None]
    r = ym - (y0[rows, eb][:, None] + slope[rows, eb][:, None] * dx)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = sig2[:, None] * (inv_c + 1.0 / cnt[rows, eb][:, None] + dx * dx / cxx[rows, eb][:, None])
        out = r * r > (threshold * scale)[:, None] ** 2 * var
        off = vb & (r * r > np.float64(region_threshold) ** 2 * var)
    # a straight baseline: extend the line back over every earlier block it still predicts within the
    # noise (two consecutive blocks off end the extension), so that a long free part is fully used
    off2 = off[:, :-1] & off[:, 1:] & (bidx[:, :-1] < (start_b - 1)[:, None])
    anyo = off2.any(1)
    back = np.where(anyo, nb - 2 - np.argmax(off2[:, ::-1], axis=1) + 2, first)
    start_b = np.minimum(np.maximum(back, first), start_b)
    inc = vb & (bidx >= start_b[:, None]) & (bidx < end_b[:, None])
    kept = inc & ~out
    inc = np.where((kept.sum(1) >= 2)[:, None], kept, inc)
    return inc, free_end, scale


def _grown_region(L, vb, sig2_32, inv_c, first, last, kc, threshold, region_threshold, baseline_margin):
    """Blocks of the global baseline line and the first rise, for a straight baseline: from the first half
    of the blocks before the contact region, grown (at most doubling per step, up to eight steps, until
    nothing changes) to the first run of three blocks more than ``region_threshold`` standard deviations
    off the line, less ``baseline_margin`` of its length; blocks more than ``threshold`` off are left out."""
    n, nb = vb.shape
    bidx = np.arange(nb)[None, :]
    n0 = np.maximum(3, (kc - first) // 2)
    inc_b = vb & (bidx >= first[:, None]) & (bidx < (first + n0)[:, None])
    free_end = np.full(n, nb)
    # a step depends only on the ramp's current region, so a ramp whose region did not change is final:
    # each step works on the ramps still changing (`act`; a few after the first two steps)
    act = np.arange(n)
    L_a, inc_a = L, inc_b
    for _ in range(8):
        vb_a, first_a = vb[act], first[act]
        out, dev = L_a.outliers(L_a.fit(inc_a), sig2_32[act], inv_c[act], (threshold, region_threshold))
        out &= vb_a
        dev &= vb_a
        pair = dev.copy()
        pair[:, :-2] &= dev[:, 1:-1] & dev[:, 2:]  # this block and the next two all off the line
        pair[:, -2:] = False
        pair &= bidx >= first_a[:, None]
        fe = np.where(pair.any(1), np.argmax(pair, axis=1), last[act] + 1)  # first rise (block index)
        fe = np.minimum(fe, kc[act])
        cur = nb - np.argmax(inc_a[:, ::-1], axis=1)  # end of the current region
        fe = np.minimum(fe, cur + np.maximum(cur - first_a, 3) + 1)
        free_end[act] = fe
        margin = np.maximum(1, np.ceil(baseline_margin * (fe - first_a))).astype(np.int64)
        inc_new = vb_a & (bidx >= first_a[:, None]) & (bidx < (fe - margin)[:, None]) & ~out
        few = inc_new.sum(1) < 2
        inc_new[few] = inc_a[few]
        changed = np.flatnonzero((inc_new != inc_a).any(1))
        if not changed.size:
            break
        act = act[changed]
        inc_a = inc_new[changed]
        inc_b[act] = inc_a
        L_a = L.rows(act)
    return inc_b, free_end


def two_line(x, y, weight=None, *, block: int = 8, threshold: float = 4.0, region_threshold: float = 3.0,
             baseline_margin: float = 0.1, contact_slope_range=(-2.0, -0.5), contact_slope_tolerance: float = 0.15,
             noise_floor: float = 1e-4, baseline_window: float = 50.0) -> dict:
    """Two-line contact point of a batch of ramps (see the module docstring).

    The compiled kernel (``nrm_two_line`` in ``nrm_plugins/_native/contact.c``: the same algorithm, one ramp
    at a time, in double precision) computes it when :func:`nrm_plugins.native.available`;
    :func:`_two_line_numpy` is its reference and the fallback.  Ramps whose hard-contact part spans fewer
    than :data:`SHORT_CONTACT_BLOCKS` blocks (or that find none) are fitted again with blocks of half the
    size (at least :data:`MIN_BLOCK` samples), whose result is kept unless it is flagged where the first was
    not.

    :param x: (ramps, samples) piezo position d_s in nm, each row ordered from the farthest sample to the
        deepest (an approach as recorded; the pipeline reverses retract ramps), referenced to any
        per-row constant.
    :param y: (ramps, samples) deflection in nm (positive = tip pushed away), same order.
    :param weight: optional 0/1 array of usable samples (x and y must then be finite everywhere; put any
        finite value where the weight is 0).
    :param threshold: outlier threshold in standard deviations of a block mean.
    :param region_threshold: deviation (standard deviations) of two consecutive blocks that ends a region.
    :param baseline_margin: fraction of the free region left out at its end.
    :param contact_slope_range: accepted slope of the constant-compliance line (deflection per piezo).
    :param contact_slope_tolerance: relative change of the local slope that ends the contact region.
    :param noise_floor: smallest deflection noise assumed (nm), for noise-free data.
    :param baseline_window: piezo travel (nm) of the local baseline line before the first rise (at least
        :data:`MIN_BASELINE_BLOCKS` blocks).
    :returns: dict of (ramps,) arrays: ``position`` (nm, in the coordinates of ``x``), ``uncertainty``
        (nm, 1 sigma), ``baseline_slope``, ``baseline_offset`` (deflection = offset + slope * x),
        ``contact_slope``, ``contact_offset``, ``free_end`` and ``contact_start`` (sample indices: the
        first deflection rise, the first sample of the fitted contact region), ``noise`` (nm, per
        sample), ``flags`` (int bit mask, :data:`FLAGS`).
    """
    params = dict(threshold=threshold, region_threshold=region_threshold,
                  baseline_margin=baseline_margin, contact_slope_range=contact_slope_range,
                  contact_slope_tolerance=contact_slope_tolerance, noise_floor=noise_floor,
                  baseline_window=baseline_window)
    res = _two_line_once(x, y, weight, block, params)
    if block < 2 * MIN_BLOCK or int(block) != block or res["flags"].size == 0:
        return res
    # a short hard-contact part (a low setpoint, few samples per ramp) spans too few blocks for its line and
    # its kink: those ramps again with blocks of half the size; the finer result is kept unless it is
    # flagged where the coarse one was not
    n, m = np.shape(x)
    if weight is None:
        last = np.full(n, m)
    else:
        used = np.asarray(weight) > 0
        last = np.where(used.any(1), m - np.argmax(used[:, ::-1], axis=1), 0)
    short = ((last - res["contact_start"]) < SHORT_CONTACT_BLOCKS * block) | ((res["flags"] & NO_CONTACT) != 0)
    rows = np.flatnonzero(short)
    if rows.size:
        fine = _two_line_once(np.asarray(x)[rows], np.asarray(y)[rows],
                              None if weight is None else np.asarray(weight)[rows], block // 2, params)
        take = (fine["flags"] == 0) | (res["flags"][rows] != 0)
        for k, v in fine.items():
            res[k][rows[take]] = v[take]
    return res


#: ramps whose hard-contact part spans fewer blocks than this are fitted again with half-size blocks
SHORT_CONTACT_BLOCKS = 8
#: the smallest block (samples): a block needs 3 usable samples for its within-block line
MIN_BLOCK = 4


def _two_line_once(x, y, weight, block, params):
    """One pass of :func:`two_line` with a fixed block size: the compiled kernel, or numpy."""
    params = dict(params, block=block)
    n, m = np.shape(x)
    if 0 < m <= block and int(block) == block:  # a single block: no line can be fitted (both paths alike)
        res = {k: np.full(n, np.nan) for k in _KEYS}
        res.update(free_end=np.zeros(n, np.int64), contact_start=np.zeros(n, np.int64),
                   flags=np.full(n, NO_BASELINE | NO_CONTACT, np.int64))
        return res
    if not native.available():
        return _two_line_numpy(x, y, weight, **params)
    x = np.ascontiguousarray(x, np.float32)
    y = np.ascontiguousarray(y, np.float32)
    n, m = x.shape
    if n == 0 or m == 0 or block < 1 or int(block) != block:  # nothing to compute, or numpy's own error
        return _two_line_numpy(x, y, weight, **params)
    w = None if weight is None else np.ascontiguousarray(weight, np.float32)
    if y.shape != x.shape or (w is not None and w.shape != x.shape):
        raise ValueError(f"two_line: x {x.shape}, y {y.shape} and weight {None if w is None else w.shape} differ")
    lo, hi = params["contact_slope_range"]
    par = np.array([block, params["threshold"], params["region_threshold"], params["baseline_margin"], lo, hi,
                    params["contact_slope_tolerance"], params["noise_floor"], params["baseline_window"]], np.float64)
    out = np.empty((10, n))
    if native.lib().nrm_two_line(n, m, x, y, native.ptr(w), par, out) == -1:
        raise MemoryError("two_line: out of memory in the compiled kernel")
    res = dict(zip(_KEYS, out))
    for k in ("free_end", "contact_start", "flags"):
        res[k] = res[k].astype(np.int64)
    return res


#: the keys of :func:`two_line`'s result, in the order of the compiled kernel's output rows
_KEYS = ("position", "uncertainty", "baseline_slope", "baseline_offset", "contact_slope", "contact_offset",
         "free_end", "contact_start", "noise", "flags")


def _two_line_numpy(x, y, weight=None, *, block: int = 8, threshold: float = 4.0, region_threshold: float = 3.0,
                    baseline_margin: float = 0.1, contact_slope_range=(-2.0, -0.5),
                    contact_slope_tolerance: float = 0.15, noise_floor: float = 1e-4,
                    baseline_window: float = 50.0) -> dict:
    """:func:`two_line` in numpy, vectorized over the ramps: the reference of the compiled kernel and the
    implementation used without it (same parameters and result)."""
    bs = block_sums(x, y, weight, block)
    n, nb = bs["c"].shape
    cnt = bs["c"]
    vb = cnt >= max(3, block // 2)  # usable blocks
    bidx = np.arange(nb)[None, :]
    flags = np.zeros(n, np.int64)
    L = _Lines(bs, vb)
    with np.errstate(divide="ignore"):
        inv_c = np.where(vb, 1.0 / np.maximum(cnt, 1), 0).astype(np.float32)

    # 1. noise per sample: median over blocks of the within-block residual variance about a line
    with np.errstate(invalid="ignore", divide="ignore"):
        v_in = np.maximum(bs["syy"] - bs["sxy"] * bs["sxy"] / bs["sxx"], 0) / (cnt - 2)
    v_in = np.where(vb & np.isfinite(v_in), v_in, np.inf)
    sig2 = np.partition(v_in, nb // 2, axis=1)[:, nb // 2].astype(np.float64)
    yr = np.where(vb, L.ym, 0)
    floor = noise_floor + 1e-6 * (yr.max(1) - yr.min(1))
    sig2 = np.where(np.isfinite(sig2), np.maximum(sig2, floor ** 2), floor ** 2)
    sigma = np.sqrt(sig2)
    sig2_32 = sig2.astype(np.float32)

    nvalid = vb.sum(1)
    last = nb - 1 - np.argmax(vb[:, ::-1], axis=1)
    first = np.argmax(vb, axis=1)
    enough = nvalid >= MIN_FREE_BLOCKS + MIN_CONTACT_BLOCKS
    lo, hi = contact_slope_range

    # 2. constant-compliance region: the run of blocks at the end of the ramp whose local slope (over
    # two blocks) stays within `contact_slope_tolerance` of the slope of the last three blocks; smooth
    # curvature (Hertz indentation of the electrode, piezo creep) stays inside, the kink to the layer
    # does not.  The line is fitted to the whole region (no outlier removal), as the ideal two-line
    # construction does.
    inc_end = vb & (bidx >= (last - 2)[:, None])
    s_ref = L.fit(inc_end)["s"]
    mom = L.moments
    pair_mom = mom[:, :, :-1] + mom[:, :, 1:]
    pn, psx, psy, psxx, psxy = pair_mom
    with np.errstate(invalid="ignore", divide="ignore"):
        pcxx = psxx - psx * psx / pn
        ps = (psxy - psx * psy / pn) / pcxx
        tol = np.maximum(contact_slope_tolerance * np.abs(s_ref)[:, None], 4 * sigma[:, None] / np.sqrt(pcxx))
    off = ~(np.abs(ps - s_ref[:, None]) <= tol) & vb[:, :-1] & vb[:, 1:]
    both = np.zeros((n, nb), bool)
    both[:, 1:-1] = off[:, 1:] & off[:, :-1]  # pair slopes k and k-1 both off (kink in block k)
    both &= bidx < last[:, None]
    anyb = both.any(1)
    k_off = np.where(anyb, nb - 1 - np.argmax(both[:, ::-1], axis=1), first - 2)
    start = np.minimum(k_off + 2, last - (MIN_CONTACT_BLOCKS - 1))
    inc_c = vb & (bidx >= start[:, None]) & (bidx <= last[:, None])
    contact_start_block = start

    # 3. free baseline: a local line just before the first deflection rise (see _free_region)
    n0 = np.maximum(3, (contact_start_block - first) // 2)
    travel = np.abs(np.take_along_axis(L.xm, last[:, None], 1)[:, 0]
                    - np.take_along_axis(L.xm, first[:, None], 1)[:, 0]) / np.maximum(last - first, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        window = np.ceil(baseline_window / travel)
    window = np.clip(np.nan_to_num(window, nan=nb, posinf=nb), MIN_BASELINE_BLOCKS, nb).astype(np.int64)
    inc_loc, end_loc, misfit = _free_region(L, vb, sig2, inv_c, first, contact_start_block, window, threshold,
                                            region_threshold, baseline_margin)
    inc_b, free_end = _grown_region(L, vb, sig2_32, inv_c, first, last, contact_start_block, threshold,
                                    region_threshold, baseline_margin)
    # curved: the local lines misfit, or the line over the free part stopped far (more than a local window)
    # before the local lines saw the rise
    curved = (misfit > CURVED_BASELINE) | (free_end < end_loc - window)
    inc_b = np.where(curved[:, None], inc_loc, inc_b)
    free_end = np.where(curved, end_loc, free_end)

    line_b = L.fit(inc_b, final=True)
    line_c = L.fit(inc_c, final=True)
    bad_contact = ~((line_c["s"] >= lo) & (line_c["s"] <= hi)) | ~enough
    nfree = inc_b.sum(1)
    bad_free = nfree < MIN_FREE_BLOCKS
    # a "baseline" as steep as the contact line: the ramp starts in contact
    steep = np.abs(line_b["s"]) > 0.5 * np.abs(np.where(np.isfinite(line_c["s"]), line_c["s"], -1.0))
    starts = steep & (free_end - first <= n0 + 1) & ~bad_contact
    flags[starts] |= STARTS_IN_CONTACT
    flags[(bad_free | (steep & ~bad_contact)) & ~starts] |= NO_BASELINE
    flags[bad_contact] |= NO_CONTACT

    # 4. intersection and its uncertainty (covariances of the two fits propagated)
    sb, sc = line_b["s"], line_c["s"]
    with np.errstate(invalid="ignore", divide="ignore"):
        # a_b + sb (X - xb) = a_c + sc (X - xc)   (row-referenced coordinates)
        xs = (line_c["a"] - line_b["a"] + sb * line_b["x0"] - sc * line_c["x0"]) / (sb - sc)
        vbv, vcv = line_b["var"], line_c["var"]
        var = (vbv / line_b["n"] + vcv / line_c["n"] + (xs - line_b["x0"]) ** 2 * vbv / line_b["sxx"]
               + (xs - line_c["x0"]) ** 2 * vcv / line_c["sxx"]) / (sb - sc) ** 2
    flags[~np.isfinite(xs) & (flags == 0)] |= NO_CONTACT
    bslope, boff = L.to_absolute(line_b)
    cslope, coff = L.to_absolute(line_c)
    return {
        "position": xs + L.xref,
        "uncertainty": np.sqrt(var),
        "baseline_slope": bslope,
        "baseline_offset": boff,
        "contact_slope": cslope,
        "contact_offset": coff,
        "free_end": np.minimum(free_end * block, x.shape[1]),
        "contact_start": np.minimum(contact_start_block * block, x.shape[1]),
        "noise": sigma,
        "flags": flags,
    }
