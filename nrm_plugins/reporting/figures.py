"""The report's figures, one function per figure, each returning a :class:`matplotlib.figure.Figure`.

Modelled on the paper's Fig. 4 (mean profile ± 95 % CI per potential window on a log modulus axis vs the
tip–electrode distance z_p; the kernel-density map of |G*|; violins of |G*| in depth intervals) and
Fig. 3c–d (the two-line contact point on the raw deflection; z_p along the ramp).  Every function reads
only stored results (and, for the diagnostics, the selected raw ramps), never recomputes a statistic.
"""
from __future__ import annotations

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from . import access
from .access import NM, QUANTITIES
from .raw import RawRamps, tip_sample_distance
from .style import (BAND_ALPHA, FULL_WIDTH, OKABE_ITO, OUTSIDE_COLOUR, log10_axis, new_figure, note_in_axes,
                    panel_grid, publication_style, window_colours)

PANEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _letter(ax, i):
    ax.text(-0.04, 1.02, PANEL_LETTERS[i % 26], transform=ax.transAxes, ha="right", va="bottom",
            fontweight="bold", fontsize=9)


def _window_legend_label(w: access.Window, n_max: int) -> str:
    if n_max == 0:
        return f"{w.short} (no ramps)"
    if n_max == 1:
        return f"{w.short} (n = 1, no CI)"
    return f"{w.short} (n = {n_max})"


def _first_stretch(mask: np.ndarray, z: np.ndarray, bridge: float = 1e-9) -> np.ndarray:
    """``mask`` restricted to its first stretch from the start of the grid, gaps shorter than ``bridge`` (m)
    bridged: isolated points far out (noise that happens to pass a test) are left out."""
    if not mask.any() or z.size < 2:
        return mask
    gap = max(1, int(round(bridge / float(np.median(np.diff(z))))))
    dead = np.convolve(~mask, np.ones(gap), mode="valid") >= gap  # dead[i]: points i..i+gap-1 all fail
    first = int(np.argmax(mask))
    after = np.flatnonzero(dead[first:])
    end = first + int(after[0]) if after.size else z.size
    out = mask.copy()
    out[end:] = False
    return out


def informative(results: xr.Dataset, quantity: str, window: int) -> np.ndarray:
    """Depths where a window's mean ``quantity`` is significantly positive (lower CI bound > 0), in the first
    stretch from z_p = 0; for a window of one ramp (no CI): mean > 0 below the window's SEI thickness."""
    z = np.asarray(results["z"].values, float)
    mean = access.window_stat(results, quantity, "mean", window)
    lo = access.window_stat(results, quantity, "ci_low", window)
    n = access.window_stat(results, quantity, "n", window)
    if mean is None or lo is None or n is None:
        return np.zeros(z.size, bool)
    with np.errstate(invalid="ignore"):
        mask = np.where(n >= 2, lo > 0, (n == 1) & (mean > 0))
    if np.nanmax(n, initial=0) < 2 and "sei_thickness_mean" in results:
        top = float(results["sei_thickness_mean"].values[window])
        if np.isfinite(top):
            mask &= z <= top
    return _first_stretch(mask & (mean > 0), z)


def depth_limit(results: xr.Dataset, quantity: str = "E_storage") -> float:
    """Right edge of the depth axes (m), rounded up to 5 nm: 1.3 × the deepest of each window's SEI thickness
    (upper CI bound, else mean) and of the end of its :func:`informative` depths; the whole grid when none."""
    z = np.asarray(results["z"].values, float)
    deepest = 0.0
    for w in access.windows(results):
        for name in ("sei_thickness_ci_high", "sei_thickness_mean"):
            if name in results and np.isfinite(results[name].values[w.index]):
                deepest = max(deepest, float(results[name].values[w.index]))
                break
        shown = informative(results, quantity, w.index)
        if shown.any():
            deepest = max(deepest, float(z[shown].max()))
    if deepest <= 0:
        return float(z.max()) if z.size else 1e-7
    return float(min(z.max(), np.ceil(1.3 * deepest * NM / 5 - 1e-9) * 5 / NM))


def profile_figure(results: xr.Dataset, quantities=("G_storage", "G_loss"), boundaries=(), z_limit=None) -> Figure:
    """Mean profile ± 95 % CI vs z_p per window, one panel per quantity, log modulus axis (paper Fig. 4a).

    ``boundaries``: rows of :func:`~nrm_plugins.reporting.layers.boundaries` (E_storage), marked with ▼ on the
    E′ and G′ panels (G′ = E′/(2(1+ν)) has the same boundaries).  Lines and bands are drawn over the
    :func:`informative` depths (mean significantly > 0), so each line ends at the top of the layer; a window
    with one ramp has a line and no band, an empty one is only listed in the legend.
    """
    quantities = [q for q in quantities if f"{q}_mean" in results]
    wins = access.windows(results)
    colours = window_colours(len(wins))
    z = access.z_nm(results)
    z_limit = (z_limit if z_limit is not None else depth_limit(results)) * NM
    in_range = z <= z_limit + 1e-9
    fig = new_figure(FULL_WIDTH, 2.5)
    with publication_style():
        axes = panel_grid(fig, max(len(quantities), 1), max_columns=3)
        if not quantities or not wins:
            note_in_axes(axes[0], "no window statistics in these results (process with windows)")
            return fig
        for i, (ax, q) in enumerate(zip(axes, quantities)):
            symbol, name, unit, scale = QUANTITIES[q]
            series = []
            for w, colour in zip(wins, colours):
                mean, lo, hi = (access.window_stat(results, q, s, w.index) * scale for s in ("mean", "ci_low", "ci_high"))
                n = access.window_stat(results, q, "n", w.index)
                series.append((w, colour, mean, lo, hi, n, in_range & informative(results, q, w.index)))
            shown_values = np.concatenate([s[2][s[6]] for s in series if np.nanmax(s[5], initial=0) >= 2]
                                          or [s[2][s[6]] for s in series])
            ax.set_yscale("log")
            if shown_values.size:
                top = float(np.max(shown_values))
                bottom = max(float(np.min(shown_values)), top * 1e-4)
                ax.set_ylim(10 ** np.floor(np.log10(bottom) - 0.05), 10 ** np.ceil(np.log10(top) + 0.05))
            for w, colour, mean, lo, hi, n, shown in series:
                n_max = int(np.nanmax(n)) if n.size else 0
                ax.plot(z, np.where(shown, mean, np.nan), color=colour, label=_window_legend_label(w, n_max),
                        zorder=3)
                band = shown & (n >= 2) & np.isfinite(hi)
                if band.any():
                    ax.fill_between(z, np.where(band, lo, np.nan), np.where(band, hi, np.nan),
                                    color=colour, alpha=BAND_ALPHA, linewidth=0, zorder=2)
            if q in ("E_storage", "G_storage") and boundaries:
                _mark_boundaries(ax, results, q, scale, wins, colours, boundaries)
            ax.set_xlim(0, z_limit)
            ax.set_xlabel("tip–electrode distance $z_p$ (nm)")
            ax.set_ylabel(f"{symbol} ({unit})")
            _letter(ax, i)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5))
    return fig


def _mark_boundaries(ax, results, q, scale, wins, colours, boundaries):
    z = np.asarray(results["z"].values, float)
    by_label = {w.label: (w, c) for w, c in zip(wins, colours)}
    first = True
    for row in boundaries:
        if row["window"] not in by_label:
            continue
        w, colour = by_label[row["window"]]
        mean = access.window_stat(results, q, "mean", w.index) * scale
        y = np.interp(row["z"], z, mean)
        ax.plot([row["z"] * NM], [y * 1.6], marker="v", color=colour, markeredgecolor="black",
                markeredgewidth=0.4, markersize=5, linestyle="none", zorder=4,
                label="sub-layer boundary" if first else None)
        first = False


def kde_figure(results: xr.Dataset, z_limit=None) -> Figure:
    """2-D kernel density of log10 |G*| vs z_p per window (``G_abs_kde``), one panel per window, with the
    window's mean |G*| as a white line (paper Fig. 4b).  Colour scale shared by all panels."""
    wins = access.windows(results)
    fig = new_figure(FULL_WIDTH, 2.3 if len(wins) <= 4 else 4.4)
    with publication_style():
        axes = panel_grid(fig, max(len(wins), 1), max_columns=4, sharey=True)
        if not wins or "G_abs_kde" not in results:
            note_in_axes(axes[0], "no |G*| density in these results (process with windows)")
            return fig
        z = access.z_nm(results)
        z_limit = (z_limit if z_limit is not None else depth_limit(results)) * NM
        keep = z <= z_limit + 1e-9
        g = access.g_log10_pa(results)
        density = np.asarray(results["G_abs_kde"].transpose("window", "z", "g").values, float)[:, keep, :]
        finite = density[np.isfinite(density)]
        vmax = float(np.nanpercentile(finite[finite > 0], 99.5)) if (finite > 0).any() else 1.0
        occupied = np.nanmax(np.nan_to_num(density), axis=(0, 1)) > 1e-2 * vmax
        g_lo, g_hi = (g[occupied].min(), g[occupied].max()) if occupied.any() else (g.min(), g.max())
        dz = (z[1] - z[0]) if z.size > 1 else 0.1
        dg = (g[1] - g[0]) if g.size > 1 else 0.1
        extent = [z[keep][0] - dz / 2, z[keep][-1] + dz / 2, g[0] - dg / 2, g[-1] + dg / 2]
        counts = access.window_ramp_counts(results)
        image = None
        for i, (ax, w) in enumerate(zip(axes, wins)):
            n = counts[w.index]["profile_n_max"] if counts else 0
            ax.set_title(f"{w.short}  (n = {n})" if n else w.short)
            data = density[w.index]
            if n == 0 or not np.isfinite(data).any():
                ax.set_xlim(0, z_limit)
                note_in_axes(ax, "no ramps")
                _letter(ax, i)
                continue
            image = ax.imshow(data.T, origin="lower", aspect="auto", extent=extent, cmap="viridis", vmin=0,
                              vmax=vmax, interpolation="nearest", rasterized=True)
            mean = access.window_stat(results, "G_abs", "mean", w.index)
            if mean is not None:
                shown = informative(results, "G_abs", w.index)[keep]
                with np.errstate(invalid="ignore", divide="ignore"):
                    ax.plot(z[keep], np.where(shown, np.log10(mean[keep]), np.nan), color="white",
                            linewidth=0.9, linestyle="--", label="mean")
            if n == 1:
                ax.text(0.97, 0.95, "one ramp", transform=ax.transAxes, ha="right", va="top", color="white",
                        fontsize=7)
            ax.set_xlim(0, z_limit)
            ax.set_xlabel("$z_p$ (nm)")
            _letter(ax, i)
        for ax in axes:
            ax.set_ylim(g_lo - dg, g_hi + dg)
        log10_axis(axes[0].yaxis, 1e-6)
        axes[0].set_ylabel("|G*| (MPa)")
        if image is not None:
            units = str(results["G_abs_kde"].attrs.get("units", "")).strip()
            cbar = fig.colorbar(image, ax=axes, shrink=0.9, pad=0.01)
            cbar.set_label("density" + (f" ({units})" if units and units != "1" else ""))
    return fig


def _violin(ax, position, values, colour, width=0.8):
    """One violin (matplotlib's KDE) with a median tick; a single value is a dot."""
    if values.size >= 2 and np.ptp(values) > 0:
        parts = ax.violinplot([values], positions=[position], widths=width, showextrema=False,
                              showmedians=False)
        for body in parts["bodies"]:
            body.set_facecolor(colour)
            body.set_edgecolor("black")
            body.set_linewidth(0.4)
            body.set_alpha(0.75)
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        ax.vlines(position, q1, q3, color="black", linewidth=1.6)
        ax.scatter([position], [med], color="white", edgecolor="black", s=9, zorder=3, linewidths=0.5, gid="median")
    elif values.size:
        ax.scatter([position] * values.size, values, color=colour, edgecolor="black", s=12, zorder=3,
                   linewidths=0.4)


def violin_figure(results: xr.Dataset) -> Figure:
    """Violins of |G*| per depth interval (``G_abs_interval``, one value per accepted ramp) per window, and of
    the per-ramp SEI thickness per window (paper Fig. 4c).  Bar = interquartile range, dot = median, the
    number under each violin = ramps with a value there."""
    wins = access.windows(results)
    colours = window_colours(len(wins))
    has_intervals = "G_abs_interval" in results and results.sizes.get("interval", 0) > 0
    intervals = [str(v) for v in results["interval"].values] if has_intervals else []
    n_panels = len(intervals) + 1
    fig = new_figure(FULL_WIDTH, 2.5)
    with publication_style():
        axes = panel_grid(fig, n_panels, max_columns=4)
        member = access.membership(results)
        ok = access.accepted(results)
        groups = [(w, colour) for w, colour in zip(wins, colours)] or [(None, OUTSIDE_COLOUR)]

        def members(w):
            return ok & (member[w.index] if w is not None else True)

        if has_intervals:
            values_all = np.asarray(results["G_abs_interval"].transpose("ramp", "interval").values, float)
        for i, ax in enumerate(axes):
            if i < len(intervals):
                with np.errstate(invalid="ignore", divide="ignore"):
                    column = np.log10(np.where(values_all[:, i] > 0, values_all[:, i], np.nan))
                ax.set_title(f"|G*|, $z_p$ = {intervals[i].replace('nm', ' nm')}")
            else:
                column = access.ramp_values(results, "sei_thickness").astype(float) * NM
                ax.set_title("SEI thickness")
            for j, (w, colour) in enumerate(groups):
                values = column[members(w)]
                values = values[np.isfinite(values)]
                _violin(ax, j, values, colour)
                ax.annotate(f"{values.size}" if values.size else "none", (j, 0), xycoords=("data", "axes fraction"),
                            xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=6,
                            color="0.3")
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels([w.short if w is not None else "all" for w, _ in groups], rotation=30, ha="right")
            ax.set_xlim(-0.6, len(groups) - 0.4)
            ax.tick_params(axis="x", which="both", top=False)
            _letter(ax, i)
        interval_axes = axes[:len(intervals)]
        if interval_axes:
            lows, highs = zip(*(ax.get_ylim() for ax in interval_axes))
            pad = 0.08 * (max(highs) - min(lows))
            for ax in interval_axes:
                ax.set_ylim(min(lows) - pad, max(highs) + pad)
                log10_axis(ax.yaxis, 1e-6)
            interval_axes[0].set_ylabel("|G*| (MPa)")
        axes[-1].set_ylabel("thickness (nm)")
        bottom, top = axes[-1].get_ylim()
        axes[-1].set_ylim(min(bottom, 0) - 0.08 * (top - min(bottom, 0)), top)
    return fig


def _location_means(x, y, v):
    """Unique (x, y) locations (rounded to 1 pm) and the mean of ``v`` over the ramps at each (NaN ignored)."""
    key = np.round(np.column_stack([x, y]) * 1e12).astype(np.int64)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    finite = np.isfinite(v)
    sums = np.bincount(inverse, weights=np.where(finite, v, 0.0), minlength=len(uniq))
    counts = np.bincount(inverse, weights=finite.astype(float), minlength=len(uniq))
    with np.errstate(invalid="ignore"):
        return uniq[:, 0] / 1e12, uniq[:, 1] / 1e12, sums / counts


def _regular_grid(x, y):
    """(xs, ys, index_x, index_y) when the locations lie on a regular grid, else None."""
    xs, ys = np.unique(x), np.unique(y)
    if xs.size * ys.size > 4 * x.size + 16:
        return None
    for axis in (xs, ys):
        if axis.size > 2:
            d = np.diff(axis)
            if np.ptp(d) > 1e-3 * d.mean():
                return None
    return xs, ys, np.searchsorted(xs, x), np.searchsorted(ys, y)


def map_figure(results: xr.Dataset, quantity: str = "contact_position") -> Figure:
    """Map over x, y of the per-ramp ``contact_position`` (relative to the median of all accepted ramps) or
    ``sei_thickness`` of accepted ramps (n in the title): one panel per window (all ramps without windows); where
    several ramps share a location (approach and retract, repeated passes) the panel shows their mean.
    A regular grid is drawn as an image (grey: no accepted ramp), other layouts as points."""
    wins = access.windows(results)
    title = {"contact_position": "contact position", "sei_thickness": "SEI thickness"}[quantity]
    x = access.ramp_values(results, "x").astype(float)
    y = access.ramp_values(results, "y").astype(float)
    v = access.ramp_values(results, quantity).astype(float) * NM
    ok = access.accepted(results)
    v = np.where(ok, v, np.nan)
    label = f"{title} (nm)"
    if quantity == "contact_position":
        centre = np.nanmedian(v) if np.isfinite(v).any() else 0.0
        v = v - centre
        label = f"contact position − median (nm)\nmedian = {centre / 1e3:.4g} µm"
    member = access.membership(results)
    groups = [(w.short, member[w.index]) for w in wins] or [("all ramps", np.ones_like(ok))]
    fig = new_figure(FULL_WIDTH, 2.4 if len(groups) <= 4 else 4.6)
    with publication_style():
        axes = panel_grid(fig, len(groups), max_columns=4, sharex=True, sharey=True)
        located = np.isfinite(x) & np.isfinite(y)
        if not located.any():
            note_in_axes(axes[0], "no x, y coordinates recorded for the ramps")
            return fig
        finite = v[np.isfinite(v) & located]
        vmin, vmax = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        if vmax <= vmin:
            vmin, vmax = vmin - 0.5, vmax + 0.5
        cmap = matplotlib.colormaps["viridis" if quantity == "contact_position" else "magma"].with_extremes(bad="0.85")
        artist = None
        grid_all = _regular_grid(*_location_means(x[located], y[located], v[located])[:2])
        for i, (ax, (name, inside)) in enumerate(zip(axes, groups)):
            sel = inside & located
            ax.set_title(f"{name}  (n = {int((sel & ok).sum())})")
            ax.set_aspect("equal", adjustable="box" if grid_all is not None else "datalim")
            _letter(ax, i)
            if not sel.any():
                note_in_axes(ax, "no ramps")
                continue
            lx, ly, lv = _location_means(x[sel], y[sel], v[sel])
            if grid_all is not None:
                xs, ys = grid_all[0], grid_all[1]
                image = np.full((ys.size, xs.size), np.nan)
                image[np.searchsorted(ys, ly), np.searchsorted(xs, lx)] = lv
                dx = (xs[1] - xs[0]) if xs.size > 1 else 1e-7
                dy = (ys[1] - ys[0]) if ys.size > 1 else dx
                extent = np.array([xs[0] - dx / 2, xs[-1] + dx / 2, ys[0] - dy / 2, ys[-1] + dy / 2]) * 1e6
                artist = ax.imshow(image, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                                   interpolation="nearest", aspect="equal")
            else:
                artist = ax.scatter(lx * 1e6, ly * 1e6, c=lv, cmap=cmap, vmin=vmin, vmax=vmax, s=6, marker="s",
                                    linewidths=0, plotnonfinite=True, rasterized=True)
            ax.set_xlabel("x (µm)")
        axes[0].set_ylabel("y (µm)")
        if artist is not None:
            extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
                (bool((finite < vmin).any()), bool((finite > vmax).any()))]
            cbar = fig.colorbar(artist, ax=axes, shrink=0.9, pad=0.01, extend=extend)
            cbar.set_label(label)
    return fig


def _time_axis(t):
    span = np.nanmax(t) - np.nanmin(t) if np.isfinite(t).any() else 0
    if span > 3 * 3600:
        return t / 3600, "time (h)"
    if span > 600:
        return t / 60, "time (min)"
    return t, "time (s)"


def cv_figure(results: xr.Dataset) -> Figure:
    """The electrode potential vs time of every ramp (the cyclic voltammetry as the ramps sampled it),
    coloured by window (grey: in no window), rejected ramps as ×; shaded bands = the windows' potential
    ranges when ramps are grouped by potential."""
    wins = access.windows(results)
    colours = window_colours(len(wins))
    t = access.ramp_values(results, "time").astype(float)
    u = access.ramp_values(results, "potential").astype(float)
    ok = access.accepted(results)
    member = access.membership(results)
    fig = new_figure(FULL_WIDTH * 0.62, 2.4)
    with publication_style():
        ax = fig.add_subplot()
        if not np.isfinite(u).any():
            note_in_axes(ax, "no electrode potentials recorded for the ramps")
            return fig
        if np.isfinite(t).any():
            xt, xlabel = _time_axis(t)
        else:
            xt, xlabel = np.arange(t.size, dtype=float), "ramp number (no time recorded)"
        if access.group_key(results) == "potential":
            for w, colour in zip(wins, colours):
                if np.isfinite(w.lo) and np.isfinite(w.hi):
                    ax.axhspan(w.lo, w.hi, color=colour, alpha=0.10, linewidth=0)
        outside = ~member.any(axis=0) & ok
        if outside.any():
            ax.scatter(xt[outside], u[outside], s=3, color=OUTSIDE_COLOUR, linewidths=0, label="in no window",
                       rasterized=True)
        for w, colour in zip(wins, colours):
            sel = member[w.index] & ok
            ax.scatter(xt[sel], u[sel], s=3, color=colour, linewidths=0, label=f"{w.short} ({int(sel.sum())})",
                       rasterized=True)
        if not wins:
            ax.scatter(xt[ok], u[ok], s=3, color=OKABE_ITO[0], linewidths=0, label="accepted", rasterized=True)
        rejected = ~ok
        if rejected.any():
            ax.scatter(xt[rejected], u[rejected], s=10, marker="x", color="black", linewidths=0.6,
                       label=f"rejected ({int(rejected.sum())})", rasterized=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("electrode potential (V)")
        ax.legend(loc="best", markerscale=2.5)
    return fig



def diagnostics_figure(results: xr.Dataset, raw: RawRamps, title: str = "") -> Figure:
    """The paper's Fig. 3c–d for each ramp in ``raw`` (two ramps per row, two panels each):
    raw deflection vs piezo position (relative to the ramp's contact point) with the fitted baseline line,
    the contact line and their intersection; and z_p = (d_s − d_contact) + δ vs sample index, with the
    contact sample marked.  The panel title gives the ramp, its source and its flag."""
    k = raw.ramps.size
    rows = max(1, -(-k // 2))
    fig = new_figure(FULL_WIDTH, 1.75 * rows + (0.25 if title else 0))
    with publication_style():
        grid = fig.subplots(rows, 4, squeeze=False)
        if title:
            fig.suptitle(title, fontsize=8)
        for cell in grid.ravel()[2 * k:]:
            cell.set_visible(False)
        for j in range(k):
            ax_d, ax_z = grid[j // 2, 2 * (j % 2)], grid[j // 2, 2 * (j % 2) + 1]
            _diagnose_one(results, raw, j, ax_d, ax_z)
    return fig


def _ramp_value(results, name, i):
    if name in results and results[name].dims == ("ramp",):
        return results[name].values[i]
    return np.nan


def _diagnose_one(results, raw: RawRamps, j: int, ax_d, ax_z):
    i = int(raw.ramps[j])
    piezo, defl = raw.piezo[j], raw.deflection[j]
    flag = str(_ramp_value(results, "flag", i)) if "flag" in results else ""
    ok = bool(_ramp_value(results, "ok", i)) if "ok" in results else True
    source = str(_ramp_value(results, "source", i)) if "source" in results.coords else ""
    source = source.replace("\\", "/").rsplit("/", 1)[-1]
    direction = str(_ramp_value(results, "direction", i)) if "direction" in results.coords else ""
    head = f"ramp {i}" + (f" ({source} #{_ramp_value(results, 'index', i)}{', ' + direction if direction else ''})"
                          if source else "")
    status = ("rejected: " if not ok else "flag: ") + flag if (flag or not ok) else "accepted"
    ax_d.set_title(f"{head}\n{status}", fontsize=6.5, loc="left")
    finite = np.isfinite(piezo) & np.isfinite(defl)
    if not finite.any():
        note_in_axes(ax_d, "raw ramp not found in the data, or all NaN")
        ax_z.set_visible(False)
        return
    contact = float(_ramp_value(results, "contact_position", i))
    bs, bo, cs, co = (float(_ramp_value(results, n, i)) for n in
                      ("baseline_slope", "baseline_offset", "contact_slope", "contact_offset"))
    origin = contact if np.isfinite(contact) else float(np.nanmin(piezo[finite]))
    unit = raw.deflection_units
    scale = NM if unit == "m" else 1.0
    x_nm = (piezo - origin) * NM
    y = defl * scale
    sei = float(_ramp_value(results, "sei_thickness", i)) * NM
    half = max(3 * sei if np.isfinite(sei) else 0.0, 10.0)  # zoom half-width around the contact, nm
    zoom_box = ax_d.inset_axes([0.45, 0.42, 0.52, 0.54])
    lines_ok = np.isfinite([bs, bo]).all()
    contact_ok = np.isfinite([cs, co]).all()
    for ax, lw in ((ax_d, 0.7), (zoom_box, 0.6)):
        ax.plot(x_nm[finite], y[finite], color="0.45", linewidth=lw, marker="." if ax is zoom_box else None,
                markersize=1.5)
        xs = np.array([np.nanmin(x_nm[finite]), np.nanmax(x_nm[finite])])
        if lines_ok:
            ax.plot(xs, (bs * (xs / NM + origin) + bo) * scale, color="#0072B2", linewidth=0.9, linestyle="--")
        if contact_ok:
            ax.plot(xs, (cs * (xs / NM + origin) + co) * scale, color="#D55E00", linewidth=0.9, linestyle="--")
            if lines_ok and cs != bs:
                xi = (co - bo) / (bs - cs)
                ax.plot([(xi - origin) * NM], [(bs * xi + bo) * scale], marker="o", markersize=4,
                        markerfacecolor="white", markeredgecolor="black", linestyle="none", zorder=5)
    ylo, yhi = np.nanmin(y[finite]), np.nanmax(y[finite])
    pad = 0.08 * (yhi - ylo if yhi > ylo else 1.0)
    ax_d.set_ylim(ylo - pad, yhi + pad)
    # zoom on the layer side of the contact, where the soft layer lifts the deflection off the baseline
    layer_side = finite & (x_nm >= 0) & (x_nm <= half)
    if layer_side.sum() >= 2 and np.isfinite(contact):
        zlo, zhi = np.nanmin(y[layer_side]), np.nanmax(y[layer_side])
        zpad = 0.15 * (zhi - zlo if zhi > zlo else 1.0)
        zoom_box.set_xlim(-0.25 * half, half)
        zoom_box.set_ylim(zlo - zpad, zhi + 2 * zpad)
        zoom_box.tick_params(labelsize=5, length=1.5, pad=1)
        zoom_box.text(0.97, 0.95, "zoom", transform=zoom_box.transAxes, ha="right", va="top", fontsize=5)
    else:
        zoom_box.set_visible(False)
    if not contact_ok:
        ax_d.text(0.03, 0.05, "no contact line", transform=ax_d.transAxes, fontsize=6.5, color="0.3")
    ax_d.set_xlabel(("$d_s - d_{contact}$" if np.isfinite(contact) else "$d_s$ − min") + " (nm)")
    ax_d.set_ylabel(f"deflection ({'nm' if unit == 'm' else unit})")
    ax_z.set_title("z_p along the ramp", fontsize=6.5, loc="left")
    if not (np.isfinite(contact) and lines_ok):
        note_in_axes(ax_z, "no contact point: z_p undefined")
        return
    zp = tip_sample_distance(piezo, defl, contact, bs, bo, raw.invols, unit) * NM
    if not np.isfinite(zp).any():
        note_in_axes(ax_z, "deflection in V and no InvOLS: z_p undefined")
        return
    ax_z.plot(np.arange(zp.size), zp, color="black", linewidth=0.7)
    ax_z.axhline(0, color="#D55E00", linewidth=0.6, linestyle=":")
    if np.isfinite(sei):
        ax_z.axhline(sei, color="#009E73", linewidth=0.6, linestyle="--", label=f"SEI top {sei:.3g} nm")
    ci = _ramp_value(results, "contact_index", i)
    if np.isfinite(ci) and ci >= 0:
        ax_z.axvline(float(ci), color="#D55E00", linewidth=0.6, linestyle="--", label="contact sample")
    # linear axis over the layer and a little more; the far part of the ramp runs off the top
    top = max(3 * sei if np.isfinite(sei) else 0.0, 20.0)
    inside = np.flatnonzero(np.isfinite(zp) & (zp <= top))
    if inside.size:
        span = inside[-1] - inside[0]
        ax_z.set_xlim(max(inside[0] - 0.1 * span, 0), inside[-1] + 0.02 * span)
    ax_z.set_ylim(-0.15 * top, top)
    ax_z.set_xlabel("sample index")
    ax_z.set_ylabel("$z_p$ (nm)")
    if ax_z.get_legend_handles_labels()[0]:
        ax_z.legend(loc="upper right", fontsize=5.5, handlelength=1.2)
