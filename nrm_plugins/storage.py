"""Native storage: NetCDF (``.nc``) and Zarr (``.zarr``) — a built-in reader/writer plugin.

Round trips keep every value, coordinate, unit and attribute.  NetCDF attributes can hold only text and
numbers, so any other attribute (a dict such as the ``vendor_header``, a bool, None, nested lists) is
stored as JSON text with the prefix ``json:`` and decoded on reading.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import ReaderError, WriterError
from .model import jsonable
from .hookspecs import hookimpl

JSON_PREFIX = "json:"
NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"\x89HDF\r\n\x1a\n")


def _encode_value(v):
    if isinstance(v, (bool, np.bool_)) or v is None or isinstance(v, dict):
        return JSON_PREFIX + json.dumps(jsonable(v))
    if isinstance(v, (list, tuple)):
        arr = np.asarray(v, dtype=object)
        if arr.ndim == 1 and len(v) and all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool)
                                             for x in v):
            return np.asarray(v)
        return JSON_PREFIX + json.dumps(jsonable(v))
    if isinstance(v, str) and v.startswith(JSON_PREFIX):  # a literal that looks encoded
        return JSON_PREFIX + json.dumps(v)
    return v


def _decode_value(v):
    if isinstance(v, str) and v.startswith(JSON_PREFIX):
        return json.loads(v[len(JSON_PREFIX):])
    return v


def encode_attrs(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy(deep=False)
    out.attrs = {k: _encode_value(v) for k, v in ds.attrs.items()}
    for name in out.variables:
        out[name].attrs = {k: _encode_value(v) for k, v in ds[name].attrs.items()}
    return out


def decode_attrs(ds: xr.Dataset) -> xr.Dataset:
    ds.attrs = {k: _decode_value(v) for k, v in ds.attrs.items()}
    for name in ds.variables:
        ds[name].attrs = {k: _decode_value(v) for k, v in ds[name].attrs.items()}
    return ds


def _prepare(ds: xr.Dataset) -> xr.Dataset:
    out = encode_attrs(ds)
    for name in list(out.variables):
        var = out[name]
        if var.dtype == object:  # text coordinates (source, direction, flag): plain str
            out[name] = var.astype(str)
        for key in ("_FillValue", "coordinates"):  # left over from a previous decode
            out[name].attrs.pop(key, None)
        out[name].encoding = {}
    return out


def save_netcdf(ds: xr.Dataset, path: Path) -> None:
    _prepare(ds).to_netcdf(path, engine="netcdf4")


def save_zarr(ds: xr.Dataset, path: Path) -> None:
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    _prepare(ds).to_zarr(path, mode="w", consolidated=True, zarr_format=2)


def open_native(path: Path, lazy: bool = True) -> xr.Dataset:
    """Open a NetCDF file or Zarr store written by :func:`save_netcdf` / :func:`save_zarr`."""
    path = Path(path)
    try:
        if path.is_dir():
            ds = xr.open_zarr(path, consolidated=None)
        else:
            ds = xr.open_dataset(path, engine="netcdf4")
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a reader error
        raise ReaderError(path, f"not a readable NetCDF/Zarr dataset ({type(exc).__name__}: {exc})") from None
    if not lazy:
        ds = ds.load()
    return decode_attrs(ds)


# -------------------------------------------------------------------------------- plugin hooks
@hookimpl
def nrm_read_identify(path, head):
    path = Path(path)
    if path.is_dir():
        return 100 if (path / ".zgroup").exists() or (path / "zarr.json").exists() else None
    if head.startswith(NETCDF_MAGIC):
        return 100
    return None


@hookimpl
def nrm_read(path, options):
    return open_native(Path(path), lazy=options.get("lazy", True))


@hookimpl
def nrm_write_formats():
    return [
        {"name": "netcdf", "suffixes": [".nc", ".nc4", ".netcdf"], "description": "NetCDF-4 (native)"},
        {"name": "zarr", "suffixes": [".zarr"], "description": "Zarr store (native, for large data)"},
    ]


@hookimpl
def nrm_write(dataset, path, format, options):
    path = Path(path)
    try:
        if format == "netcdf":
            save_netcdf(dataset, path)
        else:
            save_zarr(dataset, path)
    except (OSError, ValueError, TypeError) as exc:
        raise WriterError(path, f"cannot write {format}: {exc}") from None
