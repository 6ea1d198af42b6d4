"""The common model (DESIGN.md §3): force ramps plus lock-in channels, and images, as an xarray.Dataset.

Ramps have dims ``("ramp", "sample")`` (NaN-padded when lengths differ); every ramp has the coordinates
``x, y, time, potential, source, index, direction`` (NaN or "" when the file does not know them).
Variables carry ``units`` and ``long_name`` (the vendor's channel name).  The *roles* — ``piezo``,
``deflection``, ``lateral_x``, … — are plain variable names; a reader assigns them only where the meaning
is certain, and :func:`assign_roles` lets the user say which vendor channel plays which role.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import xarray as xr

from .errors import ModelError

#: Variable names with a meaning for the pipeline (DESIGN.md §3, `[channels]`).
ROLES = ("piezo", "deflection", "lateral_x", "lateral_y", "lateral_r", "lateral_theta", "time_in_ramp")
#: Units each role may have.
ROLE_UNITS = {
    "piezo": ("m",),
    "deflection": ("V", "m"),
    "lateral_x": ("V",),
    "lateral_y": ("V",),
    "lateral_r": ("V",),
    "lateral_theta": ("deg", "rad"),
    "time_in_ramp": ("s",),
}
#: Coordinates of the `ramp` dimension, with their fill value when unknown.
RAMP_COORDS = {"x": np.nan, "y": np.nan, "time": np.nan, "potential": np.nan, "source": "", "index": -1,
               "direction": ""}
RAMP_COORD_UNITS = {"x": "m", "y": "m", "time": "s", "potential": "V"}


def sanitize(name: str) -> str:
    """A vendor channel name as a variable name: ``"LI Demod 1 X (V)"`` → ``"LI_Demod_1_X"``.

    The unit in parentheses is dropped (it lives in the ``units`` attribute); ``[bwd]`` becomes ``_bwd``.
    """
    text = re.sub(r"\((?:[^()]*)\)\s*$", "", name.strip()).strip()
    text = re.sub(r"\[(\w+)\]", r"_\1", text)
    text = re.sub(r"\((?:[^()]*)\)", "", text)
    text = re.sub(r"[^0-9A-Za-z_]+", "_", text)
    text = re.sub(r"_+", "_", text).strip("_")
    if not text:
        text = "channel"
    if text[0].isdigit():
        text = "c_" + text
    if text in ROLES or text in RAMP_COORDS or text in ("ramp", "sample", "row", "col"):
        text = "ch_" + text
    return text


def ramp_coords(n_ramps: int, **given) -> dict:
    """All ramp coordinates for ``n_ramps`` ramps, given ones filled in, the rest NaN / "" / -1."""
    unknown = set(given) - set(RAMP_COORDS)
    if unknown:
        raise ModelError(f"unknown ramp coordinate(s) {sorted(unknown)}; known: {list(RAMP_COORDS)}")
    coords = {}
    for name, fill in RAMP_COORDS.items():
        value = given.get(name)
        if value is None:
            if name == "index":
                value = np.arange(n_ramps, dtype=np.int64)
            elif isinstance(fill, str):
                value = np.full(n_ramps, fill, dtype=object)
            else:
                value = np.full(n_ramps, fill)
        value = np.asarray(value)
        if value.shape == ():
            value = np.full(n_ramps, value.item(), dtype=object if isinstance(value.item(), str) else None)
        if value.shape != (n_ramps,):
            raise ModelError(f"ramp coordinate '{name}' has shape {value.shape}, expected ({n_ramps},)")
        if isinstance(fill, str):
            value = value.astype(object)
        elif name != "index":
            value = value.astype(np.float64)
        attrs = {"units": RAMP_COORD_UNITS[name]} if name in RAMP_COORD_UNITS else {}
        coords[name] = xr.Variable("ramp", value, attrs)
    return coords


def ramps_dataset(channels: Mapping, coords: Mapping | None = None, attrs: Mapping | None = None,
                  images: Mapping | None = None) -> xr.Dataset:
    """Build a common-model Dataset.

    :param channels: ``{variable name: (data (ramp, sample), units, long_name)}``; data may be a numpy,
        memory-mapped or lazily indexed array.  Use role names for roles, :func:`sanitize`-d vendor
        names for the rest.
    :param coords: ramp coordinates (see :data:`RAMP_COORDS`), missing ones filled.
    :param attrs: dataset attributes (instrument metadata, ``vendor_header``...).
    :param images: ``{name: (data (row, col), units, long_name, extra attrs)}``.
    """
    data_vars = {}
    n_ramps = None
    for name, (data, units, long_name) in channels.items():
        if len(getattr(data, "shape", ())) != 2:
            raise ModelError(f"channel '{long_name}' must be 2-D (ramp, sample), got shape {np.shape(data)}")
        if n_ramps is None:
            n_ramps = data.shape[0]
        elif data.shape[0] != n_ramps:
            raise ModelError(f"channel '{long_name}' has {data.shape[0]} ramps, others have {n_ramps}")
        data_vars[name] = xr.Variable(("ramp", "sample"), data, {"units": units, "long_name": long_name})
    ds_coords = ramp_coords(n_ramps, **(coords or {})) if n_ramps is not None else {}
    for name, image in (images or {}).items():
        data, units, long_name, extra = (tuple(image) + ({},))[:4]
        dims = _image_dims(data.shape, data_vars)
        data_vars[name] = xr.Variable(dims, data, {"units": units, "long_name": long_name, **dict(extra)})
    return xr.Dataset(data_vars, coords=ds_coords, attrs=dict(attrs or {}))


def _image_dims(shape, existing) -> tuple[str, str]:
    """(`row`, `col`) for the first image size, (`row_2`, `col_2`) for the next size, ..."""
    sizes = {}
    for var in existing.values():
        if len(var.dims) == 2 and var.dims[0].startswith("row"):
            sizes[var.dims] = var.shape
    for dims, s in sizes.items():
        if tuple(s) == tuple(shape):
            return dims
    k = len(sizes) + 1
    return ("row", "col") if k == 1 else (f"row_{k}", f"col_{k}")


def has_ramps(ds: xr.Dataset) -> bool:
    return "ramp" in ds.dims and "sample" in ds.dims


def channel_names(ds: xr.Dataset) -> list[str]:
    """Vendor names of the ramp channels (``long_name``, else the variable name)."""
    return [ds[v].attrs.get("long_name", v) for v in ds.data_vars if ds[v].dims == ("ramp", "sample")]


def _find_channel(ds: xr.Dataset, name: str):
    for v in ds.data_vars:
        if ds[v].dims != ("ramp", "sample"):
            continue
        if v == name or ds[v].attrs.get("long_name") == name:
            return v
    # forgiving match: without the unit, case-insensitive
    want = sanitize(name).lower()
    hits = [v for v in ds.data_vars if ds[v].dims == ("ramp", "sample")
            and (sanitize(ds[v].attrs.get("long_name", v)).lower() == want or v.lower() == want)]
    return hits[0] if len(hits) == 1 else None


def parse_channels(text: str | None) -> dict:
    """``"deflection=Input 2 (V),lateral_x=Input 3 (V)"`` → dict (the CLI's ``--channels``)."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise ModelError(f"--channels expects role=name pairs separated by commas, got '{part}'")
        role, name = part.split("=", 1)
        out[role.strip()] = name.strip()
    return out


def assign_roles(ds: xr.Dataset, mapping: Mapping | None, source=None) -> xr.Dataset:
    """Rename vendor channels to roles: ``{"deflection": "Input 2 (V)", ...}`` (the `[channels]` table).

    A channel already holding a role that is reassigned goes back to its sanitized vendor name.
    A name the file does not have is a :class:`ModelError` listing the channels it has.
    """
    if not mapping:
        return ds
    where = f"{source}: " if source else ""
    unknown_roles = set(mapping) - set(ROLES)
    if unknown_roles:
        raise ModelError(f"{where}unknown role(s) {sorted(unknown_roles)} in [channels]; roles are {list(ROLES)}")
    renames = {}
    for role, vendor in mapping.items():
        var = _find_channel(ds, vendor)
        if var is None:
            raise ModelError(f"{where}[channels] {role} = '{vendor}': no such channel; the file has "
                             f"{channel_names(ds)}")
        if var != role:
            renames[var] = role
    # a role name held by a channel that is not the one chosen goes back to its vendor name
    names = set(ds.variables)
    for role in set(renames.values()):
        if role in ds.data_vars and role not in renames:
            base = sanitize(ds[role].attrs.get("long_name", role))
            new, k = base, 2
            while new in names or new in renames.values():
                new, k = f"{base}_{k}", k + 1
            renames[role] = new
            names.add(new)
    out = ds.rename(renames) if renames else ds.copy()
    out.attrs = dict(out.attrs)
    out.attrs["channel_roles"] = ", ".join(f"{r}={n}" for r, n in mapping.items())
    return out


def validate(ds: xr.Dataset, require=(), source=None) -> xr.Dataset:
    """Check that ``ds`` holds ramps with the roles in ``require`` and sane units.

    :raises ModelError: naming every missing role and listing the channels the data has.
    """
    where = f"{source or ds.attrs.get('source_file') or 'dataset'}: "
    require = list(require)
    if require and not has_ramps(ds):
        raise ModelError(f"{where}no force ramps (dims 'ramp', 'sample'); found dims {dict(ds.sizes)}")
    missing = [r for r in require if r not in ds.data_vars]
    if missing:
        raise ModelError(
            f"{where}missing role(s) {missing}; channels found: {channel_names(ds)}. "
            "Say which channel plays which role in the [channels] section of the calibration "
            "(or --channels role=name)."
        )
    for role in require:
        var = ds[role]
        if var.dims != ("ramp", "sample"):
            raise ModelError(f"{where}'{role}' has dims {var.dims}, expected ('ramp', 'sample')")
        units = var.attrs.get("units")
        if role in ROLE_UNITS and units not in ROLE_UNITS[role]:
            raise ModelError(f"{where}'{role}' has units '{units}', expected one of {ROLE_UNITS[role]}")
    return ds


def describe(ds: xr.Dataset) -> dict:
    """A JSON-able summary of what a dataset holds (for ``nrm info``)."""
    ramp_vars, images = [], []
    for v in ds.data_vars:
        var = ds[v]
        entry = {"name": v, "long_name": var.attrs.get("long_name", v), "units": var.attrs.get("units", ""),
                 "role": v if v in ROLES else ""}
        if var.dims == ("ramp", "sample"):
            ramp_vars.append(entry)
        elif len(var.dims) == 2 and var.dims[0].startswith("row"):
            entry["shape"] = list(var.shape)
            images.append(entry)
    out = {
        "ramps": int(ds.sizes.get("ramp", 0)),
        "samples": int(ds.sizes.get("sample", 0)),
        "channels": ramp_vars,
        "images": images,
        "roles": [v for v in ROLES if v in ds.data_vars],
    }
    if "direction" in ds.coords and ds.sizes.get("ramp", 0):
        vals, counts = np.unique(ds["direction"].values.astype(str), return_counts=True)
        out["directions"] = {str(k) or "(unknown)": int(c) for k, c in zip(vals, counts)}
    out["metadata"] = {k: jsonable(v) for k, v in ds.attrs.items() if k != "vendor_header"}
    return out


def jsonable(v):
    """Plain Python (JSON-able) values from numpy scalars/arrays, tuples and dicts; anything else as text."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return str(v)
