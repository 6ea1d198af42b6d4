"""Window statistics (DESIGN.md §1.7, §3): ramps grouped by potential (or any ramp coordinate), mean
profile ± 95 % confidence interval of the mean, SEI thickness per window, |G*| per depth interval, and
a kernel density of log10 |G*| against depth.

Grouping (:func:`groups`): with ``windows`` ([lo, hi) intervals, in the order given; they may overlap),
a ramp belongs to every window that holds its value of the ``group_by`` coordinate (default
``potential``); a text coordinate (``source``, ``direction``) without windows gives one group per value.
Potentials missing from the data come from the ``[cv]`` section (:func:`cv_potentials`).

Confidence interval (``ci_method``):

``t`` (default)
    mean ± t_{0.975, n−1} s / √n over the ramps with data at that depth (streaming sums, so any number
    of ramps fits in memory).
``bootstrap``
    expanded percentile interval of the mean over ``bootstrap_samples`` resamples of the ramps (with
    replacement; :func:`bootstrap_interval`), vectorized: the resampling weights are a multinomial
    (samples × ramps) matrix, the resampled means two matrix products.  Needs the per-ramp profiles in
    memory.

A mean is NaN exactly where no ramp contributes (n = 0), a CI where n < 2.

Kernel density (``G_abs_kde``): for each window and depth, a Gaussian kernel density of log10 |G*|
(Pa) over the ramps, bandwidth by Scott's rule ``1.06 σ n^(−1/5)`` (at least :data:`KDE_MIN_BANDWIDTH`
decades), evaluated on the grid ``g``.  The values are accumulated in a fine histogram
(:data:`KDE_BIN` decades) while ramps stream through, and the Gaussian is applied per row in Fourier
space at the end (the binned-KDE approximation, error < 1 % of the peak for bandwidths above 2 bins).
The grid g spans the four decades below the 99.5 % quantile of all values, plus half a decade on each
side (and four bandwidths); values outside it (the near-zero moduli above the SEI, at the noise level)
are left out, so a density row integrates to the fraction of that depth's values inside the range.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from scipy import special

from ..errors import CalibrationError

KDE_BIN = 0.01  # decades
KDE_RANGE = (0.0, 12.0)  # log10 Pa
KDE_MIN_BANDWIDTH = 0.02  # decades
KDE_STEP = 0.02  # decades, the output grid g
KDE_TAIL = 0.005  # the g range ends at the 99.5 % quantile of all values ...
KDE_DECADES = 4.0  # ... and spans this many decades below it ...
KDE_MARGIN = 50  # ... plus this many bins (0.5 decade) on each side

#: quantities with window statistics: (name, source, scale) — G and viscosity are E scaled
WINDOW_QUANTITIES = ("E_storage", "E_loss", "G_storage", "G_loss", "G_abs", "viscosity")


# ---------------------------------------------------------------------------------------------- grouping
def cv_potentials(time, cal, base_dir=None):
    """Electrode potential (V) of each ramp from the ``[cv]`` section (None when there is none).

    ``[cv] file``: CSV with columns ``time_s`` and ``potential_V`` (times shifted by ``start_time``),
    interpolated linearly, NaN outside its time span.  Otherwise the sweep description (start potential,
    scan rate, vertices, start time) through :func:`nrm_plugins.simulate.cv.cv_potential`.
    """
    cv = cal.values.get("cv", {})
    if not cv:
        return None
    time = np.asarray(time, np.float64)
    start_time = float(cal.get("cv", "start_time"))
    path = cal.get("cv", "file")
    if path:
        path = Path(path)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        t, u = read_cv_file(path)
        return np.interp(time, t + start_time, u, left=np.nan, right=np.nan)
    from ..simulate.cv import cv_potential

    try:
        return cv_potential(time, cal.require("cv", "start_potential"), cal.require("cv", "scan_rate"),
                            cal.get("cv", "vertices"), start_time)
    except ValueError as exc:
        raise CalibrationError(str(exc)) from None


def read_cv_file(path):
    """(time_s, potential_V) arrays from a potentiostat CSV export (comma, semicolon or tab separated)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CalibrationError(f"[cv] file {path}: cannot read ({exc.strerror})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise CalibrationError(f"[cv] file {path}: empty")
    dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t") if len(lines[0]) else csv.excel
    rows = list(csv.reader(lines, dialect))
    header = [h.strip() for h in rows[0]]
    if "time_s" not in header or "potential_V" not in header:
        raise CalibrationError(f"[cv] file {path}: needs the columns time_s and potential_V, found {header}")
    it, iu = header.index("time_s"), header.index("potential_V")
    try:
        t = np.array([float(r[it]) for r in rows[1:]])
        u = np.array([float(r[iu]) for r in rows[1:]])
    except (ValueError, IndexError) as exc:
        raise CalibrationError(f"[cv] file {path}: not numbers ({exc})") from None
    if len(t) < 2 or np.any(np.diff(t) <= 0):
        raise CalibrationError(f"[cv] file {path}: time_s must increase, with at least 2 rows")
    return t, u


def _fmt(v: float) -> str:
    return repr(float(v)) if abs(v) >= 1e-3 or v == 0 else f"{v:g}"


def groups(coords: dict, group_by: str, windows, units: str = "", warn=None):
    """Membership of every ramp in every group.

    Windows apply to a numeric coordinate; a text coordinate (``source``, ``direction``) gives one group
    per value (windows, e.g. the potential windows of the calibration, are then ignored with a warning
    appended to ``warn``).

    :param coords: {name: (ramps,) array} of ramp coordinates (potential already filled from the CV)
    :returns: dict with ``member`` (groups, ramps) bool, ``labels``, ``low``, ``high`` (NaN for text
        groups), ``key``, or None when there is nothing to group by.
    """
    if group_by not in coords:
        raise CalibrationError(f"[processing] group_by = '{group_by}': no such ramp coordinate; "
                               f"known: {sorted(coords)}")
    values = np.asarray(coords[group_by])
    text = values.dtype.kind in "OUS"
    if windows and text:
        if warn is None:
            raise CalibrationError(f"[processing] group_by = '{group_by}' is text: windows do not apply "
                                   "(leave windows out to get one group per value)")
        warn.append(f"group_by = '{group_by}' is text: the windows are ignored, one group per value")
        windows = None
    if windows:
        v = values.astype(np.float64)
        low = np.array([w[0] for w in windows], np.float64)
        high = np.array([w[1] for w in windows], np.float64)
        member = (v[None, :] >= low[:, None]) & (v[None, :] < high[:, None])
        unit = "V" if group_by == "potential" else units
        labels = [f"{_fmt(lo)}-{_fmt(hi)}{unit}" for lo, hi in zip(low, high)]
        if v.size and not member.any():
            # no ramp in any window: a wrong window list (or unit), not a result with only empty windows
            fin = v[np.isfinite(v)]
            have = (f"the ramps' {group_by} spans {fin.min():.4g} to {fin.max():.4g} {unit}".rstrip() if fin.size else
                    f"no ramp has a {group_by} (give it in the data, or a [cv] section for the potential)")
            raise CalibrationError(f"no ramp falls in any window ({', '.join(labels)}): {have}")
        return {"member": member, "labels": labels, "low": low, "high": high, "key": group_by}
    if text:
        names = list(dict.fromkeys(values.astype(str).tolist()))
        member = np.stack([values.astype(str) == name for name in names]) if names else np.zeros((0, len(values)), bool)
        return {"member": member, "labels": names, "low": np.full(len(names), np.nan),
                "high": np.full(len(names), np.nan), "key": group_by}
    if group_by != "potential":
        raise CalibrationError(f"[processing] group_by = '{group_by}' is numeric: give windows "
                               "(e.g. --windows 0:100) to group it")
    return None


# ---------------------------------------------------------------------------------------------- streaming
class WindowAccumulator:
    """Streaming sums per group and depth for the t intervals and the KDE histogram."""

    def __init__(self, member, n_z: int, kde: bool = True):
        self.member = np.asarray(member, bool)
        n_g = self.member.shape[0]
        self.n_z = n_z
        shape = (n_g, n_z)
        self.n = {q: np.zeros(shape) for q in ("E_storage", "E_loss", "G_abs")}
        self.s1 = {q: np.zeros(shape) for q in self.n}
        self.s2 = {q: np.zeros(shape) for q in self.n}
        self.kde = kde
        self.n_bins = int(round((KDE_RANGE[1] - KDE_RANGE[0]) / KDE_BIN))
        if kde:
            self.hist = np.zeros(n_g * n_z * self.n_bins)
            self.log_n = np.zeros(shape)
            self.log_s1 = np.zeros(shape)
            self.log_s2 = np.zeros(shape)

    def add(self, rows: slice, ok, e_storage, e_loss, g_abs):
        """Add the accepted ramps of one chunk (``rows`` of the whole run)."""
        member = self.member[:, rows] & np.asarray(ok, bool)[None, :]
        used = np.flatnonzero(member.any(1))
        if not used.size:
            return
        h = member[used].astype(np.float32)
        for q, v in (("E_storage", e_storage), ("E_loss", e_loss), ("G_abs", g_abs)):
            v = np.asarray(v, np.float32)
            fin = np.isfinite(v)
            v0 = np.where(fin, v, np.float32(0))
            self.n[q][used] += h @ fin.astype(np.float32)
            self.s1[q][used] += h @ v0
            self.s2[q][used] += h @ (v0 * v0)
        if self.kde:
            with np.errstate(divide="ignore", invalid="ignore"):
                lg = np.log10(np.asarray(g_abs, np.float32))
            fin = np.isfinite(lg)
            l0 = np.where(fin, lg, np.float32(0))
            f32 = fin.astype(np.float32)
            self.log_n[used] += h @ f32
            self.log_s1[used] += h @ l0
            self.log_s2[used] += h @ (l0 * l0)
            b = np.clip((l0 - np.float32(KDE_RANGE[0])) * np.float32(1 / KDE_BIN), 0, self.n_bins - 1).astype(np.int32)
            flat = b + (np.arange(self.n_z, dtype=np.int32) * self.n_bins)[None, :]
            size = self.n_z * self.n_bins
            for k, gi in enumerate(used):
                sel = member[gi]
                counts = np.bincount(flat[sel][fin[sel]], minlength=size)
                self.hist[gi * size:(gi + 1) * size] += counts

    # ------------------------------------------------------------------ results
    def t_stats(self, q):
        """(mean, ci_low, ci_high, n) per group and depth for ``q`` in E_storage, E_loss, G_abs."""
        return t_interval(self.n[q], self.s1[q], self.s2[q])

    def density(self):
        """(g grid, density (groups, z, g), bandwidth (groups, z)) of log10 |G*| from the streaming
        histogram (see the module docstring)."""
        n_g = self.member.shape[0]
        hist = self.hist.reshape(n_g, self.n_z, self.n_bins)
        bw = scott_bandwidth(self.log_n, self.log_s1, self.log_s2)
        pooled = hist.sum((0, 1))
        if not pooled.any():
            g = np.arange(2.0, 9.0 + KDE_STEP / 2, KDE_STEP)
            return g, np.full((n_g, self.n_z, len(g)), np.nan, np.float32), bw
        cum = np.cumsum(pooled) / pooled.sum()
        hi_bin = int(np.searchsorted(cum, 1 - KDE_TAIL)) + 1
        lo_bin = hi_bin - int(round(KDE_DECADES / KDE_BIN))
        lo_bin, hi_bin = max(0, lo_bin - KDE_MARGIN), min(self.n_bins, hi_bin + KDE_MARGIN)
        start = KDE_RANGE[0] + lo_bin * KDE_BIN
        idx, g = kde_grid(start, hi_bin - lo_bin, float(np.max(np.where(self.log_n > 0, bw, 0))))
        out = np.empty((n_g, self.n_z, len(g)), np.float32)
        for gi in range(n_g):
            out[gi] = smooth_histogram(hist[gi][:, lo_bin:hi_bin], self.log_n[gi], bw[gi], idx)
        return g, out, bw


def scott_bandwidth(n, s1, s2):
    """Scott's rule 1.06 sd n^(-1/5) from counts and sums (at least :data:`KDE_MIN_BANDWIDTH`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = (s2 - n * mean ** 2) / np.maximum(n - 1, 1)
    sd = np.sqrt(np.maximum(np.nan_to_num(var), 0.0))
    return np.maximum(1.06 * sd * np.maximum(n, 1) ** -0.2, KDE_MIN_BANDWIDTH)


def kde_grid(start: float, n_bins: int, bandwidth: float):
    """(bin indices, g): every :data:`KDE_STEP` over the histogram's bins (of :data:`KDE_BIN` from
    ``start``) plus 4 bandwidths (at most one decade) on each side; g are bin centres (log10 Pa)."""
    ratio = max(1, int(round(KDE_STEP / KDE_BIN)))
    ext = int(math.ceil(min(4 * bandwidth, 1.0) / KDE_BIN / ratio)) * ratio  # at most one decade
    shift = int(round((start - KDE_RANGE[0]) / KDE_BIN)) % ratio  # g on one lattice whatever the start
    idx = np.arange(-ext - shift, n_bins + ext, ratio)
    return idx, np.round(start + (idx + 0.5) * KDE_BIN, 10)


def smooth_histogram(hist, n, bw, idx):
    """Gaussian KDE of each row of a histogram (bins of :data:`KDE_BIN`) at the bins ``idx``.

    The Gaussian of each row's bandwidth is applied in Fourier space with zero padding (no wrap-around).
    :returns: (rows, len(idx)) float32 densities, NaN where a row has no value (n = 0)
    """
    nz, nb = hist.shape
    pad = int(max(-idx[0], idx[-1] - nb + 1, 0)) + 1
    nfft = 1 << int(math.ceil(math.log2(nb + 2 * pad)))
    freq = np.fft.rfftfreq(nfft, d=KDE_BIN)
    has = np.asarray(n) > 0
    out = np.full((nz, len(idx)), np.nan, np.float32)
    if not has.any():
        return out
    buf = np.zeros((int(has.sum()), nfft))
    buf[:, pad:pad + nb] = hist[has]
    spec = np.fft.rfft(buf, axis=1)
    spec *= np.exp(-2 * (math.pi * freq[None, :] * np.asarray(bw)[has][:, None]) ** 2)
    smooth = np.fft.irfft(spec, n=nfft, axis=1)[:, idx + pad]
    dens = smooth / (np.asarray(n)[has][:, None] * KDE_BIN)
    out[has] = np.maximum(dens, 0)
    return out


def density_from_profiles(e_storage, e_loss, shear: float, member):
    """(g grid, density (groups, z, g), bandwidth) of log10 |G*| from per-ramp profiles in memory.

    :param e_storage, e_loss: (ramps, z) E' and E'' (NaN where no data); |G*| = shear · |E*|
    :param member: (groups, ramps) accepted members.  Temporaries stay the size of one group.
    """
    member = np.asarray(member, bool)
    n_g, n_z = member.shape[0], e_storage.shape[1]

    def log_g(rows):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(np.hypot(e_storage[rows], e_loss[rows]) * np.float32(shear))

    used = np.flatnonzero(member.any(0))
    sample = log_g(used[:: max(1, len(used) // 2000)])  # the g range from up to 2000 ramps
    fin = np.isfinite(sample)
    if not fin.any():
        g = np.arange(2.0, 9.0 + KDE_STEP / 2, KDE_STEP)
        return g, np.full((n_g, n_z, len(g)), np.nan, np.float32), np.full((n_g, n_z), KDE_MIN_BANDWIDTH)
    hi = float(np.quantile(sample[fin], 1 - KDE_TAIL))
    lo, hi = hi - KDE_DECADES - KDE_MARGIN * KDE_BIN, hi + KDE_MARGIN * KDE_BIN
    start = math.floor(lo / KDE_BIN) * KDE_BIN
    nb = int(math.ceil((hi - start) / KDE_BIN)) + 1
    hists, counts, bws = [], [], []
    zi = (np.arange(n_z, dtype=np.int64) * nb)[None, :]
    zi = zi.astype(np.int32)
    for gi in range(n_g):
        v = log_g(np.flatnonzero(member[gi]))
        f = np.isfinite(v)
        np.copyto(v, 0, where=~f)
        c = f.sum(0).astype(np.float64)
        counts.append(c)
        bws.append(scott_bandwidth(c, v.sum(0, dtype=np.float64), np.einsum("ij,ij->j", v, v, dtype=np.float64)))
        v -= np.float32(start)
        v *= np.float32(1 / KDE_BIN)
        b = np.floor(v, out=v).astype(np.int32)
        del v
        f &= (b >= 0) & (b < nb)  # outside the g range: left out of the density
        b += zi
        hists.append(np.bincount(b[f], minlength=n_z * nb).reshape(n_z, nb).astype(np.float32))
        del b, f
    bw = np.stack(bws)
    idx, g = kde_grid(start, nb, float(np.max(np.where(np.stack(counts) > 0, bw, 0))))
    out = np.empty((n_g, n_z, len(g)), np.float32)
    for gi in range(n_g):
        out[gi] = smooth_histogram(hists[gi], counts[gi], bw[gi], idx)
    return g, out, bw


def t_interval(n, s1, s2, level: float = 0.95):
    """Mean and t confidence interval of the mean from counts and sums (NaN where n = 0 / n < 2)."""
    n = np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 - n * mean * mean, 0.0) / (n - 1)
        half = special.stdtrit(np.maximum(n - 1, 1), 0.5 + level / 2) * np.sqrt(var / n)
    mean = np.where(n > 0, mean, np.nan)
    half = np.where(n > 1, half, np.nan)
    return mean, mean - half, mean + half, n.astype(np.int64)


def bootstrap_interval(values, member, samples: int = 1000, level: float = 0.95, seed: int = 0):
    """Mean and bootstrap interval per group (and per column of ``values``).

    Resampling is vectorized: the weights of ``samples`` resamples with replacement are a multinomial
    (samples × ramps) matrix and the resampled means are two matrix products.  The interval is the
    *expanded* percentile interval (T. Hesterberg, Am. Stat. 69, 371 (2015)): the quantiles
    ``α'/2, 1 − α'/2`` of the bootstrap means with ``α' = 2 Φ(−√(n/(n−1)) t_{1−α/2, n−1})``, which
    corrects the plain percentile interval's narrowness for small n (about 89 % coverage at n = 20).

    :param values: (ramps, k) float array with NaN where a ramp has no value
    :param member: (groups, ramps) bool (accepted ramps only)
    :returns: mean, ci_low, ci_high (groups, k) and n (groups, k)
    """
    values = np.asarray(values, np.float64)
    if values.ndim == 1:
        values = values[:, None]
    rng = np.random.default_rng(seed)
    n_g, k = member.shape[0], values.shape[1]
    mean = np.full((n_g, k), np.nan)
    lo = np.full((n_g, k), np.nan)
    hi = np.full((n_g, k), np.nan)
    count = np.zeros((n_g, k), np.int64)
    for gi in range(n_g):
        v = values[member[gi]]
        if not len(v):
            continue
        fin = np.isfinite(v)
        v0 = np.where(fin, v, 0.0)
        cnt = fin.sum(0)
        count[gi] = cnt
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[gi] = np.where(cnt > 0, v0.sum(0) / cnt, np.nan)
        m = len(v)
        w = rng.multinomial(m, np.full(m, 1.0 / m), size=samples).astype(np.float64)  # (samples, m)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = np.sort((w @ v0) / (w @ fin), axis=0)  # NaN (no value in a resample) sorts last
            nc = np.maximum(cnt, 2).astype(np.float64)
            tq = special.stdtrit(nc - 1, 0.5 + level / 2) * np.sqrt(nc / (nc - 1))
            alpha = 2 * special.ndtr(-tq)
        nf = np.isfinite(boot).sum(0)
        for q, out in ((alpha / 2, lo), (1 - alpha / 2, hi)):
            pos = q * np.maximum(nf - 1, 0)
            i0 = np.floor(pos).astype(np.int64)
            i1 = np.minimum(i0 + 1, np.maximum(nf - 1, 0))
            f = pos - i0
            a = np.take_along_axis(boot, i0[None, :], 0)[0]
            b = np.take_along_axis(boot, i1[None, :], 0)[0]
            out[gi] = np.where((cnt > 1) & (nf > 0), a + f * (b - a), np.nan)
    return mean, lo, hi, count


def interval_means(profile_abs, z, intervals):
    """Each ramp's mean of ``profile_abs`` (ramps, z) over each depth interval [lo, hi) (NaN where none)."""
    out = np.empty((profile_abs.shape[0], len(intervals)), np.float32)
    for k, (lo, hi) in enumerate(intervals):
        sel = (z >= lo - 1e-15) & (z < hi - 1e-15)
        block = profile_abs[:, sel]
        fin = np.isfinite(block)
        cnt = fin.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, k] = np.where(cnt > 0, np.where(fin, block, 0).sum(1) / cnt, np.nan)
    return out


def interval_labels(intervals) -> list[str]:
    """[[0, 5e-9], ...] (m) → ["0-5nm", ...]."""
    return [f"{lo * 1e9:g}-{hi * 1e9:g}nm" for lo, hi in intervals]
