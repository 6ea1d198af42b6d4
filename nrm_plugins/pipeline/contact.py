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
2. Hard contact: the last three blocks give a first constant-compliance line; its slope must lie within
   ``contact_slope_range`` (in m of deflection per m of piezo, -1 for a perfect InvOLS) or the ramp is
   flagged "no hard contact".  Then, three times: residuals of every block from the current line; the
   contact region is the longest run of blocks at the end of the ramp after the last *pair* of blocks
   that both lie more than ``threshold`` block-noise standard deviations off the line, less one block
   of margin; isolated outlying blocks inside it are left out of the fit.
3. Free baseline: the first ``max(3, 15 %)`` blocks give a first line; four times: the free region ends
   at the first pair of blocks both more than ``threshold`` standard deviations above or below the
   line (the *first deflection rise*), less a margin of ``baseline_margin`` of its length (at least one
   block) so that the gradual start of a soft layer does not tilt the line; outliers are left out.
4. Intersection of the two lines, with its 1-sigma uncertainty from the two fits' covariances.

Hard-contact points are thus selected by their position along the ramp (after the kink), never by their
depth.  Flags: see :data:`FLAGS`.
"""
from __future__ import annotations

import numpy as np

#: bit flags of a ramp (the pipeline turns them into the ``flag`` text)
NO_BASELINE = 1
NO_CONTACT = 2
STARTS_IN_CONTACT = 4
FLAGS = {NO_BASELINE: "no free baseline", NO_CONTACT: "no hard contact", STARTS_IN_CONTACT: "starts in contact"}

MIN_FREE_BLOCKS = 4
MIN_CONTACT_BLOCKS = 3


def block_sums(x, y, weight=None, block: int = 8) -> dict:
    """Per-block count, means and within-block centred sums of (x, y).

    :param x, y: (ramps, samples) float arrays, finite wherever ``weight`` > 0 (and everywhere when
        ``weight`` is None).
    :param weight: optional (ramps, samples) 0/1 array of usable samples.
    :returns: dict of (ramps, blocks) float64 arrays ``c, xm, ym, sxx, sxy, syy``.
    """
    n, m = x.shape
    nb = -(-m // block)
    pad = nb * block - m
    if pad:
        x = np.pad(x, ((0, 0), (0, pad)), mode="edge")
        y = np.pad(y, ((0, 0), (0, pad)), mode="edge")
        w = np.ones((n, m), np.float32) if weight is None else np.asarray(weight, np.float32)
        weight = np.pad(w, ((0, 0), (0, pad)))
    xr = x.reshape(n, nb, block)
    yr = y.reshape(n, nb, block)
    # centre each block on its first sample: float32 sums of squares stay exact enough
    xc = xr - xr[:, :, :1]
    yc = yr - yr[:, :, :1]
    if weight is None:
        c = np.full((n, nb), float(block))
        sx = np.einsum("ijk->ij", xc, dtype=np.float64)
        sy = np.einsum("ijk->ij", yc, dtype=np.float64)
        sxx = np.einsum("ijk,ijk->ij", xc, xc, dtype=np.float64)
        sxy = np.einsum("ijk,ijk->ij", xc, yc, dtype=np.float64)
        syy = np.einsum("ijk,ijk->ij", yc, yc, dtype=np.float64)
    else:
        wr = np.asarray(weight, np.float32).reshape(n, nb, block)
        c = np.einsum("ijk->ij", wr, dtype=np.float64)
        wx = wr * xc
        wy = wr * yc
        sx = np.einsum("ijk->ij", wx, dtype=np.float64)
        sy = np.einsum("ijk->ij", wy, dtype=np.float64)
        sxx = np.einsum("ijk,ijk->ij", wx, xc, dtype=np.float64)
        sxy = np.einsum("ijk,ijk->ij", wx, yc, dtype=np.float64)
        syy = np.einsum("ijk,ijk->ij", wy, yc, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = sx / c
        my = sy / c
        out = {
            "c": c,
            "xm": xr[:, :, 0].astype(np.float64) + mx,
            "ym": yr[:, :, 0].astype(np.float64) + my,
            "sxx": sxx - sx * mx,
            "sxy": sxy - sx * my,
            "syy": syy - sy * my,
        }
    return out


def _fit(bs: dict, include) -> dict:
    """Least-squares line ``y = a + s (x - x0)`` over the samples of the included blocks (exact pooling).

    ``include``: (ramps, blocks) 0/1.  Returns slope ``s``, mean point ``x0, a``, sample count ``n``,
    pooled ``sxx`` and the residual variance ``var`` (NaN where fewer than 3 samples).
    """
    w = include * bs["c"]
    n = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x0 = (w * bs["xm"]).sum(1) / n
        y0 = (w * bs["ym"]).sum(1) / n
        dx = bs["xm"] - x0[:, None]
        dy = bs["ym"] - y0[:, None]
        sxx = (include * bs["sxx"]).sum(1) + (w * dx * dx).sum(1)
        sxy = (include * bs["sxy"]).sum(1) + (w * dx * dy).sum(1)
        syy = (include * bs["syy"]).sum(1) + (w * dy * dy).sum(1)
        s = sxy / sxx
        var = np.maximum(syy - s * sxy, 0.0) / (n - 2)
    return {"s": s, "x0": x0, "a": y0, "n": n, "sxx": sxx, "var": var}


def _resid(bs, line, sigma):
    """Residuals of the block means from ``line`` and their standard deviation (block-mean noise plus
    the line's own prediction uncertainty, which grows with the distance from the fitted blocks)."""
    dx = bs["xm"] - line["x0"][:, None]
    r = bs["ym"] - (line["a"][:, None] + line["s"][:, None] * dx)
    v = (sigma ** 2)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(sigma[:, None] ** 2 / np.maximum(bs["c"], 1) + v / line["n"][:, None]
                     + dx * dx * v / line["sxx"][:, None])
    return r, sd


def _median_rows(v, ok):
    """Row medians of ``v`` over entries where ``ok`` (NaN where none)."""
    vv = np.where(ok, v, np.inf)
    srt = np.sort(vv, axis=1)
    k = ok.sum(1)
    idx = np.maximum(k - 1, 0) // 2
    med = np.take_along_axis(srt, idx[:, None], 1)[:, 0]
    idx2 = np.maximum(k, 1) // 2
    med2 = np.take_along_axis(srt, np.minimum(idx2, srt.shape[1] - 1)[:, None], 1)[:, 0]
    med = np.where(k % 2 == 0, 0.5 * (med + med2), med)
    return np.where(k > 0, med, np.nan)


def two_line(x, y, weight=None, *, block: int = 8, threshold: float = 4.0, region_threshold: float = 3.0,
             baseline_margin: float = 0.1,
             contact_slope_range=(-2.0, -0.5), noise_floor: float = 1e-4) -> dict:
    """Two-line contact point of a batch of ramps (see the module docstring).

    :param x: (ramps, samples) piezo position d_s in nm, each row ordered from the farthest sample to the
        deepest (an approach as recorded; the pipeline reverses retract ramps), referenced to any
        per-row constant.
    :param y: (ramps, samples) deflection in nm (positive = tip pushed away), same order.
    :param weight: optional 0/1 array of usable samples (x and y must then be finite everywhere; put any
        finite value where the weight is 0).
    :param threshold: outlier / regime threshold in standard deviations of a block mean.
    :param baseline_margin: fraction of the free region left out at its end.
    :param contact_slope_range: accepted slope of the constant-compliance line (deflection per piezo).
    :param noise_floor: smallest deflection noise assumed (nm), for noise-free data.
    :returns: dict of (ramps,) arrays: ``position`` (nm, in the coordinates of ``x``), ``uncertainty``
        (nm, 1 sigma), ``baseline_slope``, ``baseline_offset`` (deflection = offset + slope * x),
        ``contact_slope``, ``contact_offset``, ``free_end`` and ``contact_start`` (sample indices: the
        first deflection rise, the first sample of the fitted contact region), ``noise`` (nm, per
        sample), ``flags`` (int bit mask, :data:`FLAGS`).
    """
    bs = block_sums(x, y, weight, block)
    n, nb = bs["c"].shape
    rows = np.arange(n)
    cnt = bs["c"]
    vb = cnt >= max(3, block // 2)  # usable blocks
    bidx = np.arange(nb)[None, :]
    flags = np.zeros(n, np.int64)

    # 1. noise per sample from within-block residuals
    with np.errstate(invalid="ignore", divide="ignore"):
        s_in = bs["sxy"] / bs["sxx"]
        v_in = np.maximum(bs["syy"] - s_in * bs["sxy"], 0.0) / (cnt - 2)
    sig2 = _median_rows(v_in, vb & np.isfinite(v_in))
    yr = np.nanmax(np.where(vb, bs["ym"], np.nan), 1) - np.nanmin(np.where(vb, bs["ym"], np.nan), 1)
    floor = noise_floor + 1e-6 * np.nan_to_num(yr)
    sigma = np.sqrt(np.maximum(np.nan_to_num(sig2), floor ** 2))

    nvalid = vb.sum(1)
    last = nb - 1 - np.argmax(vb[:, ::-1], axis=1)
    first = np.argmax(vb, axis=1)
    enough = nvalid >= MIN_FREE_BLOCKS + MIN_CONTACT_BLOCKS

    # 2. constant-compliance line from the end
    inc_c = (vb & (bidx >= (last - 2)[:, None])).astype(np.float64)
    line_c = _fit(bs, inc_c)
    lo, hi = contact_slope_range
    bad_contact = ~((line_c["s"] >= lo) & (line_c["s"] <= hi)) | ~enough
    for _ in range(8):
        r, sd = _resid(bs, line_c, sigma)
        out = vb & (np.abs(r) > threshold * sd)
        dev = vb & (np.abs(r) > region_threshold * sd)
        pair = dev & np.concatenate([np.zeros((n, 1), bool), dev[:, :-1]], axis=1)  # this and previous
        pair &= bidx <= last[:, None]
        anyp = pair.any(1)
        lastpair = np.where(anyp, nb - 1 - np.argmax(pair[:, ::-1], axis=1), first - 2)
        start = lastpair + 2  # one block of margin after the kink
        # grow by at most the current length per iteration (a short line extrapolates poorly)
        cur = np.where(inc_c.any(1), np.argmax(inc_c > 0, axis=1), last)
        start = np.maximum(start, cur - np.maximum(last + 1 - cur, MIN_CONTACT_BLOCKS))
        region = vb & (bidx >= start[:, None]) & (bidx <= last[:, None])
        inc_new = region & ~out
        few = inc_new.sum(1) < MIN_CONTACT_BLOCKS
        inc_c = np.where(few[:, None], inc_c, inc_new.astype(np.float64))
        line_c = _fit(bs, inc_c)
    contact_start_block = np.where(inc_c.any(1), np.argmax(inc_c > 0, axis=1), last)
    bad_contact |= ~((line_c["s"] >= lo) & (line_c["s"] <= hi))

    # 3. free baseline from the start
    n0 = np.maximum(3, (0.15 * nvalid).astype(np.int64))
    inc_b = (vb & (bidx >= first[:, None]) & (bidx < (first + n0)[:, None])).astype(np.float64)
    line_b = _fit(bs, inc_b)
    free_end = np.full(n, nb)
    for _ in range(8):
        r, sd = _resid(bs, line_b, sigma)
        out = vb & (np.abs(r) > threshold * sd)
        dev = vb & (np.abs(r) > region_threshold * sd)
        pair = dev & np.concatenate([dev[:, 1:], np.zeros((n, 1), bool)], axis=1)  # this and next
        pair &= bidx >= first[:, None]
        anyp = pair.any(1)
        free_end = np.where(anyp, np.argmax(pair, axis=1), last + 1)  # first rise (block index)
        free_end = np.minimum(free_end, contact_start_block)
        cur = nb - np.argmax(inc_b[:, ::-1] > 0, axis=1)  # end of the current region
        free_end = np.minimum(free_end, cur + np.maximum(cur - first, 3) + 1)
        length = free_end - first
        margin = np.maximum(1, np.ceil(baseline_margin * length)).astype(np.int64)
        region = vb & (bidx >= first[:, None]) & (bidx < (free_end - margin)[:, None])
        inc_new = region & ~out
        few = inc_new.sum(1) < 2
        inc_b = np.where(few[:, None], inc_b, inc_new.astype(np.float64))
        line_b = _fit(bs, inc_b)
    nfree = inc_b.sum(1)
    bad_free = nfree < MIN_FREE_BLOCKS
    # a "baseline" as steep as the contact line: the ramp starts in contact
    steep = np.abs(line_b["s"]) > 0.5 * np.abs(np.where(np.isfinite(line_c["s"]), line_c["s"], -1.0))
    starts = (bad_free | steep) & (free_end - first <= n0 + 1) & steep
    flags[starts] |= STARTS_IN_CONTACT
    flags[(bad_free | steep) & ~starts] |= NO_BASELINE
    flags[bad_contact] |= NO_CONTACT

    # 4. intersection and its uncertainty
    sb, sc = line_b["s"], line_c["s"]
    with np.errstate(invalid="ignore", divide="ignore"):
        # a_b + sb (X - xb) = a_c + sc (X - xc)
        xs = (line_c["a"] - line_b["a"] + sb * line_b["x0"] - sc * line_c["x0"]) / (sb - sc)
        vb_ = np.maximum(line_b["var"], sigma ** 2 * 0.0)
        vc_ = line_c["var"]
        var = (vb_ / line_b["n"] + vc_ / line_c["n"] + (xs - line_b["x0"]) ** 2 * vb_ / line_b["sxx"]
               + (xs - line_c["x0"]) ** 2 * vc_ / line_c["sxx"]) / (sb - sc) ** 2
    bad_geometry = ~np.isfinite(xs) | (flags != 0)
    flags[~np.isfinite(xs) & (flags == 0)] |= NO_CONTACT
    base_offset = line_b["a"] - sb * line_b["x0"]
    cont_offset = line_c["a"] - sc * line_c["x0"]
    del bad_geometry, rows
    return {
        "position": xs,
        "uncertainty": np.sqrt(var),
        "baseline_slope": sb,
        "baseline_offset": base_offset,
        "contact_slope": sc,
        "contact_offset": cont_offset,
        "free_end": np.minimum(free_end * block, x.shape[1]),
        "contact_start": np.minimum(contact_start_block * block, x.shape[1]),
        "noise": sigma,
        "flags": flags,
    }
