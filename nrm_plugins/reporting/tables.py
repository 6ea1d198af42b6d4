"""CSV tables of every statistic in a results set (SI units; the unit is in the column name or a column).

=====================  ==========================================================================
file                   rows
=====================  ==========================================================================
profiles.csv           window × quantity × z: mean, 95 % CI, n (long format; quantity units column)
windows.csv            window: bounds, ramps assigned/accepted, SEI thickness mean ± CI and the
                       per-ramp distribution (quartiles, extremes), the report's note (no ramps …)
ramps.csv              ramp: coords, window, ok, flag, contact position/uncertainty, SEI thickness,
                       the fitted contact-method lines
G_abs_interval.csv     ramp × depth interval: mean |G*| over the interval (Pa)
flags.csv              flag reason (text before the first ':') × status: ramps, one example message
counts.csv             the pipeline's counts (read, accepted, flagged by reason), flattened
sublayers.csv          sub-layer boundary: window, z, log-derivative, threshold, modulus ratio
=====================  ==========================================================================
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import access

PER_RAMP = [("contact_position", "contact_position_m"), ("contact_uncertainty", "contact_uncertainty_m"),
            ("sei_thickness", "sei_thickness_m"), ("baseline_slope", "baseline_slope"),
            ("baseline_offset", "baseline_offset"), ("contact_slope", "contact_slope"),
            ("contact_offset", "contact_offset"), ("contact_index", "contact_index")]
RAMP_COORDS = [("source", "source"), ("index", "index"), ("direction", "direction"), ("x", "x_m"), ("y", "y_m"),
               ("time", "time_s"), ("potential", "potential_V")]


def profiles_table(results: xr.Dataset) -> pd.DataFrame:
    """Window statistics in long format: one row per window, quantity and depth."""
    wins = access.windows(results)
    z = np.asarray(results["z"].values, float)
    frames = []
    for q in access.QUANTITIES:
        if f"{q}_mean" not in results:
            continue
        units = results[f"{q}_mean"].attrs.get("units", "Pa s" if q == "viscosity" else "Pa")
        for w in wins:
            frames.append(pd.DataFrame({
                "window": w.label, "quantity": q, "units": units, "z_m": z,
                "mean": access.window_stat(results, q, "mean", w.index),
                "ci_low": access.window_stat(results, q, "ci_low", w.index),
                "ci_high": access.window_stat(results, q, "ci_high", w.index),
                "n": access.window_stat(results, q, "n", w.index).astype(np.int64),
            }))
    columns = ["window", "quantity", "units", "z_m", "mean", "ci_low", "ci_high", "n"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def windows_table(results: xr.Dataset) -> pd.DataFrame:
    """Per window: bounds, counts, SEI thickness mean and CI (stored) and the per-ramp distribution."""
    rows = access.window_ramp_counts(results)
    member = access.membership(results)
    ok = access.accepted(results)
    thickness = access.ramp_values(results, "sei_thickness").astype(float)
    for row, w in zip(rows, access.windows(results)):
        for s in ("mean", "ci_low", "ci_high"):
            name = f"sei_thickness_{s}"
            row[f"{name}_m"] = float(results[name].values[w.index]) if name in results else np.nan
        values = thickness[member[w.index] & ok]
        values = values[np.isfinite(values)]
        quantiles = np.percentile(values, [0, 25, 50, 75, 100]) if values.size else [np.nan] * 5
        for key, v in zip(("min", "q25", "median", "q75", "max"), quantiles):
            row[f"sei_thickness_{key}_m"] = float(v)
        row["sei_thickness_ramps"] = int(values.size)
    df = pd.DataFrame(rows)
    if not df.empty:
        df.insert(3, "key", access.group_key(results))
    return df


def ramps_table(results: xr.Dataset) -> pd.DataFrame:
    """One row per ramp: identification, window, acceptance and the per-ramp results."""
    n = results.sizes.get("ramp", 0)
    data = {"ramp": np.arange(n)}
    for coord, column in RAMP_COORDS:
        if coord in results.coords and results[coord].dims == ("ramp",):
            data[column] = np.asarray(results[coord].values)
    data["window"] = access.ramp_window_labels(results)  # every window holding the ramp, ';'-joined
    data["ok"] = access.accepted(results)
    data["flag"] = access.flags(results)
    for name, column in PER_RAMP:
        if name in results and results[name].dims == ("ramp",):
            data[column] = np.asarray(results[name].values)
    return pd.DataFrame(data)


def interval_table(results: xr.Dataset) -> pd.DataFrame:
    """``G_abs_interval`` long: one row per ramp and depth interval (Pa)."""
    columns = ["ramp", "window", "ok", "interval", "G_abs_Pa"]
    if "G_abs_interval" not in results:
        return pd.DataFrame(columns=columns)
    values = np.asarray(results["G_abs_interval"].transpose("ramp", "interval").values, float)
    n, k = values.shape
    window = access.ramp_window_labels(results)
    intervals = np.asarray([str(v) for v in results["interval"].values], dtype=object)
    return pd.DataFrame({
        "ramp": np.repeat(np.arange(n), k), "window": np.repeat(window, k),
        "ok": np.repeat(access.accepted(results), k), "interval": np.tile(intervals, n),
        "G_abs_Pa": values.ravel(),
    })


def flags_table(results: xr.Dataset) -> pd.DataFrame:
    """Ramps by flag reason (the text before the first ':') and status, with one full example message."""
    flag = access.flags(results)
    ok = access.accepted(results)
    status = np.where(ok, "accepted with warning", "rejected")
    has = (flag != "") | ~ok
    if not has.any():
        return pd.DataFrame(columns=["reason", "status", "ramps", "example"])
    reason = np.array([(f.split(":", 1)[0].strip() or "(no reason given)") for f in flag[has]], dtype=object)
    df = pd.DataFrame({"reason": reason, "status": status[has], "example": flag[has]})
    out = df.groupby(["reason", "status"], sort=True).agg(ramps=("example", "size"), example=("example", "first"))
    return out.reset_index().sort_values(["status", "ramps"], ascending=[False, False], ignore_index=True)


def counts_table(results: xr.Dataset) -> pd.DataFrame:
    """The ``counts`` attribute flattened to (key, value) rows (``flagged.no contact`` …)."""
    rows = []

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            rows.append({"key": prefix, "value": value})

    walk("", results.attrs.get("counts", {}) or {})
    return pd.DataFrame(rows, columns=["key", "value"])


def sublayers_table(boundaries: list[dict]) -> pd.DataFrame:
    columns = ["window", "quantity", "z_m", "log_derivative_per_m", "trend_per_m", "excess_per_m",
               "threshold_per_m", "sigma_per_m", "modulus_ratio", "change", "resolution_m"]
    rename = {"z": "z_m", "log_derivative": "log_derivative_per_m", "trend": "trend_per_m",
              "excess": "excess_per_m", "threshold": "threshold_per_m", "sigma": "sigma_per_m",
              "ratio": "modulus_ratio", "resolution": "resolution_m"}
    return pd.DataFrame([{rename.get(k, k): v for k, v in row.items()} for row in boundaries], columns=columns)


def write_tables(results: xr.Dataset, folder, boundaries: list[dict]) -> dict:
    """Write every table as CSV into ``folder``; returns {name: (path, DataFrame)}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "profiles": profiles_table(results),
        "windows": windows_table(results),
        "ramps": ramps_table(results),
        "G_abs_interval": interval_table(results),
        "flags": flags_table(results),
        "counts": counts_table(results),
        "sublayers": sublayers_table(boundaries),
    }
    out = {}
    for name, df in tables.items():
        path = folder / f"{name}.csv"
        df.to_csv(path, index=False)
        out[name] = (path, df)
    return out
