"""Sub-layer boundaries inside the SEI from the depth derivative of a window's mean profile.

A layered SEI (e.g. a stiff top skin over a softer, compact inner layer) shows up in the mean storage
modulus profile E′(z_p) as places where ln E′ changes faster or slower than the layer's overall trend.
The criterion (all lengths in m, ln = natural logarithm):

1. **Where the profile is informative.** Depths with ``n ≥ 2`` ramps and a lower 95 % CI bound > 0 (the
   mean modulus is significantly positive).  There ``L(z) = ln E′_mean(z)`` and its standard error is
   taken from the stored CI, ``σ_L(z) = (ln ci_high − ln ci_low) / (2 · 1.96)``.
2. **Log-derivative.** ``D(z) = dL/dz_p`` by a local least-squares line over a window of width ``w``
   (default 2 nm; ``m = 2r+1`` grid points): ``D_i = Σ_k k L_{i+k} / (h Σ_k k²)``, computed only where all
   ``m`` points are informative.  Its noise, treating the points as independent (conservative: the
   errors of a mean profile are positively correlated along z, which makes a slope *less* noisy),
   ``σ_D = rms(σ_L over the window) / (h √(Σ_k k²))``.
3. **Trend.** ``D_ref`` = median of D over the informative depths: an exponential profile has constant D,
   so only departures from it mark a boundary.
4. **Boundary.** A local extremum of ``D − D_ref`` (a peak or a trough, at least ``w`` apart) whose size
   exceeds both ``k σ_D`` (default k = 3: not noise) and ``ln(contrast) / w`` (default contrast 1.5: the
   modulus changes ≥ 1.5 times more, over ``w``, than the trend says: not a gentle curvature).
   Its position is resolved to ± w/2.  ``D − D_ref > 0``: the modulus rises with z_p, towards the
   electrolyte — the bottom edge of a stiffer layer above (a top skin); ``< 0``: the top edge of a stiff
   layer or the SEI's outer surface.

The result is one row per boundary: window, z (m), D and D_ref (1/m), the threshold used, and the
modulus ratio ``E′_mean(z + w/2) / E′_mean(z − w/2)`` across it.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from .access import window_stat, windows

Z95 = 1.959963984540054

#: defaults of :func:`boundaries`, documented in docs/report.md
DEFAULTS = {"fit_width": 2e-9, "k_sigma": 3.0, "contrast": 1.5}


def log_derivative(z, mean, ci_low, ci_high, n, fit_width=DEFAULTS["fit_width"]):
    """``(D, sigma_D)`` of ln(mean) along z (1/m), NaN where the window of width ``fit_width`` is not informative.

    ``z`` must be equally spaced.  See the module docstring, steps 1–2.
    """
    z = np.asarray(z, float)
    mean, lo, hi, n = (np.asarray(a, float) for a in (mean, ci_low, ci_high, n))
    size = z.size
    D = np.full(size, np.nan)
    sD = np.full(size, np.nan)
    if size < 5:
        return D, sD
    h = float(np.median(np.diff(z)))
    r = max(2, int(round(fit_width / h / 2)))
    if 2 * r + 1 > size:
        return D, sD
    with np.errstate(invalid="ignore", divide="ignore"):
        good = (n >= 2) & (lo > 0) & (mean > 0) & np.isfinite(hi)
        L = np.where(good, np.log(np.where(good, mean, 1.0)), np.nan)
        sL = np.where(good, (np.log(np.where(good, hi, 1.0)) - np.log(np.where(good, lo, 1.0))) / (2 * Z95), np.nan)
    k = np.arange(-r, r + 1, dtype=float)
    sum_k2 = float(np.sum(k * k))
    # sliding windows (size - 2r, 2r + 1) without copies
    Lw = np.lib.stride_tricks.sliding_window_view(L, 2 * r + 1)
    sw = np.lib.stride_tricks.sliding_window_view(sL, 2 * r + 1)
    full = np.isfinite(Lw).all(axis=1)
    with np.errstate(invalid="ignore"):
        slope = (Lw @ k) / (h * sum_k2)
        noise = np.sqrt(np.mean(sw * sw, axis=1)) / (h * np.sqrt(sum_k2))
    D[r:size - r] = np.where(full, slope, np.nan)
    sD[r:size - r] = np.where(full, noise, np.nan)
    return D, sD


def find_boundaries(z, mean, ci_low, ci_high, n, fit_width=DEFAULTS["fit_width"], k_sigma=DEFAULTS["k_sigma"],
                    contrast=DEFAULTS["contrast"]) -> list[dict]:
    """Sub-layer boundaries of one mean profile (module docstring, steps 1–4); z in m, moduli in Pa."""
    z = np.asarray(z, float)
    mean = np.asarray(mean, float)
    D, sD = log_derivative(z, mean, ci_low, ci_high, n, fit_width)
    valid = np.isfinite(D)
    if valid.sum() < 3:
        return []
    D_ref = float(np.median(D[valid]))
    excess = np.where(valid, D - D_ref, 0.0)
    threshold = np.where(valid, np.maximum(k_sigma * sD, np.log(contrast) / fit_width), np.inf)
    h = float(np.median(np.diff(z)))
    distance = max(1, int(round(fit_width / h)))
    rows = []
    for sign in (1.0, -1.0):
        signal = sign * excess
        peaks, _ = find_peaks(signal, distance=distance)
        for i in peaks:
            if not valid[i] or signal[i] <= threshold[i]:
                continue
            rows.append({
                "z": float(z[i]),
                "log_derivative": float(D[i]),
                "trend": D_ref,
                "excess": float(excess[i]),
                "threshold": float(threshold[i]),
                "sigma": float(sD[i]),
                "ratio": _ratio(z, mean, z[i], fit_width),
                "change": "modulus rises with z_p" if sign > 0 else "modulus falls with z_p",
                "resolution": fit_width / 2,
            })
    rows.sort(key=lambda r: r["z"])
    return rows


def _ratio(z, mean, at, width):
    above = np.interp(at + width / 2, z, mean, left=np.nan, right=np.nan)
    below = np.interp(at - width / 2, z, mean, left=np.nan, right=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(above / below)


def boundaries(results, quantity: str = "E_storage", **options) -> list[dict]:
    """Sub-layer boundaries of every window's mean ``quantity`` profile; one dict per boundary with ``window``."""
    rows = []
    z = np.asarray(results["z"].values, float)
    for w in windows(results):
        stats = [window_stat(results, quantity, s, w.index) for s in ("mean", "ci_low", "ci_high", "n")]
        if any(s is None for s in stats):
            continue
        for row in find_boundaries(z, *stats, **options):
            rows.append({"window": w.label, "quantity": quantity, **row})
    return rows
