"""Nanonis grid spectroscopy files (``.3ds``) → the common model, read lazily.

File layout
-----------
A text header of ``key=value`` lines (CR LF), text values in double quotes, lists separated by ``;``,
ended by the line ``:HEADER_END:``.  The keys that define the binary part::

    Grid dim="32 x 32"                          points declared: NX per line × NY lines
    Grid settings=cx;cy;width;height;angle      frame centre and size (m), rotation (deg)
    Sweep Signal="Z (m)"                        what each spectrum sweeps
    Fixed parameters="Sweep Start;Sweep End"    the first per-point parameters
    Experiment parameters="X (m);Y (m);..."     the other per-point parameters
    # Parameters (4 byte)=20                    N, number of per-point parameters
    Experiment size (bytes)=16384               S = 4 × Points × number of channels
    Points=256                                  M, samples per spectrum
    Channels="Current (A);...;Current [bwd] (A);..."

After ``:HEADER_END:\\r\\n`` the points follow in measurement order (line by line), each one record of
big-endian IEEE-754 float32 values: its N parameters, then the M samples of each channel in the order of
``Channels``; 4·N + S bytes per record.  Backward (``[bwd]``) channels are stored in the order of the
sweep axis, i.e. reversed in time.  An unfinished grid ends after its last measured record.

Model (DESIGN.md §3)
--------------------
* One ramp per point and direction, interleaved: ramp ``2p`` is point ``p`` forward, ``2p+1`` backward
  (files without ``[bwd]`` channels: ramp ``p`` = point ``p``).  The samples of every ramp are in time
  order, so a backward ramp is its stored record reversed, and so is its sweep axis.
* The sweep axis of **each point** is built from **its own** ``Sweep Start``/``Sweep End`` parameters,
  ``start + (end − start)·i/(M − 1)`` (float32, the precision of the stored limits).  A ``Z (m)`` sweep
  becomes ``piezo`` (Nanonis: a larger Z is farther from the surface, the model's convention, so no sign
  change); Nanonis records the Z limits relative to the point's Z-controller position, kept as the ramp
  variable ``param_Z``.  Any other sweep (bias...) is the variable ``sweep`` and ``piezo`` is absent.
* ``direction``: for Z sweeps ``approach`` (larger → smaller Z) or ``retract``; otherwise ``fwd``/``bwd``.
* Per-point parameters ``X (m)``, ``Y (m)``, ``Time (s)``, ``Potential (V)`` become the ramp coordinates
  ``x, y, time, potential``; every other parameter is a ramp variable ``param_<name>`` with its units.
* Channels are lazily indexed arrays: reading a channel reads only the records of the requested ramps
  (in chunks of about 8 MB) and keeps only that channel, as native float32.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from nrm_plugins.errors import ReaderError
from nrm_plugins.model import ramps_dataset, sanitize

from .common import (Signal, decode_text, direction_labels, is_z_sweep, metadata_attrs, parse_number,
                     parse_signal, units_of, with_unit)
from .roles import default_roles, parse_roles_header, role_attrs, variable_names

HEADER_END = b":HEADER_END:"
FILE_FORMAT = "Nanonis grid spectroscopy (.3ds)"
#: header entry in which our writer records which channel plays which role
ROLES_KEY = "NRM>Roles"
#: bytes read from the file at a time
CHUNK_BYTES = 8 << 20
#: give up looking for ``:HEADER_END:`` after this many bytes
MAX_HEADER_BYTES = 16 << 20
#: requested points at most this many records apart are read in one go
_GAP_RECORDS = 4
_REQUIRED = ("Grid dim", "Sweep Signal", "# Parameters (4 byte)", "Points", "Channels")
#: per-point parameters that become ramp coordinates: coordinate → accepted (base name, unit)
_COORD_PARAMS = {"x": (("X",), "m"), "y": (("Y",), "m"), "time": (("Time", "Timestamp", "Time stamp"), "s"),
                 "potential": (("Potential",), "V")}


@dataclass
class GridHeader:
    """What the header says about the binary part (plus every entry as text)."""

    entries: dict[str, str]
    nx: int
    ny: int
    param_names: list[str]
    n_samples: int
    channels: list[str]
    sweep_signal: str
    data_offset: int

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def record_floats(self) -> int:
        return self.n_params + self.n_samples * len(self.channels)

    @property
    def record_bytes(self) -> int:
        return 4 * self.record_floats

    @property
    def points_declared(self) -> int:
        return self.nx * self.ny


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in (text or "").split(";") if part.strip()]


def read_header(path: Path) -> GridHeader:
    """Parse the text header of a ``.3ds`` file.

    :raises ReaderError: no ``:HEADER_END:``, a required key missing, or inconsistent sizes.
    """
    raw = b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 16)
            raw += block
            pos = raw.find(HEADER_END)
            if pos >= 0 or not block or len(raw) > MAX_HEADER_BYTES:
                break
    if pos < 0:
        raise ReaderError(path, "no ':HEADER_END:' line: not a Nanonis grid file, or its header is cut off")
    offset = pos + len(HEADER_END)
    for eol in (b"\r\n", b"\n"):
        if raw.startswith(eol, offset):
            offset += len(eol)
            break
    entries: dict[str, str] = {}
    for line in decode_text(raw[:pos]).splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            entries[key.strip()] = value
    missing = [key for key in _REQUIRED if key not in entries]
    if missing:
        raise ReaderError(path, f"the grid header lacks {missing}; found keys {list(entries)[:12]}...")
    dim = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", entries["Grid dim"])
    try:
        n_params = int(entries["# Parameters (4 byte)"])
        n_samples = int(entries["Points"])
    except ValueError:
        raise ReaderError(path, "the header's '# Parameters (4 byte)' or 'Points' is not an integer") from None
    if dim is None:
        raise ReaderError(path, f"cannot read 'Grid dim={entries['Grid dim']}' (expected \"NX x NY\")")
    channels = _split_list(entries["Channels"])
    if n_samples < 1 or not channels or n_params < 0:
        raise ReaderError(path, f"the header declares {n_samples} points per sweep and {len(channels)} "
                                f"channels: nothing to read")
    if 4 * n_params > path.stat().st_size:  # a damaged count: do not build names for it
        raise ReaderError(path, f"the header declares {n_params} parameters per point ({4 * n_params} bytes), "
                                "larger than the file")
    names = _split_list(entries.get("Fixed parameters", "")) + _split_list(entries.get("Experiment parameters", ""))
    if len(names) != n_params:
        warnings.warn(f"{path}: the header names {len(names)} per-point parameters but declares {n_params}; "
                      "unnamed ones are called 'Parameter N'", UserWarning, stacklevel=3)
        names = (names + [f"Parameter {k + 1}" for k in range(len(names), n_params)])[:n_params]
    size = entries.get("Experiment size (bytes)")
    if size is not None and parse_number(size) != 4 * n_samples * len(channels):
        raise ReaderError(path, f"inconsistent header: 'Experiment size (bytes)={size}' but {len(channels)} "
                                f"channels × {n_samples} points × 4 bytes = {4 * n_samples * len(channels)}")
    return GridHeader(entries=entries, nx=int(dim.group(1)), ny=int(dim.group(2)), param_names=names,
                      n_samples=n_samples, channels=channels, sweep_signal=entries["Sweep Signal"],
                      data_offset=offset)


class GridFile:
    """The binary part of a ``.3ds`` file: ``n_points`` complete records after the header."""

    def __init__(self, path: Path, header: GridHeader, n_points: int, n_dirs: int):
        self.path = path
        self.header = header
        self.n_points = n_points
        self.n_dirs = n_dirs
        self.n_ramps = n_points * n_dirs
        self.n_samples = header.n_samples

    def channel_column(self, index: int) -> int:
        """First float of channel ``index`` inside a record."""
        return self.header.n_params + index * self.header.n_samples

    def read_rows(self, points: np.ndarray, kinds: np.ndarray, columns, width: int, out: np.ndarray) -> None:
        """Copy ``width`` floats of the records of ``points`` into the rows of ``out`` (native dtype).

        Row ``i`` takes ``record[points[i]][c : c + width]`` with ``(c, reverse) = columns[kinds[i]]``,
        reversed when ``reverse``; ``c = None`` gives NaN.  Records are read in chunks of about
        :data:`CHUNK_BYTES` in file order, whatever the order of ``points``; nothing else is kept.
        """
        if len(points) == 0:
            return
        rec_floats = self.header.record_floats
        rec_bytes = self.header.record_bytes
        chunk_records = max(1, CHUNK_BYTES // rec_bytes)
        order = np.argsort(points, kind="stable")
        sorted_points = points[order]
        # runs of nearby points, cut into chunks of at most chunk_records records
        new_run = np.r_[True, np.diff(sorted_points) > _GAP_RECORDS]
        run = np.cumsum(new_run) - 1
        run_start = sorted_points[new_run][run]
        key = run.astype(np.int64) * (self.n_points // chunk_records + 2) + (sorted_points - run_start) // chunk_records
        cuts = np.flatnonzero(np.diff(key)) + 1
        starts, stops = np.r_[0, cuts], np.r_[cuts, len(sorted_points)]
        buffer = np.empty(chunk_records * rec_floats, dtype=">f4")
        with open(self.path, "rb") as fh:
            for a, b in zip(starts, stops):
                first, last = int(sorted_points[a]), int(sorted_points[b - 1])
                n_records = last - first + 1
                view = buffer[: n_records * rec_floats]
                fh.seek(self.header.data_offset + first * rec_bytes)
                got = fh.readinto(memoryview(view).cast("B"))
                if got != view.nbytes:
                    raise ReaderError(self.path, f"truncated while reading: expected {view.nbytes} bytes at "
                                                 f"point {first}, found {got} (did the file change?)")
                records = view.reshape(n_records, rec_floats)
                rows = order[a:b]
                local = sorted_points[a:b] - first
                row_kinds = kinds[rows]
                for kind, (column, reverse) in enumerate(columns):
                    mask = row_kinds == kind
                    if not mask.any():
                        continue
                    if column is None:
                        out[rows[mask]] = np.nan
                        continue
                    target, source = _as_slice(rows[mask]), _as_slice(local[mask])
                    if target is None or source is None or source.step != 1:
                        target, source = rows[mask], local[mask]  # any order: fancy indexing
                    block = records[source, column: column + width]
                    out[target] = block[:, ::-1] if reverse else block

    def read_params(self) -> np.ndarray:
        """Every point's parameters, (n_points, N) native float32 (small: read once at open)."""
        out = np.empty((self.n_points, self.header.n_params), dtype=np.float32)
        points = np.arange(self.n_points)
        self.read_rows(points, np.zeros(self.n_points, dtype=np.int8), [(0, False)], self.header.n_params, out)
        return out


def _as_slice(index: np.ndarray) -> slice | None:
    """``index`` as an equivalent slice when it is an increasing arithmetic progression (copies without
    a temporary), else None."""
    if len(index) == 1:
        return slice(int(index[0]), int(index[0]) + 1)
    step = int(index[1] - index[0])
    if step < 1 or np.any(np.diff(index) != step):
        return None
    return slice(int(index[0]), int(index[-1]) + 1, step)


def _ramp_key(key, n_ramps):
    ramps = np.arange(n_ramps)[key]
    scalar = np.ndim(ramps) == 0
    return np.atleast_1d(ramps), scalar


class ChannelArray(BackendArray):
    """One channel (its forward and, if recorded, backward copy) as a lazy (ramp, sample) float32 array."""

    def __init__(self, grid: GridFile, forward: int | None, backward: int | None):
        self.grid = grid
        self.columns = [(None if forward is None else grid.channel_column(forward), False),
                        (None if backward is None else grid.channel_column(backward), True)]
        self.shape = (grid.n_ramps, grid.n_samples)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._read)

    def _read(self, key):
        ramps, scalar = _ramp_key(key[0], self.shape[0])
        out = np.empty((len(ramps), self.shape[1]), dtype=np.float32)
        n_dirs = self.grid.n_dirs
        self.grid.read_rows(ramps // n_dirs, (ramps % n_dirs).astype(np.int8), self.columns, self.shape[1], out)
        out = out[:, key[1]]
        return out[0] if scalar else out


class SweepAxisArray(BackendArray):
    """Each ramp's own sweep axis, ``start + (end − start)·i/(M − 1)`` from its point's parameters.

    Backward ramps run from ``end`` to ``start`` (time order) and are exactly the reversed forward axis.
    """

    def __init__(self, start: np.ndarray, end: np.ndarray, n_dirs: int, n_samples: int):
        self.start = start.astype(np.float64)
        self.end = end.astype(np.float64)
        self.n_dirs = n_dirs
        self.shape = (len(start) * n_dirs, n_samples)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._read)

    def _read(self, key):
        ramps, scalar = _ramp_key(key[0], self.shape[0])
        n = self.shape[1]
        fraction = np.arange(n) / (n - 1) if n > 1 else np.zeros(1)
        out = np.empty((len(ramps), n), dtype=np.float32)
        step = max(1, (1 << 18) // n)  # rows per block: small float64 temporaries
        temp = np.empty((step, n))
        point, backward = ramps // self.n_dirs, (ramps % self.n_dirs == 1)
        for a in range(0, len(ramps), step):
            p = point[a: a + step]
            block = temp[: len(p)]
            np.multiply((self.end[p] - self.start[p])[:, None], fraction[None, :], out=block)
            block += self.start[p][:, None]
            out[a: a + step] = block
        out[backward] = out[backward, ::-1]  # a backward ramp runs from end to start
        out = out[:, key[1]]
        return out[0] if scalar else out


def _lazy(array: BackendArray):
    return indexing.LazilyIndexedArray(array)


def _find_param(names: list[Signal], bases, unit) -> int | None:
    for k, s in enumerate(names):
        if s.base in bases and s.unit == unit:
            return k
    return None


def _grid_settings(entries: dict) -> list[float] | None:
    values = [parse_number(v) for v in _split_list(entries.get("Grid settings", ""))]
    return values if values and all(v is not None for v in values) else None


def read_grid(path, options: dict | None = None) -> xr.Dataset:
    """Open a ``.3ds`` file as a common-model Dataset (lazy channels; see the module docstring).

    Options: ``allow_truncated`` (bool, default False): a file that ends inside a record opens its
    complete points with a warning instead of raising.

    :raises ReaderError: header problems, a truncated file, a header without data.
    """
    path = Path(path)
    options = options or {}
    header = read_header(path)
    data_bytes = path.stat().st_size - header.data_offset
    declared = header.points_declared
    rec = header.record_bytes
    expected = declared * rec
    if data_bytes <= 0:
        raise ReaderError(path, f"header only: no grid point after ':HEADER_END:' (expected {declared} points "
                                f"× {rec} bytes = {expected} bytes)")
    complete, rest = divmod(data_bytes, rec)
    if rest:
        problem = (f"truncated: {declared} points × {rec} bytes = {expected} bytes expected after the header, "
                   f"found {data_bytes} bytes, ending {rest} bytes into the record of point {complete + 1}")
        if not options.get("allow_truncated") or complete == 0:
            raise ReaderError(path, problem + ("" if complete == 0 else
                                               f"; pass allow_truncated=True to open the {complete} complete points"))
        warnings.warn(f"{path}: {problem}; opening the {complete} complete points, the cut one is left out",
                      UserWarning, stacklevel=2)
    if complete > declared:
        warnings.warn(f"{path}: {complete} records but 'Grid dim' declares {declared}; the extra "
                      f"{complete - declared} are ignored", UserWarning, stacklevel=2)
        complete = declared
    if complete < declared and not rest:
        warnings.warn(f"{path}: unfinished grid: {complete} of {declared} declared points were measured; "
                      f"the {declared - complete} missing points are not in the dataset (not zero-filled)",
                      UserWarning, stacklevel=2)

    # channels: forward and backward copies of one signal form one variable
    forward, backward, signal_of = {}, {}, {}
    for index, name in enumerate(header.channels):
        s = parse_signal(name)
        key = (s.base, s.unit, s.filtered)
        (backward if s.backward else forward)[key] = index
        if not s.backward or key not in signal_of:
            signal_of[key] = Signal(name=s.name if not s.backward else with_unit(s.base, s.unit),
                                    base=s.base, unit=s.unit, tags=tuple(t for t in s.tags if t != "bwd"))
    n_dirs = 2 if backward else 1
    grid = GridFile(path, header, complete, n_dirs)
    params = grid.read_params()

    # the sweep axis of each point, from its own Sweep Start / Sweep End
    param_signals = [parse_signal(n) for n in header.param_names]
    i_start = header.param_names.index("Sweep Start") if "Sweep Start" in header.param_names else None
    i_end = header.param_names.index("Sweep End") if "Sweep End" in header.param_names else None
    if i_start is None or i_end is None:
        if header.n_params < 2:
            raise ReaderError(path, "no 'Sweep Start'/'Sweep End' per-point parameters: the sweep axis is unknown")
        warnings.warn(f"{path}: no parameters named 'Sweep Start'/'Sweep End'; using the first two "
                      "per-point parameters as the sweep limits", UserWarning, stacklevel=2)
        i_start, i_end = 0, 1
    start, end = params[:, i_start], params[:, i_end]
    sweep = parse_signal(header.sweep_signal)
    z_sweep = is_z_sweep(sweep)
    axis_name = "piezo" if z_sweep else "sweep"

    roles = default_roles(signal_of)
    by_name = {}
    for key, s in signal_of.items():
        by_name[s.name] = by_name[s.plain] = key
    for role, name in parse_roles_header(header.entries.get(ROLES_KEY, "")).items():
        if name in by_name and role != "piezo":
            roles = {k: r for k, r in roles.items() if r != role and k != by_name[name]}
            roles[by_name[name]] = role
    names = variable_names(signal_of, roles)

    channels = {axis_name: (_lazy(SweepAxisArray(start, end, n_dirs, header.n_samples)), units_of(sweep.unit),
                            f"{sweep.base} sweep" + (f" ({sweep.unit})" if sweep.unit else ""))}
    extra_attrs = {axis_name: {"sweep_signal": header.sweep_signal,
                               "comment": "each point's own axis from its Sweep Start/Sweep End parameters"
                                          + ("; Nanonis records Z limits relative to the point's Z-controller "
                                             "position (param_Z)" if z_sweep else "")}}
    for key, s in signal_of.items():
        name = names[key]
        channels[name] = (_lazy(ChannelArray(grid, forward.get(key), backward.get(key))), units_of(s.unit), s.name)
        extra_attrs[name] = role_attrs(s, roles.get(key))

    # ramp coordinates and the other per-point parameters
    used = {i_start, i_end}
    coords = {}
    for coord, (bases, unit) in _COORD_PARAMS.items():
        k = _find_param(param_signals, bases, unit)
        if k is not None:
            coords[coord] = np.repeat(params[:, k].astype(np.float64), n_dirs)
            used.add(k)
    directions = [direction_labels(start, end, z_sweep, backward=False)]
    if n_dirs == 2:
        directions.append(direction_labels(end, start, z_sweep, backward=True))
    coords["direction"] = np.stack(directions, axis=1).reshape(-1)
    coords["index"] = np.repeat(np.arange(complete, dtype=np.int64), n_dirs)
    coords["source"] = np.full(complete * n_dirs, path.name, dtype=object)

    attrs = metadata_attrs(header.entries)
    attrs.update({
        "file_format": FILE_FORMAT,
        "source_file": str(path),
        "sweep_signal": header.sweep_signal,
        "grid_dim": [header.nx, header.ny],
        "points_declared": declared,
        "points_missing": declared - complete,
        "vendor_header": dict(header.entries),
    })
    settings = _grid_settings(header.entries)
    if settings is not None:
        attrs["grid_settings"] = settings
    ds = ramps_dataset(channels, coords=coords, attrs=attrs)
    for name, extra in extra_attrs.items():
        ds[name].attrs.update(extra)
    taken = set(ds.variables)
    for k, s in enumerate(param_signals):
        if k in used:
            continue
        base = "param_" + sanitize(s.plain)
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        ds[name] = xr.Variable("ramp", np.repeat(params[:, k], n_dirs),
                               {"units": units_of(s.unit), "long_name": s.name})
    return ds
