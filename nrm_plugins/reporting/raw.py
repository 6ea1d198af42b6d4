"""The raw ramps behind a results set, for the contact-point diagnostics (the paper's Fig. 3c–d).

Results keep, per ramp, the two fitted lines of the two-line contact method (DESIGN.md §1 step 3):
the baseline ``V = baseline_slope·d_s + baseline_offset`` over the free part and the contact line
``V = contact_slope·d_s + contact_offset`` over the hard-contact part, in deflection units with ``d_s`` the
piezo position in m.  Redrawing them over the raw deflection needs the common-model Dataset: given
(``model=``), opened from files (``data=``) or reopened from the results' ``source_files``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .access import calibration_table


@dataclass
class RawRamps:
    """Selected raw ramps: arrays (k, sample) in SI (piezo, m) and the deflection's own units."""

    ramps: np.ndarray  # positions in the results' ramp dim
    piezo: np.ndarray
    deflection: np.ndarray
    deflection_units: str
    invols: float | None  # m/V, to turn a deflection in V into metres


def open_model(results: xr.Dataset, model=None, data=None, reopen: bool = True):
    """``(model Dataset or None, note)``: the raw data for the diagnostics, or why there are none.

    Without ``model`` and ``data``, the results' ``source_files`` are reopened: each as recorded, else by its
    name in the folder of the results file.
    """
    if model is not None:
        return model, ""
    paths = [Path(p) for p in (data or [])]
    if not paths and reopen:
        files = results.attrs.get("source_files", [])
        files = [files] if isinstance(files, str) else list(files)
        if not files:
            return None, "raw data unavailable: the results name no source files and none were given"
        # as recorded, else beside the results file (a relative name, or a folder moved as a whole)
        where = results.encoding.get("source")
        beside = Path(where).parent if where else None
        found = [next((c for c in (Path(f), beside / Path(f).name if beside else None) if c and c.exists()), None)
                 for f in files]
        missing = [f for f, c in zip(files, found) if c is None]
        if missing:
            return None, ("raw data unavailable: source file(s) not found: " + ", ".join(map(str, missing[:5]))
                          + (" …" if len(missing) > 5 else "") + " (pass --data FILE…)")
        paths = found
    if not paths:
        return None, "raw data not given: diagnostics not drawn (pass model= or --data FILE…)"
    import nrm_plugins as nrm

    channels = calibration_table(results).get("channels") or None
    parts = [nrm.open(p, channels=channels) for p in paths]
    ds = parts[0] if len(parts) == 1 else xr.concat(parts, dim="ramp", data_vars="all", coords="different",
                                                    compat="override", join="outer", combine_attrs="drop_conflicts")
    return ds, ""


def match_ramps(results: xr.Dataset, model: xr.Dataset) -> np.ndarray:
    """For each results ramp, its position in ``model`` (−1 when not found).

    Same number of ramps and the same ``source``/``index`` (or none recorded): position i ↔ i.
    Otherwise ramps are matched by (source file name, index, direction).
    """
    n = results.sizes.get("ramp", 0)
    m = model.sizes.get("ramp", 0)

    def keys(ds, size):
        def col(name, fill):
            if name in ds.coords and ds[name].dims == ("ramp",):
                return [str(v) for v in ds[name].values]
            return [fill] * size
        source = [Path(s).name for s in col("source", "")]
        return list(zip(source, col("index", "-1"), col("direction", "")))

    kr, km = keys(results, n), keys(model, m)
    if n == m and kr == km:
        return np.arange(n)
    lookup = {k: i for i, k in enumerate(km)}
    out = np.array([lookup.get(k, -1) for k in kr], dtype=np.int64)
    if (out < 0).all() and n == m:  # the model carries no identifying coordinates: trust the order
        return np.arange(n)
    return out


def select(results: xr.Dataset, model: xr.Dataset, ramps) -> RawRamps:
    """Load only the chosen ramps' piezo and deflection (a lazy model stays lazy for the rest).

    The deflection is returned in the units of the stored contact-method lines (``baseline_offset``'s
    ``units``: V as recorded or m after InvOLS), converted with the calibration's InvOLS when they differ.
    """
    ramps = np.asarray(list(ramps), dtype=np.int64)
    where = match_ramps(results, model)[ramps] if ramps.size else np.empty(0, np.int64)
    for name in ("piezo", "deflection"):
        if name not in model:
            raise KeyError(f"the raw data have no '{name}' channel (assign it with [channels] / --channels)")
    samples = model.sizes["sample"]
    piezo = np.full((ramps.size, samples), np.nan)
    defl = np.full((ramps.size, samples), np.nan)
    found = where >= 0
    if found.any():
        piezo[found] = np.asarray(model["piezo"].isel(ramp=where[found]).values, float)
        defl[found] = np.asarray(model["deflection"].isel(ramp=where[found]).values, float)
    units = str(model["deflection"].attrs.get("units", "V"))
    invols = calibration_table(results).get("normal", {}).get("invols", model.attrs.get("invols"))
    try:
        invols = float(invols) if invols is not None else None
    except (TypeError, ValueError):
        invols = None
    # the fitted lines may be stored in calibrated deflection (m) while the file holds V, or the reverse:
    # express the raw deflection in the lines' units so both are drawn on one axis
    line_units = str(results["baseline_offset"].attrs.get("units", units)) if "baseline_offset" in results else units
    if line_units != units and invols and np.isfinite(invols):
        if units == "V" and line_units == "m":
            defl, units = defl * invols, "m"
        elif units == "m" and line_units == "V":
            defl, units = defl / invols, "V"
    return RawRamps(ramps, piezo, defl, units, invols)


def tip_sample_distance(piezo, deflection, contact_position, baseline_slope, baseline_offset, invols=None,
                        deflection_units="V"):
    """z_p = (d_s − d_contact) + δ (DESIGN.md §1 step 3), in m.

    δ = InvOLS·(V − baseline(d_s)) for a deflection in V (baseline = the fitted line), δ = V − baseline for a
    deflection already in m.  Returns NaN everywhere when a deflection in V has no InvOLS.
    """
    piezo = np.asarray(piezo, float)
    baseline = baseline_slope * piezo + baseline_offset
    delta = np.asarray(deflection, float) - baseline
    if deflection_units != "m":
        if invols is None or not np.isfinite(invols):
            return np.full_like(piezo, np.nan)
        delta = invols * delta
    return (piezo - contact_position) + delta
