"""Reading a results Dataset (DESIGN.md §3) for the report: windows, ramp membership, quantities.

The report never recomputes a statistic the pipeline stored; it only selects, labels and converts units.
Everything here is small (per window or per ramp), so a 16 384-ramp results set is read in milliseconds.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

import numpy as np
import xarray as xr

#: quantities with window statistics (DESIGN.md §3), with a label, the plotted unit and its scale from SI
QUANTITIES = {
    "E_storage": ("E′", "storage modulus", "MPa", 1e-6),
    "E_loss": ("E″", "loss modulus", "MPa", 1e-6),
    "G_storage": ("G′", "shear storage modulus", "MPa", 1e-6),
    "G_loss": ("G″", "shear loss modulus", "MPa", 1e-6),
    "G_abs": ("|G*|", "shear modulus magnitude", "MPa", 1e-6),
    "viscosity": ("η", "viscosity", "Pa s", 1.0),
}

NM = 1e9  # m -> nm


@dataclass(frozen=True)
class Window:
    """One group of ramps: position along the ``window`` dim, label, bounds [lo, hi) of the grouping key."""

    index: int
    label: str
    lo: float
    hi: float

    @property
    def short(self) -> str:
        """The label for figures: bounds to 4 significant digits when the stored label is longer (tables keep
        the full label)."""
        if len(self.label) <= 14 or not (np.isfinite(self.lo) and np.isfinite(self.hi)):
            return self.label if len(self.label) <= 24 else self.label[:22] + "…"
        unit = re.sub(r"^.*?([A-Za-z]*)\s*$", r"\1", self.label)
        return f"{self.lo:.4g}-{self.hi:.4g}{unit}"


def calibration_table(results: xr.Dataset) -> dict:
    """The resolved calibration stored as TOML text in ``attrs['calibration']`` (empty dict when absent)."""
    text = results.attrs.get("calibration", "")
    if isinstance(text, dict):
        return text
    try:
        return tomllib.loads(str(text)) if text else {}
    except tomllib.TOMLDecodeError:
        return {}


def setting(results: xr.Dataset, section: str, key: str, default=None):
    return calibration_table(results).get(section, {}).get(key, default)


def group_key(results: xr.Dataset) -> str:
    """The ramp coordinate the windows group by (``[processing] group_by``, default ``potential``)."""
    return str(results.attrs.get("group_by") or setting(results, "processing", "group_by", "potential"))


_LABEL = re.compile(r"^\s*(-?[0-9.]+(?:[eE][-+]?\d+)?)\s*-\s*(-?[0-9.]+(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")


def windows(results: xr.Dataset) -> list[Window]:
    """The windows in their stored order; bounds from ``window_lo``/``window_hi`` (or ``_low``/``_high``), the
    settings' ``windows``, or the label ("1.5-2.0V")."""
    if "window" not in results.dims:
        return []
    n = results.sizes["window"]
    if "window" in results.coords and results["window"].dtype.kind in "OUS":
        labels = [str(v) for v in results["window"].values]
    else:
        labels = list(results.attrs.get("window_labels", [])) or [f"window {i}" for i in range(n)]
        labels = [str(v) for v in labels][:n] + [f"window {i}" for i in range(len(labels), n)]
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    pair = next(((a, b) for a, b in (("window_lo", "window_hi"), ("window_low", "window_high"))
                 if a in results.variables and b in results.variables), None)
    if pair:
        lo = np.asarray(results[pair[0]].values, float)
        hi = np.asarray(results[pair[1]].values, float)
    else:
        bounds = setting(results, "processing", "windows", []) or results.attrs.get("windows", [])
        bounds = np.asarray(bounds, float).reshape(-1, 2) if len(bounds) else np.empty((0, 2))
        if len(bounds) == n:
            lo, hi = bounds[:, 0], bounds[:, 1]
        else:
            for i, label in enumerate(labels):
                m = _LABEL.match(label)
                if m:
                    a, b = float(m.group(1)), float(m.group(2))
                    lo[i], hi[i] = min(a, b), max(a, b)
    return [Window(i, labels[i], float(lo[i]), float(hi[i])) for i in range(n)]


def membership(results: xr.Dataset) -> np.ndarray:
    """(windows, ramps) bool: which ramps each window pools.  Windows may overlap, so a ramp can be in several.

    Uses a stored (window, ramp) boolean when the pipeline wrote one (``window_member``, ``member``) or a
    per-ramp ``window_index``; otherwise assigns by the grouping key (``group_by`` coordinate, default
    ``potential``): lo <= key < hi for a numeric key, label == key for a text key (``source``, ``direction``).
    """
    n = results.sizes.get("ramp", 0)
    wins = windows(results)
    out = np.zeros((len(wins), n), bool)
    for name in ("window_member", "member", "membership"):
        if name in results and set(results[name].dims) == {"window", "ramp"}:
            return np.asarray(results[name].transpose("window", "ramp").values, bool)
    for name in ("window_index", "ramp_window"):
        if name in results and results[name].dims == ("ramp",):
            index = np.asarray(results[name].values, dtype=np.int64)
            for w in wins:
                out[w.index] = index == w.index
            return out
    key = group_key(results)
    if not wins or key not in results.coords:
        return out
    values = np.asarray(results[key].values)
    if values.dtype.kind in "OUS":
        for w in wins:
            out[w.index] = values.astype(str) == w.label
        return out
    values = values.astype(float)
    for w in wins:
        out[w.index] = (values >= w.lo) & (values < w.hi)
    return out


def ramp_window_index(results: xr.Dataset) -> np.ndarray:
    """For each ramp, its first window (−1: in none); see :func:`membership` for ramps in several."""
    member = membership(results)
    if member.shape[0] == 0:
        return np.full(results.sizes.get("ramp", 0), -1, dtype=np.int64)
    return np.where(member.any(axis=0), np.argmax(member, axis=0), -1)


def ramp_window_labels(results: xr.Dataset) -> np.ndarray:
    """For each ramp, the labels of every window holding it, joined by ';' ('' for none)."""
    member = membership(results)
    labels = [w.label for w in windows(results)]
    n = results.sizes.get("ramp", 0)
    if not labels:
        return np.full(n, "", dtype=object)
    if (member.sum(axis=0) <= 1).all():
        return np.array(labels + [""], dtype=object)[ramp_window_index(results)]
    return np.array([";".join(labels[k] for k in np.flatnonzero(member[:, i])) for i in range(n)], dtype=object)


def ramp_values(results: xr.Dataset, name: str, default=np.nan) -> np.ndarray:
    """A per-ramp variable or coordinate as a numpy array (``default`` everywhere when absent)."""
    n = results.sizes.get("ramp", 0)
    if name in results.variables and results[name].dims == ("ramp",):
        return np.asarray(results[name].values)
    return np.full(n, default)


def accepted(results: xr.Dataset) -> np.ndarray:
    n = results.sizes.get("ramp", 0)
    if "ok" in results:
        return np.asarray(results["ok"].values).astype(bool)
    return np.ones(n, bool)


def flags(results: xr.Dataset) -> np.ndarray:
    n = results.sizes.get("ramp", 0)
    if "flag" in results:
        return np.asarray(results["flag"].values).astype(str)
    return np.full(n, "", dtype=object).astype(str)


def z_nm(results: xr.Dataset) -> np.ndarray:
    return np.asarray(results["z"].values, float) * NM


def window_stat(results: xr.Dataset, quantity: str, stat: str, window: int) -> np.ndarray | None:
    """``<quantity>_<stat>`` for one window as float array, or None when the results do not have it."""
    name = f"{quantity}_{stat}"
    if name not in results or "window" not in results[name].dims:
        return None
    return np.asarray(results[name].isel(window=window).values, float)


def window_ramp_counts(results: xr.Dataset) -> list[dict]:
    """Per window: ramps assigned, accepted, and the most ramps contributing at any depth (``E_storage_n``)."""
    member = membership(results)
    ok = accepted(results)
    out = []
    for w in windows(results):
        inside = member[w.index]
        n_profile = window_stat(results, "E_storage", "n", w.index)
        n_sei = results["sei_thickness_n"].values[w.index] if "sei_thickness_n" in results else np.nan
        out.append({
            "window": w.label, "lo": w.lo, "hi": w.hi,
            "ramps": int(inside.sum()), "accepted": int((inside & ok).sum()),
            "profile_n_max": int(np.nanmax(n_profile)) if n_profile is not None and n_profile.size else 0,
            "sei_thickness_n": int(n_sei) if np.isfinite(n_sei) else 0,
        })
    has_n = "E_storage_n" in results
    for row in out:
        n = row["profile_n_max"] if has_n else row["accepted"]
        row["note"] = "no ramps" if n == 0 else ("one ramp: no confidence interval" if n == 1 else "")
    return out


def g_log10_pa(results: xr.Dataset) -> np.ndarray:
    """The KDE grid ``g`` as log10(|G*| / Pa) whatever way it is stored (log10 values or Pa)."""
    g = np.asarray(results["g"].values, float)
    units = str(results["g"].attrs.get("units", "")).strip().lower()
    if units in ("pa", "n m-2") or (units == "" and np.nanmin(g) > 50):
        return np.log10(g)
    return g
