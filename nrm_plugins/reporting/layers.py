"""Sub-layer boundaries inside the SEI from the depth derivative of a window's mean profile.

A layered SEI (e.g. a stiff top skin over a softer, compact inner layer) shows up in the mean storage
modulus profile E′(z_p) as places where ln E′ changes faster or slower than the layer's overall trend.
The criterion (all lengths in m, ln = natural logarithm):

1. **Where the profile is informative.** Depths with ``n ≥ 2`` ramps and a lower 95 % CI bound > 0 (the
   mean modulus is significantly positive).  There ``L(z) = ln E′_mean(z)`` and its standard error is
   taken from the stored CI, ``σ_L(z) = (ln ci_high − ln ci_low) / (2 · 1.96)``.
2. **Log-derivative.** ``D(z) = dL/dz_p`` by a local least-squares line over a window of width ``w``
   (default 2 nm; ``m = 2r+1`` grid points): ``D_i = Σ_k c_k L_{i+k}``, ``c_k = k / (h Σ_k k²)``, computed
   only where all ``m`` points are informative.  Its standard error σ_D:

   a. with the window's per-ramp profiles E_r (results that keep them): the delta method,
      ``d_r,i = Σ_k c_k (E_r − E_mean)_{i+k} / E_mean,{i+k}``, ``σ_D = sd_r(d_r,i) / √n`` — exact to first
      order, and it includes the correlation along z that the derivative method puts into every profile;
   b. from the stored CI alone: ``σ_D = F · rms(σ_L over the window) · √(Σ_k c_k²)`` — the independent-points
      value times ``F`` = :data:`CORRELATION_FACTOR` = 2.5, because errors correlated over about the
      derivative window make a slope over that window noisier (on simulated realistic data (a)/(b without F)
      has median 1.9 and 90th percentile 2.3–3.4).
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

import warnings

import numpy as np
from scipy.signal import find_peaks

from .access import accepted, membership, window_stat, windows

Z95 = 1.959963984540054
#: σ_D from the CI alone treats the depths as independent; the derivative method correlates a profile's errors
#: over about its window, which makes the slope noisier by this factor (measured, docs/report.md)
CORRELATION_FACTOR = 2.5

#: defaults of :func:`boundaries`, documented in docs/report.md
DEFAULTS = {"fit_width": 2e-9, "k_sigma": 3.0, "contrast": 1.5}


def log_derivative(z, mean, ci_low, ci_high, n, fit_width=DEFAULTS["fit_width"], profiles=None):
    """``(D, sigma_D, source)`` of ln(mean) along z (1/m), NaN where the fit window is not informative.

    ``z`` must be equally spaced.  ``profiles``: the window's per-ramp profiles (ramps, z) the mean was taken
    over; with them σ_D is the delta-method standard error (step 2b of the module docstring), else the
    CI-based estimate (2a).  ``source`` says which.
    """
    z = np.asarray(z, float)
    mean, lo, hi, n = (np.asarray(a, float) for a in (mean, ci_low, ci_high, n))
    size = z.size
    D = np.full(size, np.nan)
    sD = np.full(size, np.nan)
    if size < 5:
        return D, sD, ""
    h = float(np.median(np.diff(z)))
    r = max(2, int(round(fit_width / h / 2)))
    if 2 * r + 1 > size:
        return D, sD, ""
    with np.errstate(invalid="ignore", divide="ignore"):
        good = (n >= 2) & (lo > 0) & (mean > 0) & np.isfinite(hi)
        L = np.where(good, np.log(np.where(good, mean, 1.0)), np.nan)
        sL = np.where(good, (np.log(np.where(good, hi, 1.0)) - np.log(np.where(good, lo, 1.0))) / (2 * Z95), np.nan)
    k = np.arange(-r, r + 1, dtype=float)
    c = k / (h * float(np.sum(k * k)))  # D_i = sum_k c_k L_{i+k}
    inner = slice(r, size - r)
    Lw = np.lib.stride_tricks.sliding_window_view(L, 2 * r + 1)
    full = np.isfinite(Lw).all(axis=1)
    with np.errstate(invalid="ignore"):
        D[inner] = np.where(full, Lw @ c, np.nan)
    source = "CI"
    if profiles is not None and np.asarray(profiles).shape[0] >= 3:
        # delta method: dD = sum_k c_k dM_{i+k} / M_{i+k}, dM = mean over ramps of (E_r - M): the spread over
        # ramps of d_r = sum_k c_k (E_r - M)_{i+k} / M_{i+k} gives SE(D) with the along-z correlation included
        E = np.asarray(profiles, float)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = (E - mean) / np.where(good, mean, np.nan)
        d = np.lib.stride_tricks.sliding_window_view(rel, 2 * r + 1, axis=1) @ c
        m = np.isfinite(d).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            se = np.nanstd(d, axis=0, ddof=1) / np.sqrt(m)
        sD[inner] = np.where(full & (m >= 3), se, np.nan)
        source = "ramps"
    else:
        sw = np.lib.stride_tricks.sliding_window_view(sL, 2 * r + 1)
        with np.errstate(invalid="ignore"):
            independent = np.sqrt(np.mean(sw * sw, axis=1)) * np.sqrt(np.sum(c * c))
        sD[inner] = np.where(full, CORRELATION_FACTOR * independent, np.nan)
    return D, sD, source


def find_boundaries(z, mean, ci_low, ci_high, n, fit_width=DEFAULTS["fit_width"], k_sigma=DEFAULTS["k_sigma"],
                    contrast=DEFAULTS["contrast"], profiles=None) -> list[dict]:
    """Sub-layer boundaries of one mean profile (module docstring, steps 1–4); z in m, moduli in Pa.

    ``profiles``: the per-ramp profiles (ramps, z) behind the mean, for the delta-method σ_D (optional).
    """
    z = np.asarray(z, float)
    mean = np.asarray(mean, float)
    D, sD, source = log_derivative(z, mean, ci_low, ci_high, n, fit_width, profiles)
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
                "sigma_from": source,
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
    """Sub-layer boundaries of every window's mean ``quantity`` profile; one dict per boundary with ``window``.

    When the results keep the per-ramp profiles of ``quantity``, σ_D comes from them (delta method).
    """
    rows = []
    z = np.asarray(results["z"].values, float)
    member = membership(results) & accepted(results)[None, :]
    kept = quantity in results and results[quantity].dims == ("ramp", "z")
    for w in windows(results):
        stats = [window_stat(results, quantity, s, w.index) for s in ("mean", "ci_low", "ci_high", "n")]
        if any(s is None for s in stats):
            continue
        ramps = np.flatnonzero(member[w.index])
        profiles = np.asarray(results[quantity].isel(ramp=ramps).values, float) if kept and ramps.size >= 3 else None
        for row in find_boundaries(z, *stats, profiles=profiles, **options):
            rows.append({"window": w.label, "quantity": quantity, **row})
    return rows
